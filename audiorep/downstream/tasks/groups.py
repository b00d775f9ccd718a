"""Per-group metrics of a probed task: the primary metric in every speaker / gender / language / source group
(and, for detection, every attack), the worst group and the max-min gap, for the result row and the
leaderboard's per-group columns.

Computed per split on that split's test scores with downstream/metrics.py (`per_group`, `per_attack_eer`),
then averaged per group over the splits where the group could be scored, as the primary metric is averaged
over splits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from audiorep.data.sources import Record
from audiorep.downstream import metrics as M

# Record.info columns a result is broken down by (attack_id too, for detection: per-attack EER).
GROUP_COLUMNS = ("gender", "language", "speaker", "source")


def group_metric(metric: str) -> str | None:
    """The per-group metric for a task's primary metric (None when it has no per-group form, e.g. mAP)."""
    return metric if metric in M.THRESHOLD_FREE + M.DECISION_METRICS else None


def _mean_over_splits(reports: Sequence[dict], metric: str) -> dict:
    """per_group-style reports of several splits -> one: each group's mean over the splits that scored it."""
    values: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    skipped: dict[str, str] = {}
    for rep in reports:
        for g, v in rep["per_group"].items():
            values.setdefault(g, []).append(float(v))
        for g, n in rep.get("counts", {}).items():
            counts[g] = counts.get(g, 0) + int(n)
        skipped.update(rep.get("skipped", {}))
    per = {g: float(np.mean(v)) for g, v in sorted(values.items())}
    if per:
        pick = min if M.HIGHER_IS_BETTER.get(metric, True) else max
        worst_group = pick(per, key=lambda k: per[k])
        worst, gap = per[worst_group], max(per.values()) - min(per.values())
    else:
        worst_group, worst, gap = None, float("nan"), float("nan")
    return {"metric": metric, "per_group": per, "worst_group": worst_group, "worst": float(worst), "gap": float(gap),
            "counts": counts, "skipped": {g: why for g, why in sorted(skipped.items()) if g not in per}}


def group_report(tests: Sequence[tuple[Sequence[Record], np.ndarray, np.ndarray]], metric: str,
                 positive: int | None) -> dict[str, dict]:
    """{column: report} for every column of GROUP_COLUMNS with at least two values among the test records, plus
    'attack_id' (per-attack EER against all bona fide trials) for a detection task whose spoofs name attacks.

    tests: per split, (test records, labels int[N], class scores f[N, C]).
    metric: the task's primary metric; positive: the bona fide class of a detection task, else None.
    Each report: {'metric', 'per_group': {group: mean over splits}, 'worst_group', 'worst', 'gap' (max - min),
    'counts': {group: test trials over all splits}, 'skipped': {group: why it could not be scored}}.
    """
    out: dict[str, dict] = {}
    pm = group_metric(metric)
    if pm is not None:
        for column in GROUP_COLUMNS:
            if len({r.info.get(column) for recs, _, _ in tests for r in recs} - {None, ""}) < 2:
                continue
            out[column] = _mean_over_splits([
                M.per_group(y, s, [r.info.get(column) for r in recs], metric=pm,
                            positive=1 if positive is None else positive)
                for recs, y, s in tests], pm)
    if positive is not None:
        reports = []
        for recs, y, s in tests:
            attacks = [r.info.get("attack_id", "") for r in recs]
            if any(a for a, label in zip(attacks, y) if label != positive) and np.any(y == positive):
                per = M.per_attack_eer(y, s, attacks, bonafide=positive)
                per.pop("", None)  # spoofs of no named attack
                reports.append({"per_group": per, "counts": {a: attacks.count(a) for a in per}})
        if reports:
            out["attack_id"] = _mean_over_splits(reports, "eer")
    return out
