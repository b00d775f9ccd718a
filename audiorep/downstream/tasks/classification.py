"""Classification tasks: ESC-50 / ESC-10, Speech Commands (35 words, 12-class KWS), AudioSet, FSDD, the
demo's synthetic corpus, and `folder` (a user's own labelled folder; a detection task when its two classes
are bona fide and spoof)."""

from __future__ import annotations

from pathlib import Path

from audiorep.downstream.tasks.spec import TaskSpec

# FSDD's default location: the checkout's sibling shared/data/fsdd (where `make demo` fetches it).
SHARED_FSDD = Path(__file__).resolve().parents[4] / "shared" / "data" / "fsdd"

CLASSIFICATION_TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("esc50", "ESC-50, 50 environmental sound classes, 5 official folds", "esc50", "folds", "accuracy"),
    TaskSpec("esc10", "ESC-10 subset of ESC-50, 10 classes, 5 official folds", "esc50", "folds", "accuracy",
             reader_options={"esc10": True}),
    TaskSpec("speech_commands", "Speech Commands v2, 35 words, official splits", "speech_commands", "official",
             "accuracy", reader_options={"num_classes": 35}),
    TaskSpec("speech_commands12", "Speech Commands v2 KWS: 10 words + silence + unknown, official splits",
             "speech_commands", "official", "accuracy", reader_options={"num_classes": 12}),
    TaskSpec("audioset", "AudioSet balanced train -> eval, 527 classes, multi-label", "audioset", "official", "map",
             reader_options={"splits": ("balanced_train", "eval")}, crop_s=10.0, missing_ok=True),
    TaskSpec("fsdd", "Free Spoken Digit Dataset, 10 digits, speaker-disjoint folds", "folder", "group_folds",
             "accuracy", reader_options={"label_regex": r"^(\d)_", "group_regex": r"^\d_([A-Za-z]+)_"},
             protocol_options={"n_folds": 6}, subdir="recordings", default_root=str(SHARED_FSDD)),
    TaskSpec("synthetic", "the demo's procedural sound-event corpus, source-disjoint folds", "folder",
             "group_folds", "accuracy", protocol_options={"n_folds": 5}),
    TaskSpec("folder", "your own labelled folder (class sub-folders or labels.csv): grouped k-fold (a group or "
             "speaker column, or --group-regex), or its split folders/column; accuracy, or EER when the classes "
             "are bona fide and spoof", "folder", "auto", "auto", protocol_options={"n_folds": 5}),
)
