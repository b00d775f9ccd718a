"""What every dataset reader shares: `Record`, `DatasetIndex`, `DatasetError`, and the helpers that parse
metadata files and check that listed audio exists.

Readers (one module per dataset family next to this one) build `Record`s with these helpers; nothing here
opens audio (`check.py` does, on request).
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from audiorep.errors import AudiorepError

SPLITS = ("train", "validation", "test", "")
# Metadata keys a spoofing reader puts in `Record.extra` when it knows them: the columns protocols hold out
# (downstream/tasks/protocols.py) and per-group metrics break results down by. `attack_id` is set on spoofed
# clips only (the ASVspoof system id, the generator, the attack folder); the others on every clip they apply to.
METADATA_KEYS = ("attack_id", "speaker", "gender", "language", "source", "word")
# How messages name the dataset root: the flag differs between the commands that read datasets.
DATASET_ROOT = "the dataset root (--root of `audiorep datasets`, --data-root of `audiorep probe`)"


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
      listed: how many audio files the dataset's metadata says it holds (after the reader's own filters); None
        when there is no list to check against (the folder reader: the files found are the dataset).
      missing: the listed files that are not on disk (sorted paths); their records are not in `records`.
    """

    name: str
    records: list[Record]
    classes: tuple[str, ...]
    multilabel: bool
    problems: list[str] = field(default_factory=list)
    root: str = ""
    listed: int | None = None
    missing: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def complete(self) -> bool:
        """True when every audio file the metadata lists is on disk."""
        return not self.missing

    def file_counts(self) -> dict[str, int] | None:
        """{'expected', 'present', 'missing'} audio files, or None when there is no list (folder reader).
        Probing records these counts with every result."""
        if self.listed is None:
            return None
        return {"expected": self.listed, "present": self.listed - len(self.missing), "missing": len(self.missing)}

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


def require_dir(path: Path, what: str, hint: str) -> Path:
    """`path` if it is a directory, else a DatasetError naming it, `what` it should hold and the `hint`."""
    if not path.is_dir():
        raise DatasetError(f"{path}: {what} not found (no such directory). {hint}")
    return path


def require_file(path: Path, what: str, hint: str) -> Path:
    """`path` if it is a file, else a DatasetError naming it, `what` it should be and the `hint`."""
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
    delimiter: str = ",",
    quoting: int = csv.QUOTE_MINIMAL,
) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV file as (line number, row) pairs, checking the header.

    Args:
      path: the CSV file.
      required: columns that must be present.
      skip_comment_lines: leading lines to skip (AudioSet's three `#` lines).
      skipinitialspace: strip the space after each comma (AudioSet).
      fieldnames: use these column names instead of a header line.
      delimiter, quoting: as for csv.reader (MLAAD's meta.csv: '|' and csv.QUOTE_NONE, its transcripts hold
        quotes).

    Raises:
      DatasetError: the file is missing, empty, or lacks a required column (the message lists the
        columns found and the ones expected).
    """
    if not path.is_file():
        raise DatasetError(f"{path}: metadata file not found. Check that {DATASET_ROOT} is the dataset's top folder.")
    with open(path, newline="", encoding="utf-8-sig") as f:
        for _ in range(skip_comment_lines):
            f.readline()
        reader = csv.DictReader(f, fieldnames=fieldnames, skipinitialspace=skipinitialspace, delimiter=delimiter,
                                quoting=quoting)
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


def check_unique(keys: Iterable[tuple[str, str, int]], what: str) -> None:
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


class FileIndex:
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


def drop_missing(records: list[Record], problems: list[str], where: str,
                 hint: str) -> tuple[list[Record], list[str]]:
    """(records whose file exists, sorted paths of the missing files); the missing are also reported in
    `problems`. Raise when nothing at all exists."""
    files = FileIndex()
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
    return present, sorted({r.path for r in missing})


def parse_bool(value: str, path: Path, line: int, column: str) -> bool:
    """A metadata field as a bool (True/False, 1/0, yes/no); a DatasetError naming file, line and column."""
    v = value.strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise DatasetError(f"{path}, line {line}: column {column!r} must be True or False, got {value!r}.")


def parse_int(value: str, path: Path, line: int, column: str) -> int:
    """A metadata field as an int; a DatasetError naming file, line and column otherwise."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}, line {line}: column {column!r} must be an integer, got {value!r}.") from None


def parse_float(value: str, path: Path, line: int, column: str) -> float:
    """A metadata field as a float; a DatasetError naming file, line and column otherwise."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}, line {line}: column {column!r} must be a number, got {value!r}.") from None


def metadata_extra(values: dict[str, str | None], **other: str | None) -> tuple[tuple[str, str], ...]:
    """`Record.extra` from metadata `values` (keys from METADATA_KEYS) and `other` dataset-specific fields:
    sorted (key, value) pairs, empty values and '-' placeholders dropped."""
    pairs = {k: str(v).strip() for k, v in {**values, **other}.items() if v is not None}
    return tuple(sorted((k, v) for k, v in pairs.items() if v and v != "-"))
