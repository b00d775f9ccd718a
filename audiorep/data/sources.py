"""Local dataset readers: a dataset's canonical on-disk layout -> a list of `Record`s.

Every training, export and probing job reads data through this module (directly, or through the TFDS
builders in `data/tfds/` and the grain pipelines in `data/pipeline.py`). Nothing here downloads or decodes
audio: readers parse metadata, check that the files exist, and say precisely what is wrong with a layout
(which file, which line, what was expected). `check_audio` is the separate, explicit pass that opens the
audio files.

    index = read_dataset("esc50", "/data/ESC-50-master", esc10=True)
    index.records[0]   # Record(path='/data/.../1-100038-A-14.wav', labels=(3,), ..., fold=1, group='100038')

Readers (names for `read_dataset`): folder, esc50, speech_commands, audioset, sonics, asvspoof2019_la,
in_the_wild. `READERS` describes each one's expected layout and options (`audiorep datasets list`).
A `Record.group` is the unit that must not be split across train and test (speaker, source recording,
artist, generation prompt), so protocols can keep groups disjoint.
"""

from __future__ import annotations

import csv
import inspect
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

SPLITS = ("train", "validation", "test", "")


class DatasetError(ValueError):
    """A dataset layout or metadata file that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class Record:
    """One clip (or one window of a longer file) with its labels.

    Attributes:
      path: absolute path of the audio file.
      labels: class indices into `DatasetIndex.classes` (one for multi-class, any number for multi-label,
        empty for unlabelled audio).
      label_names: the class names of `labels`, same order.
      split: 'train' | 'validation' | 'test' | '' (no official split, e.g. ESC-50 folds).
      fold: cross-validation fold (ESC-50: 1..5), else None.
      group: unit that must stay on one side of a split (speaker, source clip, artist...), else None.
      dataset: reader name ('esc50', 'folder', ...).
      start_s, end_s: the window of the file this record covers; end_s None = to the end of the file.
      extra: dataset-specific fields as sorted (key, value) string pairs (ASVspoof system id, AudioSet
        segment times...). Read them with `record.info`.
    """

    path: str
    labels: tuple[int, ...]
    label_names: tuple[str, ...]
    split: str
    fold: int | None
    group: str | None
    dataset: str
    start_s: float = 0.0
    end_s: float | None = None
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def info(self) -> dict[str, str]:
        """`extra` as a dict."""
        return dict(self.extra)

    @property
    def key(self) -> str:
        """A unique id within a dataset: the path, plus the window start for windowed records."""
        return self.path if self.start_s == 0.0 and self.end_s is None else f"{self.path}@{self.start_s:g}"


@dataclass
class DatasetIndex:
    """Everything a reader found.

    Attributes:
      name: reader name.
      records: the usable records, in a deterministic order.
      classes: class names; `Record.labels` index into it.
      multilabel: True when a record may carry several labels (AudioSet).
      problems: non-fatal findings (missing clips, skipped rows), one readable line each.
      root: the dataset root that was read.
    """

    name: str
    records: list[Record]
    classes: tuple[str, ...]
    multilabel: bool
    problems: list[str] = field(default_factory=list)
    root: str = ""

    def __len__(self) -> int:
        return len(self.records)

    def split(self, name: str) -> list[Record]:
        """Records of one split ('train' | 'validation' | 'test' | '')."""
        if name not in SPLITS:
            raise DatasetError(f"unknown split {name!r}; splits are {SPLITS[:3]} or '' (no official split).")
        return [r for r in self.records if r.split == name]

    def fold(self, k: int) -> list[Record]:
        """Records of one cross-validation fold."""
        return [r for r in self.records if r.fold == k]

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits present, in train/validation/test order."""
        present = {r.split for r in self.records}
        return tuple(s for s in SPLITS if s in present)

    @property
    def folds(self) -> tuple[int, ...]:
        return tuple(sorted({r.fold for r in self.records if r.fold is not None}))

    def class_counts(self, records: Iterable[Record] | None = None) -> Counter:
        """Number of records carrying each class name."""
        counts: Counter = Counter()
        for r in self.records if records is None else records:
            counts.update(r.label_names)
        return counts


# ------------------------------------------------------------------------------------------ helpers
def audio_extensions() -> frozenset[str]:
    """File suffixes (lower case, with dot) of the formats this soundfile/libsndfile build reads."""
    names = {f".{fmt.lower()}" for fmt in sf.available_formats()}
    aliases = {".aif", ".aifc", ".oga", ".opus", ".wave", ".sf", ".snd", ".mat"}
    names -= {".raw", ".mat4", ".mat5", ".wavex", ".nist", ".ircam", ".svx"}
    return frozenset(names | aliases | {".wav", ".flac", ".ogg", ".mp3"})


