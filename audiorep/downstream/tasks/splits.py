"""Protocols: a task's records -> train/validation/test `Split`s, with groups (speaker, source clip, video)
never on two sides of a split.

Every protocol's output passes `check_no_group_leakage` before anything is embedded (TaskSpec.splits).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from audiorep.data.sources import Record
from audiorep.errors import AudiorepError


class TaskError(AudiorepError, ValueError):
    """A task that cannot run as asked (unknown name, empty split, unusable data)."""


class LeakageError(TaskError):
    """A group (speaker, source clip, video) found in two parts of one split."""


@dataclass
class Split:
    """One train/validation/test partition (one fold of a k-fold protocol)."""

    name: str
    train: list[Record]
    validation: list[Record]
    test: list[Record]

    def parts(self) -> dict[str, list[Record]]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


def group_of(r: Record) -> str:
    """The leakage unit of a record: its group, else its file (windows of one file stay together)."""
    return f"group:{r.group}" if r.group is not None else f"file:{r.path}"


def check_no_group_leakage(splits: Split | Sequence[Split]) -> None:
    """Raise LeakageError when a group or a file sits in two parts of any split, or a part is empty."""
    for sp in [splits] if isinstance(splits, Split) else splits:
        seen: dict[str, str] = {}
        for part, recs in sp.parts().items():
            if not recs:
                raise TaskError(f"split {sp.name!r}: the {part} part is empty; the dataset is too small for this "
                                "protocol (or the reader found no records of that split).")
            for g in {group_of(r) for r in recs} | {f"file:{r.path}" for r in recs if r.group is not None}:
                other = seen.setdefault(g, part)
                if other != part:
                    raise LeakageError(
                        f"split {sp.name!r}: {g.split(':', 1)[0]} {g.split(':', 1)[1]!r} is in both {other} and "
                        f"{part}. Scores would be inflated; fix the split lists or the reader's group option.")


def fold_splits(records: Sequence[Record], folds: Sequence[int] | None = None) -> list[Split]:
    """k-fold protocol on `Record.fold` (HEAR/ESC-50): fold k tests, fold k+1 (cyclic) validates, the rest train."""
    ks = sorted({r.fold for r in records if r.fold is not None}) if folds is None else sorted(folds)
    if len(ks) < 3:
        raise TaskError(f"the fold protocol needs at least 3 folds, found {ks}.")
    by = {k: [r for r in records if r.fold == k] for k in ks}
    out = []
    for i, k in enumerate(ks):
        val = ks[(i + 1) % len(ks)]
        out.append(Split(f"fold{k}", [r for j in ks if j not in (k, val) for r in by[j]], by[val], by[k]))
    return out


def assign_group_folds(records: Sequence[Record], n_folds: int, seed: int = 0) -> list[Record]:
    """Records with `fold` set: each group lies in one fold, and every class is spread evenly over the folds.

    Stratified group k-fold: groups are visited class by class (a group's class is its records' most common
    first label), largest first with a seeded tie-break, and each goes to the fold holding the fewest records
    of its class (then the fewest records overall). Without stratification a small dataset can put all of a
    class's groups into the test and validation folds, leaving nothing to learn it from.
    """
    if n_folds < 3:
        raise TaskError(f"n_folds must be >= 3 (test, validation, train), got {n_folds}.")
    sizes: dict[str, int] = {}
    labels: dict[str, dict[int, int]] = {}
    for r in records:
        g = group_of(r)
        sizes[g] = sizes.get(g, 0) + 1
        if r.labels:
            counts = labels.setdefault(g, {})
            counts[r.labels[0]] = counts.get(r.labels[0], 0) + 1
    if len(sizes) < n_folds:
        raise TaskError(f"{len(sizes)} groups cannot fill {n_folds} group-disjoint folds; lower n_folds.")
    cls = {g: max(c, key=lambda k: (c[k], -k)) if (c := labels.get(g)) else -1 for g in sizes}
    order = list(sizes)
    np.random.default_rng(seed).shuffle(order)
    order.sort(key=lambda g: (cls[g], -sizes[g]))  # stable: the shuffle breaks ties
    total = np.zeros(n_folds, np.int64)
    per_class: dict[int, np.ndarray] = {}
    fold_of = {}
    for g in order:
        pc = per_class.setdefault(cls[g], np.zeros(n_folds, np.int64))
        k = int(np.lexsort((total, pc))[0])  # fewest of this class, then fewest overall
        fold_of[g] = k + 1
        pc[k] += sizes[g]
        total[k] += sizes[g]
    return [dataclasses.replace(r, fold=fold_of[group_of(r)]) for r in records]


def official_splits(records: Sequence[Record], val_fraction: float = 0.1, seed: int = 0) -> list[Split]:
    """The dataset's own train/validation/test; without a validation split, `val_fraction` of the training
    groups (seeded) become validation."""
    parts = {s: [r for r in records if r.split == s] for s in ("train", "validation", "test")}
    if not parts["validation"] and parts["train"]:
        groups = sorted({group_of(r) for r in parts["train"]})
        rng = np.random.default_rng(seed)
        n_val = max(1, int(round(val_fraction * len(groups))))
        val_groups = set(rng.choice(groups, size=min(n_val, len(groups) - 1), replace=False).tolist())
        parts["validation"] = [r for r in parts["train"] if group_of(r) in val_groups]
        parts["train"] = [r for r in parts["train"] if group_of(r) not in val_groups]
    return [Split("official", parts["train"], parts["validation"], parts["test"])]
