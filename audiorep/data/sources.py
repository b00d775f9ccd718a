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

import numpy as np
import soundfile as sf

from audiorep.errors import AudiorepError

SPLITS = ("train", "validation", "test", "")


class DatasetError(AudiorepError, ValueError):
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
def files_under(root: Path, suffixes: frozenset[str]) -> list[Path]:
    """Files under `root` (recursively, following symlinked folders once each) whose lower-case suffix is
    in `suffixes`, sorted. Hidden files and folders (leading '.') are skipped. Paths keep the `root` prefix
    (symlinks are not resolved), so labels from folder names are the names the user sees."""
    found, seen = [], set()
    for folder, dirs, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a symlink cycle, or the same folder linked twice
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(Path(folder) / n for n in names
                     if not n.startswith(".") and os.path.splitext(n)[1].lower() in suffixes)
    return sorted(p for p in found if p.is_file())


def audio_extensions() -> frozenset[str]:
    """File suffixes (lower case, with dot) of audio formats this soundfile/libsndfile build reads.

    Container formats only: suffixes that usually hold something else (.mat, .htk features, .raw) are
    left out; pass `extensions=` to the folder reader to include them.
    """
    suffixes = {"WAV": (".wav", ".wave"), "FLAC": (".flac",), "OGG": (".ogg", ".oga", ".opus"), "MP3": (".mp3",),
                "AIFF": (".aiff", ".aif", ".aifc"), "AU": (".au", ".snd"), "CAF": (".caf",), "W64": (".w64",),
                "RF64": (".rf64",), "VOC": (".voc",), "SD2": (".sd2",), "PAF": (".paf",)}
    available = sf.available_formats()
    return frozenset(ext for fmt, exts in suffixes.items() if fmt in available for ext in exts)


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
            line = reader.line_num + skip_comment_lines
            short = [c for c in required if row.get(c) is None]
            if short:
                raise DatasetError(
                    f"{path}, line {line}: the row has too few fields (no value for {short}); expected "
                    f"{len(header)} fields ({', '.join(header)}). Fix or delete the line."
                )
            rows.append((line, {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()}))
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


class _FileIndex:
    """Existence checks by listing each directory once (one stat per file is slow for millions of clips)."""

    def __init__(self) -> None:
        self._dirs: dict[str, frozenset[str]] = {}

    def exists(self, path: str) -> bool:
        parent, name = os.path.split(path)
        names = self._dirs.get(parent)
        if names is None:
            try:
                names = frozenset(e.name for e in os.scandir(parent) if not e.is_dir())
            except OSError:  # missing or unreadable directory
                names = frozenset()
            self._dirs[parent] = names
        return name in names