def _require_dir(path: Path, what: str, hint: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{path}: {what} not found (no such directory). {hint}")
    return path


def _require_file(path: Path, what: str, hint: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"{path}: {what} not found. {hint}")
    return path


def read_csv_rows(
    path: Path,
    required: Sequence[str],
    *,
    skip_comment_lines: int = 0,
    skipinitialspace: bool = False,
    fieldnames: Sequence[str] | None = None,
) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV file as (line number, row) pairs, checking the header.

    Args:
      path: the CSV file.
      required: columns that must be present.
      skip_comment_lines: leading lines to skip (AudioSet's three `#` lines).
      skipinitialspace: strip the space after each comma (AudioSet).
      fieldnames: use these column names instead of a header line.

    Raises:
      DatasetError: the file is missing, empty, or lacks a required column (the message lists the
        columns found and the ones expected).
    """
    if not path.is_file():
        raise DatasetError(f"{path}: metadata file not found. Check --root points at the dataset's top folder.")
    with open(path, newline="", encoding="utf-8-sig") as f:
        for _ in range(skip_comment_lines):
            f.readline()
        reader = csv.DictReader(f, fieldnames=fieldnames, skipinitialspace=skipinitialspace)
        header = [h.strip() for h in (reader.fieldnames or [])]
        if not header:
            raise DatasetError(f"{path}: the file is empty; expected a header with columns {list(required)}.")
        reader.fieldnames = header
        missing = [c for c in required if c not in header]
        if missing:
            raise DatasetError(
                f"{path}, line {skip_comment_lines + 1}: missing column(s) {missing}. Found columns {header}; "
                f"expected at least {list(required)}. Is this the right file (and the unmodified original)?"
            )
        rows = []
        for row in reader:
            if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                continue  # blank line
            rows.append((reader.line_num, {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()}))
    return rows


def _check_unique(keys: Iterable[tuple[str, str, int]], what: str) -> None:
    """keys: (id, file, line). Raise naming both lines of the first duplicate."""
    seen: dict[str, tuple[str, int]] = {}
    for key, file, line in keys:
        if key in seen:
            first_file, first_line = seen[key]
            raise DatasetError(
                f"{file}, line {line}: duplicate {what} {key!r} (first seen in {first_file}, line {first_line}). "
                "Remove the repeated row; every clip must appear once."
            )
        seen[key] = (file, line)


def _drop_missing(records: list[Record], problems: list[str], where: str, hint: str) -> list[Record]:
    """Keep records whose file exists; report the others. Raise when nothing at all exists."""
    present = [r for r in records if os.path.isfile(r.path)]
    missing = [r for r in records if not os.path.isfile(r.path)]
    if missing:
        if not present:
            raise DatasetError(
                f"none of the {len(records)} audio files listed in {where} exist (first expected at "
                f"{missing[0].path}). {hint}"
            )
        shown = ", ".join(r.path for r in missing[:3])
        problems.append(f"{len(missing)} of {len(records)} audio files listed in {where} are missing (e.g. {shown})")
    return present


def _bool(value: str, path: Path, line: int, column: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise DatasetError(f"{path}, line {line}: column {column!r} must be True or False, got {value!r}.")


def _int(value: str, path: Path, line: int, column: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}, line {line}: column {column!r} must be an integer, got {value!r}.") from None


def _float(value: str, path: Path, line: int, column: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}, line {line}: column {column!r} must be a number, got {value!r}.") from None


# ------------------------------------------------------------------------------------------ folder
FOLDER_SPLIT_NAMES = {"train": "train", "training": "train", "valid": "validation", "val": "validation",
                      "validation": "validation", "dev": "validation", "test": "test", "eval": "test",
                      "evaluation": "test"}


def read_folder(
    root: str | os.PathLike,
    *,
    labels: str = "auto",
    label_regex: str | None = None,
    group_regex: str | None = None,
    group_csv: str | None = "auto",
    splits: str = "auto",
    extensions: Sequence[str] | None = None,
) -> DatasetIndex:
    """A folder of audio files, searched recursively.

    Layouts: `root/<class>/<file>` (labels from the sub-folder), `root/<file>` (unlabelled, or labels
    from the file name with `label_regex`), and either of them under split folders
    `root/{train,validation,test}/...` (also valid/val/dev, eval).

    Args:
      labels: 'auto' (sub-folder names when every file sits in a sub-folder, none when all sit in the
        root), 'folder', or 'none'. Ignored when `label_regex` is given.
      label_regex: take the label from the file name (without its extension): the named group `label`
        or else group 1, e.g. r'^(\\d)_' for FSDD's `<digit>_<speaker>_<n>.wav`.
      group_regex: take the group from the file name likewise, e.g. r'^\\d_([a-z]+)_' (FSDD speakers).
      group_csv: a CSV (relative to root) with columns `path` (relative to root) and `group`; 'auto'
        uses `meta.csv` when it has those columns (the synthetic corpus writes one).
      splits: 'auto' (top-level folders named train/validation/test... are splits when all top-level
        folders are), 'folders' (they must be), or 'none'.
      extensions: file suffixes to include; default: every format soundfile reads.
    """
    root = _require_dir(Path(root).expanduser().resolve(), "audio folder", "Pass the folder that holds the audio.")
    exts = frozenset(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions) if extensions \
        else audio_extensions()
    if labels not in ("auto", "folder", "none"):
        raise DatasetError(f"labels must be 'auto', 'folder' or 'none', got {labels!r}.")
    if splits not in ("auto", "folders", "none"):
        raise DatasetError(f"splits must be 'auto', 'folders' or 'none', got {splits!r}.")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in exts and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise DatasetError(
            f"{root}: no audio files found (looked for {', '.join(sorted(exts))} in all sub-folders). "
            "Check the path, or pass extensions=... for other suffixes."
        )
    rels = [p.relative_to(root) for p in files]
    top = {r.parts[0] for r in rels if len(r.parts) > 1}
    at_root = [r for r in rels if len(r.parts) == 1]
    use_splits = False
    if splits == "folders" or (splits == "auto" and top and not at_root
                               and all(t.lower() in FOLDER_SPLIT_NAMES for t in top)):
        bad = sorted(t for t in top if t.lower() not in FOLDER_SPLIT_NAMES) + [str(r) for r in at_root[:1]]
        if bad:
            raise DatasetError(
                f"{root}: splits='folders' needs every file under a split folder "
                f"({sorted(set(FOLDER_SPLIT_NAMES))}); found {bad[0]!r}."
            )
        use_splits = True
    label_re = re.compile(label_regex) if label_regex else None
    group_re = re.compile(group_regex) if group_regex else None

    def from_regex(rx: re.Pattern, rel: Path, what: str) -> str:
        m = rx.search(Path(rel.name).stem)
        if not m:
            raise DatasetError(f"{root / rel}: file name does not match {what} {rx.pattern!r}; fix the regex.")
        return m.group("label" if "label" in rx.groupindex else "group" if "group" in rx.groupindex else 1) \
            if rx.groups else m.group(0)

    inner = [Path(*r.parts[1:]) if use_splits else r for r in rels]
    if label_re is None:
        mode = labels
        if mode == "auto":
            nested = [len(r.parts) > 1 for r in inner]
            if all(nested):
                mode = "folder"
            elif not any(nested):
                mode = "none"
            else:
                loose = next(rels[i] for i, n in enumerate(nested) if not n)
                raise DatasetError(
                    f"{root}: some files sit in class sub-folders and some do not (e.g. {loose}). Move every "
                    "file into a class folder, or pass labels='none' to read the folder unlabelled."
                )
        if mode == "folder":
            flat = [rels[i] for i, r in enumerate(inner) if len(r.parts) < 2]
            if flat:
                raise DatasetError(f"{root / flat[0]}: labels='folder' needs files in class sub-folders.")
        names = [r.parts[0] if mode == "folder" else None for r in inner]
    else:
        names = [from_regex(label_re, r, "label_regex") for r in rels]

    groups_by_path: dict[str, str] = {}
    if group_csv:
        csv_path = root / ("meta.csv" if group_csv == "auto" else group_csv)
        if group_csv != "auto" or csv_path.is_file():
            usable = True
            if group_csv == "auto":
                with open(csv_path, newline="", encoding="utf-8-sig") as f:
                    head = next(csv.reader(f), [])
                usable = {"path", "group"} <= {h.strip() for h in head}
            if usable:
                for _, row in read_csv_rows(csv_path, ("path", "group")):
                    groups_by_path[Path(row["path"]).as_posix()] = row["group"]

    classes = tuple(sorted({n for n in names if n is not None}))
    index_of = {c: i for i, c in enumerate(classes)}
    records = []
    for p, rel, name in zip(files, rels, names):
        group = from_regex(group_re, rel, "group_regex") if group_re else groups_by_path.get(rel.as_posix())
        split = FOLDER_SPLIT_NAMES[rel.parts[0].lower()] if use_splits else ""
        records.append(Record(
            path=str(p), labels=() if name is None else (index_of[name],), label_names=() if name is None else (name,),
            split=split, fold=None, group=group, dataset="folder",
        ))
    return DatasetIndex("folder", records, classes, multilabel=False, problems=[], root=str(root))


# ------------------------------------------------------------------------------------------ ESC-50
ESC50_CLASSES = (
    "dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow",
    "rain", "sea_waves", "crackling_fire", "crickets", "chirping_birds", "water_drops", "wind", "pouring_water",
    "toilet_flush", "thunderstorm", "crying_baby", "sneezing", "clapping", "breathing", "coughing", "footsteps",
    "laughing", "brushing_teeth", "snoring", "drinking_sipping", "door_wood_knock", "mouse_click",
    "keyboard_typing", "door_wood_creaks", "can_opening", "washing_machine", "vacuum_cleaner", "clock_alarm",
    "clock_tick", "glass_breaking", "helicopter", "chainsaw", "siren", "car_horn", "engine", "train",
    "church_bells", "airplane", "fireworks", "hand_saw",
)
ESC10_CLASSES = ("dog", "rooster", "rain", "sea_waves", "crackling_fire", "crying_baby", "sneezing",
                 "clock_tick", "helicopter", "chainsaw")


def read_esc50(root: str | os.PathLike, *, esc10: bool = False, folds: Sequence[int] | None = None) -> DatasetIndex:
    """ESC-50 (Piczak 2015): `meta/esc50.csv` + `audio/*.wav`, 50 classes, folds 1-5, group = source clip.

    Args:
      root: the folder holding `meta/` and `audio/` (ESC-50-master).
      esc10: keep only the ESC-10 subset (rows with esc10 == True), classes re-indexed 0..9.
      folds: keep only these folds (default all five).
    """
    root = Path(root).expanduser().resolve()
    meta = root / "meta" / "esc50.csv"
    _require_file(meta, "ESC-50 metadata (meta/esc50.csv)",
                  "Pass --root pointing at the unpacked ESC-50-master folder (it holds meta/ and audio/).")
    _require_dir(root / "audio", "ESC-50 audio folder", "The archive's audio/ folder must sit next to meta/.")
    rows = read_csv_rows(meta, ("filename", "fold", "target", "category", "esc10", "src_file", "take"))
    _check_unique(((r["filename"], str(meta), n) for n, r in rows), "filename")
    classes = ESC10_CLASSES if esc10 else ESC50_CLASSES
    index_of = {c: i for i, c in enumerate(classes)}
    wanted = None if folds is None else {int(f) for f in folds}
    records = []
    for line, row in rows:
        fold = _int(row["fold"], meta, line, "fold")
        target = _int(row["target"], meta, line, "target")
        if not 1 <= fold <= 5:
            raise DatasetError(f"{meta}, line {line}: fold {fold} is outside 1..5.")
        if not 0 <= target < len(ESC50_CLASSES) or ESC50_CLASSES[target] != row["category"]:
            raise DatasetError(
                f"{meta}, line {line}: label target={row['target']} category={row['category']!r} is not in the "
                f"ESC-50 class list (target {target} is {ESC50_CLASSES[target] if 0 <= target < 50 else 'out of range'}"
                "). The CSV is corrupt or from another dataset version; re-extract the original."
            )
        is_esc10 = _bool(row["esc10"], meta, line, "esc10")
        if is_esc10 != (row["category"] in ESC10_CLASSES):
            raise DatasetError(f"{meta}, line {line}: esc10={row['esc10']} disagrees with class {row['category']!r}.")
        if (esc10 and not is_esc10) or (wanted is not None and fold not in wanted):
            continue
        name = row["category"]
        records.append(Record(
            path=str(root / "audio" / row["filename"]), labels=(index_of[name],), label_names=(name,),
            split="", fold=fold, group=row["src_file"], dataset="esc50",
            extra=(("take", row["take"]), ("target", row["target"])),
        ))
    problems: list[str] = []
    records = _drop_missing(records, problems, str(meta), "Check that audio/ holds the ESC-50 wav files.")
    return DatasetIndex("esc50", records, classes, multilabel=False, problems=problems, root=str(root))


# ------------------------------------------------------------------------------------------ audio check
@dataclass
class AudioCheck:
    """Result of `check_audio`.

    Attributes:
      records: the records whose audio is readable (all of them unless skip_unreadable=True).
      unreadable: (path, reason) for each file that failed.
      durations: seconds of audio each readable record covers (window length for windowed records).
    """

    records: list[Record]
    unreadable: list[tuple[str, str]]
    durations: dict[str, float]

    @property
    def total_seconds(self) -> float:
        return float(sum(self.durations.values()))


def check_audio(
    records: Sequence[Record],
    skip_unreadable: bool = False,
    *,
    decode: bool = False,
    progress: bool = False,
) -> AudioCheck:
    """Open every record's audio file and list those that cannot be used.

    Args:
      records: from a reader.
      skip_unreadable: drop unreadable files (they stay listed in `unreadable`) instead of raising.
      decode: decode the whole file with `audiorep.audio.io.load_audio` (catches truncated data and
        NaNs; slow). Default: read the header only with soundfile.info (catches missing, non-audio and
        empty files, and windows past the end of the file).
      progress: show a progress bar.

    Raises:
      DatasetError: listing the unreadable files, unless skip_unreadable.
    """
    from audiorep.audio.io import AudioError, load_audio

    infos: dict[str, tuple[float, str | None]] = {}  # path -> (seconds, error)
    items: Iterable[Record] = records
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(records, desc="checking audio", unit="file")
    good, bad, durations = [], [], {}
    for r in items:
        if r.path not in infos:
            try:
                if decode:
                    wave, rate = load_audio(r.path)
                    infos[r.path] = (wave.shape[-1] / rate, None)
                else:
                    info = sf.info(r.path)
                    if info.frames <= 0:
                        raise AudioError(f"{r.path} has 0 samples (empty or truncated file)")
                    infos[r.path] = (info.frames / info.samplerate, None)
            except (AudioError, sf.LibsndfileError, RuntimeError, OSError) as err:
                infos[r.path] = (0.0, str(err).splitlines()[0] or type(err).__name__)
        seconds, error = infos[r.path]
        if error is None and (r.start_s >= seconds or (r.end_s is not None and r.end_s > seconds + 1e-3)):
            end = "end" if r.end_s is None else f"{r.end_s:g}"
            error = f"window {r.start_s:g}-{end} s is past the end of the file ({seconds:.3f} s)"
        if error is not None:
            bad.append((r.key, error))
            continue
        good.append(r)
        durations[r.key] = (seconds if r.end_s is None else r.end_s) - r.start_s
    if bad and not skip_unreadable:
        shown = "\n".join(f"  {p}: {why}" for p, why in bad[:20])
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise DatasetError(
            f"{len(bad)} of {len(records)} audio files are unreadable:\n{shown}{more}\n"
            "Re-extract or re-download them, or pass skip_unreadable=True (CLI: --skip-unreadable) to skip them."
        )
    return AudioCheck(good, bad, durations)


# ------------------------------------------------------------------------------------------ registry
@dataclass(frozen=True)
class Reader:
    """A registered reader: the function and a one-paragraph description of the layout it expects."""

    name: str
    fn: Callable[..., DatasetIndex]
    layout: str

    @property
    def options(self) -> dict[str, inspect.Parameter]:
        """Keyword options of the reader (everything but root)."""
        params = inspect.signature(self.fn).parameters
        return {k: p for k, p in params.items() if k != "root"}


READERS: dict[str, Reader] = {
    "folder": Reader("folder", read_folder,
                     "root/<class>/<clip>.<ext> (labels from sub-folders) or flat root/<clip> (unlabelled or "
                     "label_regex); optional root/{train,validation,test}/ split folders; optional meta.csv "
                     "(path, group)"),
    "esc50": Reader("esc50", read_esc50,
                    "root/meta/esc50.csv (filename,fold,target,category,esc10,src_file,take) + root/audio/*.wav"),
}


def read_dataset(name: str, root: str | os.PathLike, **options) -> DatasetIndex:
    """Read a dataset's local copy with the named reader (see `READERS`).

    Raises:
      DatasetError: unknown reader or option, or a layout/metadata problem (naming the file and line).
    """
    if name not in READERS:
        raise DatasetError(f"unknown dataset reader {name!r}; readers are {sorted(READERS)}.")
    reader = READERS[name]
    unknown = sorted(set(options) - set(reader.options))
    if unknown:
        raise DatasetError(f"reader {name!r} has no option(s) {unknown}; its options are {sorted(reader.options)}.")
    return reader.fn(root, **options)
