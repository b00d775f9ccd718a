"""Probing tasks: declarative specs of reader + protocol + probe + metric, and `run` -> a leaderboard Result.

    from audiorep.downstream import tasks
    result = tasks.run("esc50", audiorep.load("beats-tiny"), "/data/ESC-50-master", cache, grid="fast")

Tasks (`TASKS`):
  esc50 / esc10       ESC-50 (or its ESC-10 subset), 5 official folds: each fold is the test set once, the
                      next fold validates, the other three train; accuracy mean +- std over the 5 folds.
  speech_commands     Speech Commands v2, 35 words, official train/validation/test lists; accuracy.
  speech_commands12   the 12-class KWS task (10 words + _silence_ + _unknown_), official lists; accuracy.
  audioset            AudioSet balanced_train -> eval, multi-label; validation = 10 % of the balanced-train
                      videos (group-disjoint); mAP, with ROC-AUC and d' reported. Clips deleted from
                      YouTube are expected, so missing clips are counted, not refused.
  fsdd                Free Spoken Digit Dataset (digits), speaker-disjoint folds (one speaker tests, the next
                      validates, the rest train); accuracy.
  synthetic           the demo's procedural corpus (data/synthetic.py), source-disjoint folds; accuracy.
  folder              a user's labelled folder (class sub-folders or labels.csv), grouped k-fold or its own
                      splits; accuracy, or EER when its two classes are bona fide and spoof.
  asvspoof2019_la     ASVspoof 2019 LA, bona fide vs spoof, official speaker-disjoint train/dev/eval; EER
                      (bona fide = target = higher score), with min-DCF, ROC-AUC, F1, sensitivity, specificity.
  asvspoof2021_la/df  ASVspoof 2021 LA / DF eval with the full keys: speaker-disjoint folds, or trained on
                      2019 LA (reader option train_root, the challenge protocol); EER.
  inthewild, mlaad,   In-the-Wild; MLAAD with M-AILABS bona fide (bonafide_root); a bona fide / spoof folder
  deepfake_folder     (`audiorep datasets spoof` writes one): speaker-disjoint folds; EER.
Any task also runs a cross-domain protocol (`run(..., protocol='cross-attack' | 'cross-speaker' |
'cross-language' | 'cross-source')`, `protocols`): each value of that metadata column held out in turn,
beside an in-domain reference on the same test clips; the row is '<task>@<protocol>'. Rows whose test data
has speaker / gender / language / source (or attack) metadata carry per-group metrics (`groups`).

A dataset whose metadata lists files that are not on disk is refused (IncompleteDatasetError) unless
`run(..., allow_missing=True)`; every Result records the expected / present / missing file counts.
Every protocol returns `Split`s and passes them through `check_no_group_leakage` before anything is
embedded: a group (speaker, source recording, video) never appears in two parts of a split. Embeddings come
from downstream/cache.py (computed once per model and record list), probes from downstream/probes.py,
scores from downstream/metrics.py; the Result rows are what downstream/leaderboard.py stores.
`LogMelBaseline` is the classic reference representation (mean and std over time of a frontend's log-mel
features), `FeatureBaseline` the same statistics of the spoofing literature's hand-crafted features (LFCC,
MFCC, CQCC; audio/features.py); both can stand in for an Embedder anywhere.

Modules: `splits` (protocols, leakage check, TaskError), `spec` (TaskSpec), `classification` and `detection`
(the task specs by family), `catalog` (TASKS, get_task), `runner` (run), `protocols` (cross-domain splits),
`groups` (per-group metrics), `baseline` (LogMelBaseline, FeatureBaseline, resolve_model). A new task is one
TaskSpec in its family's module.
"""

from audiorep.data.sources import DatasetError
from audiorep.downstream.tasks.baseline import FeatureBaseline, LogMelBaseline, resolve_model
from audiorep.downstream.tasks.catalog import TASKS, get_task
from audiorep.downstream.tasks.classification import CLASSIFICATION_TASKS
from audiorep.downstream.tasks.detection import DETECTION_TASKS
from audiorep.downstream.tasks.runner import run
from audiorep.downstream.tasks.spec import IncompleteDatasetError, TaskSpec
from audiorep.downstream.tasks.splits import (
    LeakageError,
    Split,
    TaskError,
    assign_group_folds,
    check_no_group_leakage,
    fold_splits,
    group_of,
    official_splits,
)

__all__ = ["TASKS", "CLASSIFICATION_TASKS", "DETECTION_TASKS", "TaskSpec", "Split", "run", "check_no_group_leakage",
           "fold_splits", "official_splits", "assign_group_folds", "group_of", "LogMelBaseline", "FeatureBaseline",
           "resolve_model", "get_task", "TaskError", "LeakageError", "IncompleteDatasetError", "DatasetError"]