def _drop_missing(records: list[Record], problems: list[str], where: str, hint: str) -> list[Record]:
    """Keep records whose file exists; report the others. Raise when nothing at all exists."""
    files = _FileIndex()
    found = [files.exists(r.path) for r in records]
    present = [r for r, ok in zip(records, found) if ok]
    missing = [r for r, ok in zip(records, found) if not ok]
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
    files = files_under(root, exts)
    if not files:
        raise DatasetError(
            f"{root}: no audio files found (looked for {', '.join(sorted(exts))} in all sub-folders, "
            "symlinked ones included). "
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


# ------------------------------------------------------------------------------------------ Speech Commands
SPEECH_COMMANDS_WORDS = (
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four", "go", "happy",
    "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one", "right", "seven", "sheila", "six",
    "stop", "three", "tree", "two", "up", "visual", "wow", "yes", "zero",
)
KWS_WORDS = ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes")
SILENCE, UNKNOWN, BACKGROUND_NOISE = "_silence_", "_unknown_", "_background_noise_"
KWS12_CLASSES = (*KWS_WORDS, SILENCE, UNKNOWN)  # tensorflow_datasets' order
_SPEAKER_RE = re.compile(r"([0-9a-f]{8})_nohash_", re.IGNORECASE)


def _speaker(name: str) -> str | None:
    m = _SPEAKER_RE.search(name)
    return m.group(1).lower() if m else None


def _read_list(path: Path) -> list[tuple[int, str]]:
    _require_file(path, "Speech Commands split list",
                  "It ships in the speech_commands_v0.02 archive next to the word folders; re-extract it.")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if line:
            if line.count("/") != 1 or not line.endswith(".wav"):
                raise DatasetError(f"{path}, line {n}: expected '<word>/<file>.wav', got {line!r}.")
            out.append((n, line))
    return out


def _speech_commands_test_package(root: Path) -> DatasetIndex:
    """The official 12-class test set (speech_commands_test_set_v0.02): root/<class>/<file>."""
    index_of = {c: i for i, c in enumerate(KWS12_CLASSES)}
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    extra = [d for d in found if d not in index_of]
    if extra:
        raise DatasetError(
            f"{root / extra[0]}: folder {extra[0]!r} is not one of the 12 test-set classes {list(KWS12_CLASSES)}. "
            "Is this the speech_commands_test_set_v0.02 package?"
        )
    records = []
    for cls in KWS12_CLASSES:
        for p in sorted((root / cls).glob("*.wav")) if (root / cls).is_dir() else ():
            records.append(Record(
                path=str(p), labels=(index_of[cls],), label_names=(cls,), split="test", fold=None,
                group=_speaker(p.name), dataset="speech_commands",
            ))
    if not records:
        raise DatasetError(f"{root}: no .wav files in the class folders of the Speech Commands test package.")
    return DatasetIndex("speech_commands", records, KWS12_CLASSES, multilabel=False, problems=[], root=str(root))


def read_speech_commands(
    root: str | os.PathLike,
    *,
    num_classes: int = 35,
    test_root: str | None = None,
    silence_seconds: float = 1.0,
    silence_hop_s: float = 0.5,
    silence_validation_files: Sequence[str] = ("running_tap.wav",),
) -> DatasetIndex:
    """Speech Commands v2 (Warden 2018); group = speaker (the hash before `_nohash_`).

    Layout: root/<word>/<speaker>_nohash_<n>.wav for 35 words, root/_background_noise_/*.wav,
    root/validation_list.txt and root/testing_list.txt (relative paths, one a line); train = every other
    word file. Given the official test-set package instead (folders already the 12 classes, file names
    such as `_unknown_/backward_0c540988_nohash_0.wav.wav`), every record is split 'test'.

    Args:
      num_classes: 35 (every word; background noise is left out) or 12 (10 command words + `_silence_` +
        `_unknown_`, the KWS task of tensorflow_datasets and SUPERB/HEAR: other words become `_unknown_`).
      test_root: with num_classes=12, take the test split from the official test-set package at this path
        (as tensorflow_datasets does) instead of testing_list.txt.
      silence_seconds, silence_hop_s: with num_classes=12, `_silence_` training records are windows of this
        length and hop cut from the `_background_noise_` files (records carry start_s/end_s).
      silence_validation_files: background-noise files whose windows go to the validation split
        (tensorflow_datasets puts running_tap.wav there); the others go to train.
    """
    root = _require_dir(Path(root).expanduser().resolve(), "Speech Commands folder",
                        "Pass the folder that holds the word folders and validation_list.txt.")
    if num_classes not in (12, 35):
        raise DatasetError(f"num_classes must be 35 (all words) or 12 (KWS task), got {num_classes!r}.")
    if not (root / "validation_list.txt").exists() and (root / SILENCE).is_dir() and (root / UNKNOWN).is_dir():
        return _speech_commands_test_package(root)
    val = _read_list(root / "validation_list.txt")
    test = _read_list(root / "testing_list.txt")
    _check_unique([(p, str(root / "validation_list.txt"), n) for n, p in val]
                  + [(p, str(root / "testing_list.txt"), n) for n, p in test], "path")
    split_of = {p: "validation" for _, p in val} | {p: "test" for _, p in test}
    classes = SPEECH_COMMANDS_WORDS if num_classes == 35 else KWS12_CLASSES
    index_of = {c: i for i, c in enumerate(classes)}
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    stray = [d for d in folders if d not in SPEECH_COMMANDS_WORDS and d != BACKGROUND_NOISE]
    if stray:
        raise DatasetError(
            f"{root / stray[0]}: folder {stray[0]!r} is not one of the 35 Speech Commands v2 words. "
            "Remove it, or read the folder with the 'folder' reader."
        )
    listed = [(p, n, "validation_list.txt") for n, p in val] + [(p, n, "testing_list.txt") for n, p in test]
    for rel, n, name in listed:
        if rel.split("/")[0] not in SPEECH_COMMANDS_WORDS:
            raise DatasetError(f"{root / name}, line {n}: {rel!r} is not in a Speech Commands word folder.")
    records, problems = [], []
    use_test_package = num_classes == 12 and test_root is not None
    for word in folders:
        if word == BACKGROUND_NOISE:
            continue
        cls = word if num_classes == 35 or word in KWS_WORDS else UNKNOWN
        for p in sorted((root / word).glob("*.wav")):
            rel = f"{word}/{p.name}"
            split = split_of.get(rel, "train")
            if split == "test" and use_test_package:
                continue
            records.append(Record(
                path=str(p), labels=(index_of[cls],), label_names=(cls,), split=split, fold=None,
                group=_speaker(p.name), dataset="speech_commands",
            ))
    on_disk = {f"{Path(r.path).parent.name}/{Path(r.path).name}" for r in records}
    listed_missing = [p for p in split_of if p not in on_disk and not (use_test_package and split_of[p] == "test")]
    if listed_missing:
        problems.append(f"{len(listed_missing)} files named in validation_list.txt/testing_list.txt are missing "
                        f"(e.g. {listed_missing[0]})")
    if num_classes == 12:
        noise_dir = root / BACKGROUND_NOISE
        if not noise_dir.is_dir():
            problems.append(f"{noise_dir} not found: no _silence_ training records")
        else:
            if silence_seconds <= 0 or silence_hop_s <= 0:
                raise DatasetError("silence_seconds and silence_hop_s must be positive.")
            val_files = set(silence_validation_files)
            for p in sorted(noise_dir.glob("*.wav")):
                try:
                    info = sf.info(str(p))
                except (sf.LibsndfileError, RuntimeError) as err:
                    problems.append(f"{p}: unreadable background noise ({err}); no _silence_ windows cut from it")
                    continue
                seconds = info.frames / info.samplerate
                split = "validation" if p.name in val_files else "train"
                n_windows = int(np.floor((seconds - silence_seconds) / silence_hop_s + 1e-9)) + 1
                for k in range(max(n_windows, 0)):
                    start = round(k * silence_hop_s, 6)
                    records.append(Record(
                        path=str(p), labels=(index_of[SILENCE],), label_names=(SILENCE,), split=split, fold=None,
                        group=f"{BACKGROUND_NOISE}/{p.name}", dataset="speech_commands",
                        start_s=start, end_s=round(start + silence_seconds, 6),
                    ))
        if use_test_package:
            pkg = _speech_commands_test_package(_require_dir(
                Path(test_root).expanduser().resolve(), "Speech Commands test-set package",
                "Pass test_root= the unpacked speech_commands_test_set_v0.02 folder."))
            records.extend(pkg.records)
    if not records:
        raise DatasetError(f"{root}: no .wav files found in the word folders.")
    return DatasetIndex("speech_commands", records, classes, multilabel=False, problems=problems, root=str(root))


# ------------------------------------------------------------------------------------------ AudioSet
AUDIOSET_SPLITS = {"balanced_train": "train", "unbalanced_train": "train", "eval": "test"}


def read_audioset(
    root: str | os.PathLike,
    *,
    splits: Sequence[str] | None = None,
    file_pattern: str = "{ytid}.wav",
    audio_dir: str = "{split}",
) -> DatasetIndex:
    """AudioSet (Gemmeke et al. 2017): 527 classes, multi-label, local copies of the 10 s segments.

    Layout: root/class_labels_indices.csv (index,mid,display_name), root/{split}_segments.csv (three `#`
    lines, then `YTID, start_seconds, end_seconds, "mid,mid"`), and the clips at
    root/<audio_dir>/<file_pattern>. Clips that are not on disk (deleted videos) are counted in
    `problems`, not fatal. Record.split: balanced_train/unbalanced_train -> 'train', eval -> 'test'; the
    AudioSet split name and segment times are in `Record.info`; group = YouTube id.

    Args:
      splits: among balanced_train, unbalanced_train, eval; default: each whose segments CSV exists.
      file_pattern: clip file name; placeholders {ytid}, {start}, {end} (as written in the CSV, e.g.
        30.000), {start_int}, {end_int}, {split}. Common: '{ytid}.wav', 'Y{ytid}.wav', '{ytid}_{start}.flac'.
      audio_dir: sub-folder of root holding the clips, may use {split}; '' = root itself.
    """
    root = _require_dir(Path(root).expanduser().resolve(), "AudioSet folder",
                        "Pass the folder holding class_labels_indices.csv and the *_segments.csv files.")
    labels_csv = root / "class_labels_indices.csv"
    rows = read_csv_rows(labels_csv, ("index", "mid", "display_name"))
    mids, classes = [], []
    for expected, (line, row) in enumerate(rows):
        if _int(row["index"], labels_csv, line, "index") != expected:
            raise DatasetError(f"{labels_csv}, line {line}: index {row['index']} should be {expected} (rows in order).")
        mids.append(row["mid"])
        classes.append(row["display_name"])
    _check_unique(((m, str(labels_csv), rows[i][0]) for i, m in enumerate(mids)), "mid")
    index_of = {m: i for i, m in enumerate(mids)}
    if splits is None:
        splits = [s for s in AUDIOSET_SPLITS if (root / f"{s}_segments.csv").is_file()]
        if not splits:
            raise DatasetError(f"{root}: no balanced_train/unbalanced_train/eval _segments.csv files found.")
    for s in splits:
        if s not in AUDIOSET_SPLITS:
            raise DatasetError(f"unknown AudioSet split {s!r}; splits are {list(AUDIOSET_SPLITS)}.")
    for key in re.findall(r"{(\w+)}", file_pattern + audio_dir):
        if key not in ("ytid", "start", "end", "start_int", "end_int", "split"):
            raise DatasetError(f"file_pattern/audio_dir placeholder {{{key}}} is unknown; use "
                               "{ytid}, {start}, {end}, {start_int}, {end_int}, {split}.")
    records, problems, seen = [], [], []
    files = _FileIndex()
    needs_ints = "_int}" in file_pattern + audio_dir
    for s in splits:
        seg_csv = root / f"{s}_segments.csv"
        seg_rows = read_csv_rows(seg_csv, ("YTID", "start_seconds", "end_seconds", "positive_labels"),
                                 skip_comment_lines=3, skipinitialspace=True,
                                 fieldnames=("YTID", "start_seconds", "end_seconds", "positive_labels"))
        split, split_records, n_listed, first_missing = AUDIOSET_SPLITS[s], [], 0, None
        base = os.path.normpath(os.path.join(str(root), audio_dir.format(split=s, ytid="", start="", end="",
                                                                          start_int="", end_int="")))
        per_clip_dir = any(k in audio_dir for k in ("{ytid", "{start", "{end"))
        for line, row in seg_rows:
            ytid, start, end, positive = row["YTID"], row["start_seconds"], row["end_seconds"], row["positive_labels"]
            if ytid.startswith("#"):
                continue
            if positive is None or end is None:
                raise DatasetError(f"{seg_csv}, line {line}: expected 4 fields `YTID, start, end, \"labels\"`.")
            seen.append((ytid, str(seg_csv), line))
            n_listed += 1
            try:
                idx = sorted({index_of[m.strip()] for m in positive.split(",")})
            except KeyError as err:
                raise DatasetError(f"{seg_csv}, line {line}: label {err.args[0]!r} is not in {labels_csv.name}; "
                                   "use the class_labels_indices.csv of the same AudioSet release.") from None
            fields = dict(ytid=ytid, start=start, end=end, split=s)
            if needs_ints:
                fields.update(start_int=int(_float(start, seg_csv, line, "start_seconds")),
                              end_int=int(_float(end, seg_csv, line, "end_seconds")))
            folder = os.path.normpath(os.path.join(str(root), audio_dir.format(**fields))) if per_clip_dir else base
            path = os.path.join(folder, file_pattern.format(**fields))
            if not files.exists(path):
                first_missing = first_missing or path
                continue
            split_records.append(Record(
                path=path, labels=tuple(idx), label_names=tuple(classes[i] for i in idx), split=split, fold=None,
                group=ytid, dataset="audioset",
                extra=(("audioset_split", s), ("segment_end", end), ("segment_start", start), ("ytid", ytid)),
            ))
        if len(split_records) < n_listed:
            problems.append(f"{s}: {n_listed - len(split_records)} of {n_listed} clips missing "
                            f"(e.g. {first_missing}; check file_pattern/audio_dir if all are missing)")
        records.extend(split_records)
    _check_unique(seen, "YTID")
    if not records:
        raise DatasetError(
            f"{root}: none of the clips listed in the segment CSVs exist; the first was expected at "
            f"{root / audio_dir} with file_pattern {file_pattern!r}. Set file_pattern/audio_dir to your copy's naming."
        )
    return DatasetIndex("audioset", records, tuple(classes), multilabel=True, problems=problems, root=str(root))


# ------------------------------------------------------------------------------------------ SONICS
SONICS_CLASSES = ("real", "fake")
_SONICS_SPLITS = {"train": "train", "valid": "validation", "validation": "validation", "test": "test"}


def read_sonics(
    root: str | os.PathLike,
    *,
    min_duration: float = 30.0,
    drop_no_vocal: bool = True,
    audio_ext: str = ".mp3",
) -> DatasetIndex:
    """SONICS (Rahman et al., ICLR 2025): real vs AI-generated (Suno/Udio) songs, binary labels.

    Layout: root/real_songs.csv + root/real_songs/<filename>.mp3, root/fake_songs.csv +
    root/fake_songs/<filename>.mp3. The official split (data_split.py) keeps duration >= 30 s and, for
    real songs, no_vocal == False (fake_songs.csv has no no_vocal column), then uses the `split` column
    (train/valid/test). Labels: real = 0, fake = 1 (the `target` column); the fake sub-type (full / half /
    mostly fake) and generator are in `Record.info`. Group: real songs by artist; fake songs by generation
    id (the file name without the `_<n>` take suffix: both takes of one prompt share a group).

    Args:
      min_duration: drop songs shorter than this (seconds, `duration` column).
      drop_no_vocal: drop real songs marked no_vocal.
      audio_ext: suffix of the audio files.
    """
    root = _require_dir(Path(root).expanduser().resolve(), "SONICS folder",
                        "Pass the folder holding real_songs.csv, fake_songs.csv, real_songs/ and fake_songs/.")
    records, problems, keys = [], [], []
    for kind, label in (("real", 0), ("fake", 1)):
        csv_path = root / f"{kind}_songs.csv"
        required = ["filename", "duration", "split", "label"] + (["artist", "no_vocal"] if kind == "real" else [])
        rows = read_csv_rows(csv_path, required)
        dropped = Counter()
        for line, row in rows:
            keys.append((row["filename"], str(csv_path), line))
            split = _SONICS_SPLITS.get(row["split"].lower())
            if split is None:
                raise DatasetError(f"{csv_path}, line {line}: split {row['split']!r} is not train/valid/test.")
            if _float(row["duration"], csv_path, line, "duration") < min_duration:
                dropped["shorter than min_duration"] += 1
                continue
            if kind == "real" and drop_no_vocal and _bool(row["no_vocal"], csv_path, line, "no_vocal"):
                dropped["no_vocal"] += 1
                continue
            if "target" in row and row["target"] not in (None, "") and _int(row["target"], csv_path, line,
                                                                               "target") != label:
                raise DatasetError(f"{csv_path}, line {line}: target {row['target']} but every row of "
                                   f"{csv_path.name} must be {label} ({kind}).")
            if kind == "real":
                group = f"artist:{row['artist']}"
                extra = {"subtype": row["label"]}
            else:
                group = "gen:" + re.sub(r"_\d+$", "", row["filename"])
                extra = {"subtype": row["label"], "source": row.get("source") or "",
                         "algorithm": row.get("algorithm") or ""}
            records.append(Record(
                path=str(root / f"{kind}_songs" / f"{row['filename']}{audio_ext}"), labels=(label,),
                label_names=(SONICS_CLASSES[label],), split=split, fold=None, group=group, dataset="sonics",
                extra=tuple(sorted(extra.items())),
            ))
        for why, n in sorted(dropped.items()):
            problems.append(f"{csv_path.name}: {n} songs dropped ({why}, official filter)")
    _check_unique(keys, "filename")
    records = _drop_missing(records, problems, "real_songs.csv/fake_songs.csv",
                            "Real songs are not distributed: fetch them by youtube_id into real_songs/.")
    return DatasetIndex("sonics", records, SONICS_CLASSES, multilabel=False, problems=problems, root=str(root))


# ------------------------------------------------------------------------------------------ ASVspoof 2019 LA
SPOOF_CLASSES = ("bonafide", "spoof")
_ASV_SPLITS = {"train": ("train", "trn"), "dev": ("validation", "trl"), "eval": ("test", "trl")}


def read_asvspoof2019_la(
    root: str | os.PathLike,
    *,
    splits: Sequence[str] = ("train", "dev", "eval"),
) -> DatasetIndex:
    """ASVspoof 2019 logical access, countermeasure protocols; classes bonafide = 0, spoof = 1.

    Layout (root = the LA folder): ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.{train.trn,dev.trl,
    eval.trl}.txt with whitespace-separated lines `SPEAKER FILE - SYSTEM KEY`, audio at
    ASVspoof2019_LA_{train,dev,eval}/flac/FILE.flac. Split: train -> 'train', dev -> 'validation',
    eval -> 'test'; group = speaker; the attack system (A01-A19, '-' for bona fide) is `info['system']`.
    """
    root = Path(root).expanduser().resolve()
    if not (root / "ASVspoof2019_LA_cm_protocols").is_dir() and (root / "LA" / "ASVspoof2019_LA_cm_protocols").is_dir():
        root = root / "LA"
    proto_dir = _require_dir(root / "ASVspoof2019_LA_cm_protocols", "ASVspoof 2019 LA protocol folder",
                             "Pass --root pointing at the unpacked LA folder.")
    records, keys, problems = [], [], []
    for s in splits:
        if s not in _ASV_SPLITS:
            raise DatasetError(f"unknown ASVspoof split {s!r}; splits are {list(_ASV_SPLITS)}.")
        split, suffix = _ASV_SPLITS[s]
        proto = _require_file(proto_dir / f"ASVspoof2019.LA.cm.{s}.{suffix}.txt", "ASVspoof protocol file",
                              "Re-extract LA.zip; the cm protocols ship in ASVspoof2019_LA_cm_protocols/.")
        flac = root / f"ASVspoof2019_LA_{s}" / "flac"
        for n, line in enumerate(proto.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 5:
                raise DatasetError(f"{proto}, line {n}: expected 5 fields `SPEAKER FILE - SYSTEM KEY`, got {line!r}.")
            speaker, file, _, system, key = parts
            if key not in SPOOF_CLASSES:
                raise DatasetError(f"{proto}, line {n}: key {key!r} is not in {list(SPOOF_CLASSES)}.")
            keys.append((file, str(proto), n))
            records.append(Record(
                path=str(flac / f"{file}.flac"), labels=(SPOOF_CLASSES.index(key),), label_names=(key,),
                split=split, fold=None, group=speaker, dataset="asvspoof2019_la",
                extra=(("file_id", file), ("system", system)),
            ))
    _check_unique(keys, "file")
    records = _drop_missing(records, problems, f"the protocol files in {proto_dir}",
                            "Audio belongs in ASVspoof2019_LA_{train,dev,eval}/flac/ next to the protocols.")
    return DatasetIndex("asvspoof2019_la", records, SPOOF_CLASSES, multilabel=False, problems=problems,
                        root=str(root))


# ------------------------------------------------------------------------------------------ In-the-Wild
def read_in_the_wild(root: str | os.PathLike) -> DatasetIndex:
    """In-the-Wild audio deepfakes (Müller et al., Interspeech 2022): test-only, group = speaker.

    Layout: root/meta.csv (file, speaker, label with label in bona-fide / spoof) and flat root/<file>.
    Labels use the ASVspoof classes (bonafide = 0, spoof = 1) so a model trained there scores here.
    """
    root = _require_dir(Path(root).expanduser().resolve(), "In-the-Wild folder",
                        "Pass the release_in_the_wild folder (it holds meta.csv and the wav files).")
    meta = root / "meta.csv"
    rows = read_csv_rows(meta, ("file", "speaker", "label"))
    _check_unique(((r["file"], str(meta), n) for n, r in rows), "file")
    names = {"bona-fide": "bonafide", "bonafide": "bonafide", "spoof": "spoof"}
    records = []
    for line, row in rows:
        name = names.get(row["label"].lower())
        if name is None:
            raise DatasetError(f"{meta}, line {line}: label {row['label']!r} is not bona-fide or spoof.")
        records.append(Record(
            path=str(root / row["file"]), labels=(SPOOF_CLASSES.index(name),), label_names=(name,), split="test",
            fold=None, group=row["speaker"], dataset="in_the_wild",
        ))
    problems: list[str] = []
    records = _drop_missing(records, problems, str(meta), "The wav files belong next to meta.csv.")
    return DatasetIndex("in_the_wild", records, SPOOF_CLASSES, multilabel=False, problems=problems, root=str(root))


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


def _probe_file(path: str, decode: bool) -> tuple[float, str | None]:
    """(seconds, None) for a usable file, (0.0, reason) otherwise."""
    from audiorep.audio.io import AudioError, load_audio

    try:
        if decode:
            wave, rate = load_audio(path)
            return wave.shape[-1] / rate, None
        info = sf.info(path)
        if info.frames <= 0:
            raise AudioError(f"{path} has 0 samples (empty or truncated file)")
        return info.frames / info.samplerate, None
    except (AudioError, sf.LibsndfileError, RuntimeError, OSError) as err:
        return 0.0, str(err).splitlines()[0] or type(err).__name__


def check_audio(
    records: Sequence[Record],
    skip_unreadable: bool = False,
    *,
    decode: bool = False,
    progress: bool = False,
    workers: int = 8,
) -> AudioCheck:
    """Open every record's audio file and list those that cannot be used.

    Args:
      records: from a reader.
      skip_unreadable: drop unreadable files (they stay listed in `unreadable`) instead of raising.
      decode: decode the whole file with `audiorep.audio.io.load_audio` (catches truncated data and
        NaNs; slow). Default: read the header only with soundfile.info (catches missing, non-audio and
        empty files, and windows past the end of the file).
      progress: show a progress bar.
      workers: threads opening files (libsndfile releases the GIL; helps most on network disks).

    Raises:
      DatasetError: listing the unreadable files, unless skip_unreadable.
    """
    from concurrent.futures import ThreadPoolExecutor

    paths = list(dict.fromkeys(r.path for r in records))  # unique, in order
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(paths), desc="checking audio", unit="file")
    infos: dict[str, tuple[float, str | None]] = {}
    with ThreadPoolExecutor(max(1, int(workers))) as pool:
        for path, result in zip(paths, pool.map(lambda p: _probe_file(p, decode), paths, chunksize=64)):
            infos[path] = result
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    good, bad, durations = [], [], {}
    for r in records:
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
    "speech_commands": Reader("speech_commands", read_speech_commands,
                              "root/<word>/<speaker>_nohash_<n>.wav, root/_background_noise_/, "
                              "root/validation_list.txt, root/testing_list.txt; or the test-set package "
                              "root/{yes,...,_silence_,_unknown_}/"),
    "audioset": Reader("audioset", read_audioset,
                       "root/class_labels_indices.csv, root/{balanced_train,unbalanced_train,eval}_segments.csv, "
                       "clips at root/<audio_dir>/<file_pattern> (default {split}/{ytid}.wav)"),
    "sonics": Reader("sonics", read_sonics,
                     "root/real_songs.csv + root/real_songs/<filename>.mp3, root/fake_songs.csv + "
                     "root/fake_songs/<filename>.mp3"),
    "asvspoof2019_la": Reader("asvspoof2019_la", read_asvspoof2019_la,
                              "root/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.{train.trn,dev.trl,eval.trl}.txt "
                              "+ root/ASVspoof2019_LA_{train,dev,eval}/flac/<FILE>.flac"),
    "in_the_wild": Reader("in_the_wild", read_in_the_wild, "root/meta.csv (file,speaker,label) + root/<file>.wav"),
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
