"""MLAAD (Müller et al., 2024): multi-language audio anti-spoofing, TTS clips of many systems in many
languages, with bona fide speech from M-AILABS.

MLAAD ships spoofed audio only, one folder per language and TTS system, each with a pipe-separated meta.csv
whose `original_file` names the M-AILABS utterance the clip was made from (its text, and for voice-cloning
systems its voice). The bona fide side is the M-AILABS speech corpus, given as a second root.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from audiorep.data.sources import common
from audiorep.data.sources.asvspoof import SPOOF_CLASSES
from audiorep.data.sources.common import DatasetError, DatasetIndex, Record

MLAAD_COLUMNS = ("path", "original_file", "language", "is_original_language", "duration", "training_data",
                 "model_name", "architecture", "transcript")
MAILABS_GENDERS = ("female", "male", "mix")


def mailabs_info(rel: str) -> dict[str, str | None]:
    """Metadata of an M-AILABS path relative to its root, `<locale>/by_book/<female|male>/<speaker>/<book>/wavs/
    <file>.wav` or `<locale>/by_book/mix/<book>/wavs/<file>.wav` (fr_FR has no by_book/ level):
    {'language': 'en' for en_US, 'gender', 'speaker' (None for mix), 'book'}."""
    parts = Path(rel).parts
    out: dict[str, str | None] = {"language": parts[0].split("_")[0].lower() if parts else None, "gender": None,
                                  "speaker": None, "book": None}
    i = next((k for k, p in enumerate(parts[:-1]) if p in MAILABS_GENDERS), None)
    if i is not None:
        if parts[i] == "mix":
            out["book"] = parts[i + 1] if i + 2 < len(parts) else None
        else:
            out["gender"] = parts[i]
            out["speaker"] = parts[i + 1] if i + 2 < len(parts) else None
            out["book"] = parts[i + 2] if i + 3 < len(parts) else None
    return out


def _group(info: dict[str, str | None]) -> str | None:
    """The leakage unit of an M-AILABS utterance and of every fake made from it: the speaker, else the book."""
    return info["speaker"] or (f"book:{info['book']}" if info["book"] else None)


def read_mlaad(
    root: str | os.PathLike,
    *,
    bonafide_root: str | None = None,
    bonafide: str = "referenced",
) -> DatasetIndex:
    """MLAAD spoofed clips plus M-AILABS bona fide clips; bonafide = 0, spoof = 1.

    Layout: root/fake/<language>/<system>/meta.csv (pipe-separated, columns path|original_file|language|
    is_original_language|duration|training_data|model_name|architecture|transcript, newer releases add more)
    with the clips next to it; bona fide: an M-AILABS tree <locale>/by_book/<gender>/<speaker>/<book>/wavs/.
    A clip is read from its meta.csv's folder (the file name of `path`; a few releases' `path` columns name
    another language folder). Metadata: attack_id = the system folder, language (the meta.csv column; for
    bona fide clips the M-AILABS locale's language), speaker and gender of the M-AILABS utterance a clip
    comes from (group = that speaker, so a fake never lands on the other side of a split from its source);
    info: model_name, architecture, training_data, is_original_language.

    Args:
      bonafide_root: the M-AILABS folder (holding en_US/, de_DE/, ...). Needed unless bonafide='none'.
      bonafide: 'referenced' (the M-AILABS utterances the meta.csv files name, once each), 'all' (every wav
        under a wavs/ folder of bonafide_root) or 'none' (spoofed clips only, e.g. for source tracing).
    """
    root = common.require_dir(Path(root).expanduser().resolve(), "MLAAD folder",
                              "Pass the MLAAD folder (it holds fake/<language>/<system>/meta.csv).")
    if bonafide not in ("referenced", "all", "none"):
        raise DatasetError(f"bonafide must be 'referenced', 'all' or 'none', got {bonafide!r}.")
    fake_dir = common.require_dir(root / "fake", "MLAAD fake/ folder",
                                  "Point the dataset root at the unpacked MLAAD folder (the one holding fake/).")
    metas = sorted(fake_dir.glob("*/*/meta.csv"))
    if not metas:
        raise DatasetError(f"{fake_dir}: no <language>/<system>/meta.csv found. Re-extract MLAAD; every system "
                           "folder ships its meta.csv.")
    mailabs = None
    if bonafide != "none":
        if bonafide_root is None:
            raise DatasetError("MLAAD has no bona fide clips of its own: pass the M-AILABS folder with --bonafide-root "
                               "(reader option bonafide_root), or bonafide='none' for spoofed clips only.")
        mailabs = common.require_dir(Path(bonafide_root).expanduser().resolve(), "M-AILABS folder (bonafide_root)",
                                     "Pass the M-AILABS folder that holds en_US/, de_DE/, ... .")
    records, keys, referenced = [], [], {}
    for meta in metas:
        rows = common.read_csv_rows(meta, ("path", "original_file", "language", "model_name"), delimiter="|",
                                    quoting=csv.QUOTE_NONE)
        system = meta.parent.name
        for line, row in rows:
            if not row["path"]:
                raise DatasetError(f"{meta}, line {line}: empty path. Fix or delete the line.")
            clip = meta.parent / Path(row["path"]).name
            keys.append((str(clip), str(meta), line))
            original = row["original_file"].strip().lstrip("./")
            src = mailabs_info(original) if original else {"speaker": None, "gender": None, "book": None}
            if original:
                referenced.setdefault(original, (meta, line))
            records.append(Record(
                path=str(clip), labels=(1,), label_names=("spoof",), split="", fold=None, group=_group(src),
                dataset="mlaad",
                extra=common.metadata_extra(
                    {"attack_id": system, "language": row["language"] or meta.parent.parent.name,
                     "speaker": src["speaker"], "gender": src["gender"]},
                    model_name=row["model_name"], architecture=row.get("architecture"),
                    training_data=row.get("training_data"), is_original_language=row.get("is_original_language"),
                    original_file=original),
            ))
    common.check_unique(keys, "clip")
    problems: list[str] = []
    if mailabs is not None:
        if bonafide == "referenced":
            rels = sorted(referenced)
        else:
            rels = [p.relative_to(mailabs).as_posix() for p in common.files_under(mailabs, frozenset({".wav"}))
                    if p.parent.name == "wavs"]
            if not rels:
                raise DatasetError(f"{mailabs}: no M-AILABS clips found (<locale>/by_book/<gender>/<speaker>/<book>/"
                                   "wavs/*.wav). Check --bonafide-root.")
        for rel in rels:
            info = mailabs_info(rel)
            records.append(Record(
                path=str(mailabs / rel), labels=(0,), label_names=("bonafide",), split="", fold=None,
                group=_group(info), dataset="mlaad",
                extra=common.metadata_extra({k: info[k] for k in ("language", "speaker", "gender")}, book=info["book"]),
            ))
    listed = len(records)
    records, missing = common.drop_missing(
        records, problems, f"the meta.csv files under {fake_dir}" + (" and the M-AILABS references" if mailabs else ""),
        "Re-extract MLAAD; bona fide clips are looked up under --bonafide-root by their original_file path.")
    return DatasetIndex("mlaad", records, SPOOF_CLASSES, multilabel=False, problems=problems, root=str(root),
                        listed=listed, missing=missing)
