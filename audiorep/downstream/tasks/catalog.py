"""`TASKS`: every probing task by name, classification, detection, then song-level tasks; `get_task` looks one up."""

from __future__ import annotations

from audiorep.downstream.tasks.classification import CLASSIFICATION_TASKS
from audiorep.downstream.tasks.detection import DETECTION_TASKS
from audiorep.downstream.tasks.songs import SONG_TASKS
from audiorep.downstream.tasks.spec import TaskSpec
from audiorep.downstream.tasks.splits import TaskError

TASKS: dict[str, TaskSpec] = {t.name: t for t in (*CLASSIFICATION_TASKS, *DETECTION_TASKS, *SONG_TASKS)}


def get_task(name: str) -> TaskSpec:
    """The task called `name`; a TaskError listing the tasks otherwise."""
    if name not in TASKS:
        raise TaskError(f"unknown task {name!r}; tasks are {', '.join(sorted(TASKS))}.")
    return TASKS[name]
