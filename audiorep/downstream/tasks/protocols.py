"""Cross-domain protocols: leave one attack / speaker / language / source out, each paired with an in-domain
reference on the same test clips, so the gap is the cost of never having seen that group.

    audiorep probe --task deepfake_folder --data-root DIR --protocol cross-attack

For the chosen metadata column (`PROTOCOLS`) and every value g of it, `cross_domain_splits` returns a
`HeldOut` with two splits that share one test set:
  cross      trained without any clip of g; tested on g's clips (plus bona fide clips, see below);
  in_domain  the same test clips, trained with the same data plus g's clips from the training side.
Leakage units are `Record.group` (the speaker, where the reader knows it; else the file). Units are assigned to the
test side or the training side: units holding only g's clips (and clips without a value) go to the test side; when
there are none, a seeded `test_fraction` of the units holding g's and other values' clips (every speaker spoken by
every attack) does. When the test side still lacks a class, a `test_fraction` of the units holding only clips
without a value (bona fide speakers when the column is a spoofed-clip attribute such as attack_id) joins it. Test =
the test side's clips of g and clips without a value; cross training = the training side's clips of other values
and without a value; so no unit, and no clip of g, is ever on both sides, and bona fide test clips come from
speakers the probe never heard. The in-domain split adds the training side's clips of g. Where g lives in its own
units only (a speaker, a language spoken by its own speakers), half of those units (seeded) move to in-domain
training instead of the test, and when g is a single unit (cross-speaker) its files are halved: that in-domain
split is speaker-dependent by construction and checked for file leakage only (`HeldOut.unit == 'file'`).
Validation: a `val_fraction` of the training side's units, the same units for both splits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from audiorep.data.sources import Record
from audiorep.downstream.tasks.splits import Split, TaskError, check_no_group_leakage, group_of

# --protocol name -> the Record.info column it holds out (None: the task's own in-domain protocol).
PROTOCOLS: dict[str, str | None] = {"in-domain": None, "cross-attack": "attack_id", "cross-speaker": "speaker",
                                    "cross-language": "language", "cross-source": "source"}


@dataclass
class HeldOut:
    """One held-out value: the cross-domain split and its in-domain reference (same test records)."""

    column: str
    value: str
    cross: Split
    in_domain: Split
    unit: str  # leakage unit of the in-domain split: 'group' (as the cross split) or 'file'


def protocol_column(protocol: str) -> str | None:
    """The metadata column `protocol` holds out (None for in-domain); TaskError for an unknown name."""
    if protocol not in PROTOCOLS:
        raise TaskError(f"unknown protocol {protocol!r}; protocols are {', '.join(PROTOCOLS)}.")
    return PROTOCOLS[protocol]


def value_of(r: Record, column: str) -> str | None:
    """The record's value of a metadata column (None when unknown)."""
    v = r.info.get(column)
    return v if v else None


def _classes(records: Sequence[Record]) -> set[int]:
    return {r.labels[0] for r in records}


def _pick(units: Sequence[str], fraction: float, rng: np.random.Generator, keep: int = 1) -> set[str]:
    """About `fraction` of `units` (at least one, leaving `keep`), drawn with `rng`; units sorted first so the
    draw depends on the seed alone."""
    units = sorted(units)
    if len(units) <= keep:
        return set()
    n = min(max(1, int(round(fraction * len(units)))), len(units) - keep)
    return set(rng.permutation(units)[:n].tolist())


def _pick_validation(records: Sequence[Record], fraction: float, rng: np.random.Generator) -> set[str]:
    """About `fraction` of the records' units (seeded) for validation, taking units in a seeded order until the
    count is reached and validation holds every class the records hold (when the units allow it)."""
    classes: dict[str, set[int]] = {}
    for r in records:
        classes.setdefault(group_of(r), set()).add(r.labels[0])
    units = sorted(classes)
    if len(units) < 2:
        return set()
    n = min(max(1, int(round(fraction * len(units)))), len(units) - 1)
    want = set().union(*classes.values())
    chosen: list[str] = []
    for u in rng.permutation(units).tolist():
        have = set().union(*(classes[c] for c in chosen)) if chosen else set()
        if len(chosen) >= n and have == want:
            break
        if len(chosen) < n or classes[u] - have:
            chosen.append(u)
    return set(chosen[:len(units) - 1])


def _file_leakage_free(split: Split) -> None:
    """check_no_group_leakage with each file as its own unit (the in-domain reference of a single-unit value)."""
    check_no_group_leakage(Split(split.name, *([dataclasses.replace(r, group=None) for r in part]
                                               for part in (split.train, split.validation, split.test))))


def cross_domain_splits(records: Sequence[Record], column: str, seed: int = 0, test_fraction: float = 0.3,
                        val_fraction: float = 0.2) -> tuple[list[HeldOut], dict[str, str]]:
    """Leave-one-value-out over `column` with paired in-domain references (see the module docstring).

    Returns (held-out values in value order, {value: why it was skipped}): a value whose test would lack a
    class, or whose training would, is skipped with its reason. Raises TaskError when the column is unknown
    everywhere, has fewer than two values, or no value can be held out.
    """
    if not 0.0 < test_fraction < 1.0 or not 0.0 < val_fraction < 1.0:
        raise TaskError(f"test_fraction and val_fraction must lie in (0, 1), got {test_fraction}, {val_fraction}.")
    values = sorted({v for r in records if (v := value_of(r, column)) is not None})
    if not values:
        raise TaskError(f"no record carries {column!r}, the column this protocol holds out; give the data that "
                        "metadata (a labels.csv column, spoof/<attack>/ folders, a speaker regex) or pick another "
                        "--protocol.")
    if len(values) < 2:
        raise TaskError(f"{column!r} has one value ({values[0]!r}); holding it out leaves nothing to train on.")
    if len(_classes(records)) < 2:
        raise TaskError(f"the records hold one class ({records[0].label_names[0]!r}); a protocol needs two or more.")
    out, skipped = [], {}
    for k, g in enumerate(values):
        try:
            out.append(_hold_out(records, column, g, np.random.default_rng([seed, k]), test_fraction, val_fraction))
        except _Skip as why:
            skipped[g] = str(why)
    if not out:
        raise TaskError(f"no value of {column!r} can be held out: " +
                        "; ".join(f"{g}: {why}" for g, why in skipped.items()))
    return out, skipped


