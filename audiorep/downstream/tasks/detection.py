"""Detection tasks (bona fide vs spoof): two classes, `positive` = the bona fide class, EER as the primary
metric with min-DCF, ROC-AUC, F1, sensitivity and specificity reported."""

from __future__ import annotations

from audiorep.downstream.tasks.spec import TaskSpec

DETECTION_TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("asvspoof2019_la", "ASVspoof 2019 LA countermeasure: bona fide vs spoof, official train/dev/eval "
             "(speaker-disjoint); EER with bona fide as the target class", "asvspoof2019_la", "official", "eer",
             positive=0),
)
