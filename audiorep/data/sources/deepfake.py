"""A deepfake folder of the user's own: bona fide and spoofed clips, by folder or by a labels.csv.

The layout `audiorep datasets spoof` writes, and the one a researcher can make from any real and fake clips:
no protocol file is needed, and the metadata a labels.csv carries (attack, speaker, gender, language, source,
word) feeds the cross-domain protocols and the per-group metrics.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from audiorep.data.sources import common
from audiorep.data.sources.asvspoof import SPOOF_CLASSES
from audiorep.data.sources.common import METADATA_KEYS, DatasetError, DatasetIndex, Record

# Label spellings accepted in a labels.csv (lower case) -> the class.
LABEL_NAMES = {"bonafide": "bonafide", "bona-fide": "bonafide", "bona fide": "bonafide", "bona_fide": "bonafide",
               "genuine": "bonafide", "real": "bonafide", "spoof": "spoof", "spoofed": "spoof", "fake": "spoof",
               "deepfake": "spoof"}
LABELS_CSV = "labels.csv"
_LAYOUT_HINT = ("Lay the clips out as root/bonafide/... and root/spoof/<attack>/..., or list them in "
                "root/labels.csv (columns path,label and any of " + ", ".join(METADATA_KEYS) + ").")


def read_deepfake_folder(
    root: str | os.PathLike,
    *,
    layout: str = "auto",
    speaker_regex: str | None = None,
    extensions: Sequence[str] | None = None,
) -> DatasetIndex:
    """Bona fide vs spoof clips in a folder; classes bonafide = 0, spoof = 1 (as every spoofing reader).

    Layouts:
      folders: root/bonafide/**/<clip> and root/spoof/**/<clip>; the first sub-folder of spoof/ is the clip's
        attack id (spoof/world/x.wav -> attack_id 'world'; a clip directly in spoof/ has none).
      csv: root/labels.csv with columns `path` (relative to root) and `label` (bonafide | spoof; also
        bona-fide, genuine, real / fake, spoofed, deepfake), plus any of attack_id, speaker, gender, language,
        source, word, source_clip (empty = unknown). attack_id is for spoofed rows only; source_clip names the
        bona fide recording a spoof was made from (as `audiorep datasets spoof` writes it).
    The speaker is the group (a speaker's clips never sit on both sides of a split); without one, each file
    is its own group.

    Args:
      layout: 'auto' (labels.csv when it exists, else folders), 'csv' or 'folders'.
      speaker_regex: take the speaker from the file name (without extension) where none is given: the named
        group `speaker` or else group 1, e.g. r'^\\d_([a-z]+)_' for FSDD-style `<digit>_<speaker>_<n>.wav`.
      extensions: audio suffixes for the folders layout (default: every format soundfile reads).
    """
    root = common.require_dir(Path(root).expanduser().resolve(), "deepfake folder", _LAYOUT_HINT)
    if layout not in ("auto", "csv", "folders"):
        raise DatasetError(f"layout must be 'auto', 'csv' or 'folders', got {layout!r}.")
    speaker_re = re.compile(speaker_regex) if speaker_regex else None

    def speaker_of(path: Path) -> str | None:
        if speaker_re is None:
            return None
        m = speaker_re.search(path.stem)
        if not m:
            raise DatasetError(f"{path}: file name does not match speaker_regex {speaker_re.pattern!r}; fix the regex.")
        return m.group("speaker" if "speaker" in speaker_re.groupindex else 1 if speaker_re.groups else 0)

    if layout == "csv" or (layout == "auto" and (root / LABELS_CSV).is_file()):
        return _from_csv(root, speaker_of)
    return _from_folders(root, speaker_of, extensions)


def _record(path: Path, label: str, meta: dict[str, str | None]) -> Record:
    speaker = meta.get("speaker") or None
    return Record(path=str(path), labels=(SPOOF_CLASSES.index(label),), label_names=(label,), split="", fold=None,
                  group=speaker, dataset="deepfake_folder", extra=common.metadata_extra(meta))


def _check_both_classes(records: list[Record], where: str) -> None:
    present = {r.label_names[0] for r in records}
    if present != set(SPOOF_CLASSES):
        have = next(iter(present)) if present else "no"
        raise DatasetError(f"{where}: only {have} clips found; a detection task needs both bona fide and spoofed "
                           f"clips. {_LAYOUT_HINT}")


def _from_csv(root: Path, speaker_of) -> DatasetIndex:
    path = root / LABELS_CSV
    rows = common.read_csv_rows(path, ("path", "label"))
    records, keys = [], []
    for line, row in rows:
        name = LABEL_NAMES.get(row["label"].strip().lower())
        if name is None:
            raise DatasetError(f"{path}, line {line}: label {row['label']!r} is not bonafide or spoof "
                               f"(accepted: {', '.join(sorted(LABEL_NAMES))}). Fix the line.")
        rel = row["path"]
        if not rel:
            raise DatasetError(f"{path}, line {line}: empty path. Every row names a clip relative to {root}.")
        clip = (root / rel).resolve() if not os.path.isabs(rel) else Path(rel)
        meta = {k: (row.get(k) or "").strip() or None for k in METADATA_KEYS}
        meta["source_clip"] = (row.get("source_clip") or "").strip() or None
        if name == "bonafide" and meta["attack_id"] not in (None, "-", "bonafide"):
            raise DatasetError(f"{path}, line {line}: a bona fide clip with attack_id {meta['attack_id']!r}; "
                               "attack_id names the attack of a spoofed clip. Empty it or label the row spoof.")
        if name == "bonafide":
            meta["attack_id"] = None
        if meta["speaker"] is None:
            meta["speaker"] = speaker_of(clip)
        keys.append((str(clip), str(path), line))
        records.append(_record(clip, name, meta))
    common.check_unique(keys, "path")
    _check_both_classes(records, str(path))
    problems: list[str] = []
    listed = len(records)
    records, missing = common.drop_missing(records, problems, str(path),
                                           f"Paths in {LABELS_CSV} are relative to the folder that holds it.")
    return DatasetIndex("deepfake_folder", records, SPOOF_CLASSES, multilabel=False, problems=problems,
                        root=str(root), listed=listed, missing=missing)


def _from_folders(root: Path, speaker_of, extensions: Sequence[str] | None) -> DatasetIndex:
    exts = frozenset(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions) if extensions \
        else common.audio_extensions()
    files = common.files_under(root, exts)
    if not files:
        raise DatasetError(f"{root}: no audio files found (looked for {', '.join(sorted(exts))}). {_LAYOUT_HINT}")
    records = []
    for p in files:
        rel = p.relative_to(root)
        top = rel.parts[0].lower() if len(rel.parts) > 1 else ""
        if top not in SPOOF_CLASSES:
            raise DatasetError(f"{p}: neither under {root / 'bonafide'} nor under {root / 'spoof'}. {_LAYOUT_HINT}")
        attack = rel.parts[1] if top == "spoof" and len(rel.parts) > 2 else None
        records.append(_record(p, top, {"attack_id": attack, "speaker": speaker_of(p)}))
    _check_both_classes(records, str(root))
    return DatasetIndex("deepfake_folder", records, SPOOF_CLASSES, multilabel=False, problems=[], root=str(root))
