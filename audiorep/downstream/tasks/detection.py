"""Detection tasks (bona fide vs spoof): two classes, `positive` = the bona fide class, EER as the primary
metric with min-DCF, ROC-AUC, F1, sensitivity and specificity reported.

Every one also runs the cross-domain protocols (`run(..., protocol='cross-attack' | 'cross-speaker' |
'cross-language' | 'cross-source')`, downstream/tasks/protocols.py) over the metadata its reader records.
"""

from __future__ import annotations

from audiorep.downstream.tasks.spec import TaskSpec

DETECTION_TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("asvspoof2019_la", "ASVspoof 2019 LA countermeasure: bona fide vs spoof, official train/dev/eval "
             "(speaker-disjoint); EER with bona fide as the target class", "asvspoof2019_la", "official", "eer",
             positive=0),
    TaskSpec("asvspoof2021_la", "ASVspoof 2021 LA eval (full keys): speaker-disjoint folds, or the challenge "
             "protocol (train on 2019 LA, score 2021) with --train-root; EER", "asvspoof2021_la", "auto", "eer",
             protocol_options={"n_folds": 5}, positive=0),
    TaskSpec("asvspoof2021_df", "ASVspoof 2021 DF eval (full keys): speaker-disjoint folds, or train on 2019 LA "
             "with --train-root; EER", "asvspoof2021_df", "auto", "eer", protocol_options={"n_folds": 5},
             positive=0),
    TaskSpec("inthewild", "In-the-Wild audio deepfakes: speaker-disjoint folds; EER", "in_the_wild", "group_folds",
             "eer", protocol_options={"n_folds": 5}, positive=0),
    TaskSpec("mlaad", "MLAAD spoofs + M-AILABS bona fide (--bonafide-root): speaker-disjoint folds; EER", "mlaad",
             "group_folds", "eer", protocol_options={"n_folds": 5}, positive=0),
    TaskSpec("deepfake_folder", "a folder of bona fide and spoofed clips (bonafide/ + spoof/<attack>/, or "
             "labels.csv): speaker-disjoint folds; EER", "deepfake_folder", "group_folds", "eer",
             protocol_options={"n_folds": 5}, positive=0),
)
