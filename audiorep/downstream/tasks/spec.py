"""`TaskSpec`: a probing task declared as reader (+ options), protocol, primary metric."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from audiorep.data.sources import DatasetIndex, read_dataset
from audiorep.data.sources.deepfake import LABEL_NAMES
from audiorep.downstream.tasks.splits import (
    Split,
    TaskError,
    assign_group_folds,
    check_no_group_leakage,
    fold_splits,
    official_splits,
)


class IncompleteDatasetError(TaskError):
    """Files the dataset's metadata lists are not on disk (and missing files were not allowed)."""


@dataclass(frozen=True)
class TaskSpec:
    """A probing task: which reader (and options), which protocol, which probe target and metric."""

    name: str
    description: str
    reader: str
    protocol: str  # 'folds' | 'group_folds' | 'official' | 'auto' (official when the data has train and test, else
    # group folds)
    metric: str  # primary metric, a key of the probe's test report; 'auto': eer for bona fide / spoof classes, else
    # accuracy (see `for_index`)
    reader_options: dict = field(default_factory=dict)
    protocol_options: dict = field(default_factory=dict)
    subdir: str | None = None  # used when DATA_ROOT/subdir exists (fsdd: recordings/)
    crop_s: float | None = None  # clips longer than this are cut (embedding protocol)
    default_root: str | None = None
    positive: int | None = None  # 2-class detection tasks: the bona fide class (EER, min-DCF, sens./spec.)
    # Whether probing may go on with files the dataset lists missing from disk, without allow_missing: only where
    # no complete copy exists (AudioSet: videos deleted from YouTube). The counts are recorded either way.
    missing_ok: bool = False

    def read(self, data_root: str | os.PathLike, **overrides) -> DatasetIndex:
        root = Path(data_root).expanduser()
        if self.subdir and (root / self.subdir).is_dir():
            root = root / self.subdir
        return read_dataset(self.reader, root, **(self.reader_options | overrides))

    def for_index(self, index: DatasetIndex) -> TaskSpec:
        """This spec with metric 'auto' resolved from the data: two classes that name bona fide and spoofed
        audio (bonafide/spoof, real/fake, ...) make a detection task (EER, the bona fide class as target),
        anything else a classification task (accuracy)."""
        if self.metric != "auto":
            return self
        kinds = [LABEL_NAMES.get(c.lower()) for c in index.classes]
        if sorted(map(str, kinds)) == ["bonafide", "spoof"]:
            return dataclasses.replace(self, metric="eer", positive=kinds.index("bonafide"))
        return dataclasses.replace(self, metric="accuracy")

    def splits(self, index: DatasetIndex, seed: int = 0, n_folds: int | None = None) -> list[Split]:
        """The protocol's splits, checked for group leakage. n_folds: overrides the group-fold count."""
        records = [r for r in index.records if r.labels]
        if not records:
            raise TaskError(f"{self.name}: no labelled records in {index.root}; check the reader options.")
        protocol = self.protocol
        if protocol == "auto":
            present = {r.split for r in records}
            protocol = "official" if {"train", "test"} <= present else "group_folds"
        if protocol == "folds":
            splits = fold_splits(records, self.protocol_options.get("folds"))
        elif protocol == "group_folds":
            k = n_folds or self.protocol_options.get("n_folds", 5)
            splits = fold_splits(assign_group_folds(records, k, seed))
        elif protocol == "official":
            splits = official_splits(records, self.protocol_options.get("val_fraction", 0.1), seed)
        else:
            raise TaskError(f"{self.name}: unknown protocol {self.protocol!r}.")
        check_no_group_leakage(splits)
        return splits

    def check_complete(self, index: DatasetIndex, allow_missing: bool = False) -> None:
        """Raise IncompleteDatasetError when files the dataset lists are missing from disk, unless
        `allow_missing` or the task is `missing_ok`: scores on part of a dataset are not the dataset's scores."""
        counts = index.file_counts()
        if counts is None or not counts["missing"] or allow_missing or self.missing_ok:
            return
        shown = ", ".join(index.missing[:3]) + (", ..." if counts["missing"] > 3 else "")
        raise IncompleteDatasetError(
            f"{self.name}: {counts['missing']:,} of {counts['expected']:,} audio files the dataset lists are missing "
            f"under {index.root} (e.g. {shown}). Restore them (re-extract or re-download the dataset), or pass "
            f"--allow-missing (tasks.run(..., allow_missing=True)) to probe the {counts['present']:,} present files; "
            "the result row records the counts."
        )


def resolve_grid(grid, make: Callable, seed: int, repeats: int, kind: str):
    """The head grid a task run trains: `make(grid, seed, repeats=repeats)` for a grid named by a string, a grid
    object as it is (it carries its own repeats, so `repeats` must stay 1). kind: the grid's type as the error names
    it (e.g. 'probes.Grid')."""
    if isinstance(grid, str):
        return make(grid, seed, repeats=repeats)
    if repeats != 1:
        cls = kind.rsplit(".", 1)[-1]
        raise TaskError(f"repeats applies to a named grid; a {kind} carries its own ({cls}.repeats).")
    return grid