class _Skip(Exception):
    """A value that cannot be held out (the reason is the message)."""


def _hold_out(records, column, g, rng, test_fraction, val_fraction) -> HeldOut:
    val = {id(r): value_of(r, column) for r in records}
    units: dict[str, dict[str, int]] = {}
    for r in records:
        kind = "T" if val[id(r)] == g else "U" if val[id(r)] is None else "O"
        counts = units.setdefault(group_of(r), {"T": 0, "O": 0, "U": 0})
        counts[kind] += 1
    forced = {u for u, c in units.items() if c["T"] and not c["O"]}
    shared = [u for u, c in units.items() if c["T"] and c["O"]]
    unvalued = [u for u, c in units.items() if c["U"] and not c["T"] and not c["O"]]
    own_classes = _classes([r for r in records if val[id(r)] == g])

    def testable(r: Record) -> bool:
        """g's clips, and clips without a value of the classes g's clips lack (bona fide beside an attack's
        spoofs): a cross-attack test never holds spoofs of some unnamed attack."""
        return val[id(r)] == g or (val[id(r)] is None and r.labels[0] not in own_classes)

    test_side = set(forced) if forced else _pick(shared, test_fraction, rng)
    if _classes([r for r in records if group_of(r) in test_side and testable(r)]) != _classes(records):
        test_side |= _pick(unvalued, test_fraction, rng)  # e.g. bona fide speakers beside an attack's speakers
    train_side = [r for r in records if group_of(r) not in test_side]
    val_units = _pick_validation(train_side, val_fraction, rng)
    test = [r for r in records if group_of(r) in test_side and testable(r)]
    own = [r for r in train_side if val[id(r)] == g]  # g's clips on the training side (in-domain only)
    other = [r for r in train_side if val[id(r)] != g]
    unit = "group"
    if not own:  # g lives in its own units: half of them (or half of its files) train the in-domain reference
        g_units = sorted({group_of(r) for r in test if val[id(r)] == g})
        if len(g_units) >= 2:
            ref = _pick(g_units, 0.5, rng)
            own = [r for r in test if group_of(r) in ref]
            test = [r for r in test if group_of(r) not in ref]
        else:
            files = sorted({r.path for r in test if val[id(r)] == g})
            ref = _pick(files, 0.5, rng)
            own = [r for r in test if r.path in ref]
            test = [r for r in test if r.path not in ref]
            unit = "file"
    parts = {"cross train": [r for r in other if group_of(r) not in val_units],
             "validation": [r for r in other if group_of(r) in val_units],
             "test": test}
    want = _classes(records)
    if not any(val[id(r)] == g for r in test):
        raise _Skip(f"none of its clips is left for the test (its speakers also hold every other {column} value)")
    for part, recs in parts.items():
        if _classes(recs) != want:
            have = "no clips" if not recs else f"only class {sorted(_classes(recs))}"
            raise _Skip(f"the {part} part would hold {have}")
    cross = Split(f"cross:{g}", parts["cross train"], parts["validation"], test)
    in_train = parts["cross train"] + [r for r in own if group_of(r) not in val_units or unit == "file"]
    in_val = parts["validation"] + [r for r in own if group_of(r) in val_units and unit == "group"]
    in_domain = Split(f"in-domain:{g}", in_train, in_val, test)
    check_no_group_leakage(cross)
    (check_no_group_leakage if unit == "group" else _file_leakage_free)(in_domain)
    return HeldOut(column, g, cross, in_domain, unit)


def summarise(held: Sequence[HeldOut], in_scores: Sequence[float], cross_scores: Sequence[float], metric: str,
              higher_is_better: bool, skipped: dict[str, str]) -> dict:
    """The protocol table a Result row stores: per held-out value the in-domain and cross-domain score and
    their gap (cross - in-domain, signed so that a positive gap is a loss: for lower-is-better metrics such
    as EER cross - in, else in - cross), the test size, and the in-domain leakage unit."""
    sign = 1.0 if not higher_is_better else -1.0
    rows = [{"held_out": h.value, "in_domain": float(i), "cross_domain": float(c), "gap": float(sign * (c - i)),
             "test": len(h.cross.test), "train": len(h.cross.train), "in_domain_train": len(h.in_domain.train),
             "unit": h.unit} for h, i, c in zip(held, in_scores, cross_scores)]
    return {"column": held[0].column if held else None, "metric": metric, "rows": rows,
            "in_domain_mean": float(np.mean(in_scores)) if len(in_scores) else float("nan"),
            "cross_domain_mean": float(np.mean(cross_scores)) if len(cross_scores) else float("nan"),
            "gap_mean": float(np.mean([r["gap"] for r in rows])) if rows else float("nan"), "skipped": skipped}
