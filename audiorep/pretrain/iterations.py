"""The BEATs driver: tokenizer 1 -> encoder 1 -> tokenizer 2 -> encoder 2 -> ...

With `config.iterations.count = N > 1`, `run(config, workdir)` trains N encoders one after the other, each a
normal resumable trainer run in its own folder (WORKDIR/iter1, WORKDIR/iter2, ...). Iteration 1 learns the
config's own targets (masked tokens of the random-projection tokenizer: BEATs iteration 1); iteration k > 1
learns k-means codes of encoder k-1's outputs (`objective.tokenizer='teacher'`, tokenizers/teacher.py) and,
with `iterations.init_from_teacher`, starts from encoder k-1's weights. Running the same command again resumes
the unfinished iteration; finished ones are not retrained (their trainer sees its last step and returns).
`count = 1` is a plain run in WORKDIR itself.

    audiorep pretrain --config configs/tiny_masked_tokens.py --workdir /tmp/w \\
        --config.iterations.count=2 --config.iterations.steps=3000,1500 --config.iterations.init_from_teacher=true

Fields (`config.iterations`, defaults in trainer.default_train_config): count; steps (one per iteration, or
empty: every iteration runs train.steps); init_from_teacher; codebook_size (iterations k > 1; 0 keeps
objective.codebook_size).
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path

import ml_collections
from etils import epath

from audiorep.pretrain import experiment
from audiorep.pretrain.config import ConfigError
from audiorep.pretrain.trainer import TrainError, TrainResult, check_workdir, with_defaults

log = logging.getLogger(__name__)


def iteration_dir(workdir: str | os.PathLike, k: int) -> epath.Path:
    """Where iteration k (1-based) trains: WORKDIR/iter<k> (local or gs://)."""
    return epath.Path(workdir) / f"iter{k}"


def export_dir(config: ml_collections.ConfigDict, workdir: str | os.PathLike, k: int) -> str:
    """Where iteration k exports its encoder: train.export_dir/iter<k> when set, else WORKDIR/iter<k>/export."""
    base = config.train.get("export_dir")
    return str(Path(base) / f"iter{k}") if base else str(iteration_dir(workdir, k) / "export")


def check(config: ml_collections.ConfigDict) -> int:
    """The number of iterations, after checking the fields; a clear error for what cannot iterate."""
    it = config.iterations
    count = int(it.count)
    if count < 1:
        raise ConfigError(f"iterations.count={count}: use 1 (a single run) or more.")
    steps = tuple(it.steps or ())
    if steps and (len(steps) != count or min(int(s) for s in steps) < 1):
        raise ConfigError(f"iterations.steps={steps}: give {count} positive step counts (one per iteration), or "
                          f"leave it empty to run train.steps={config.train.steps} in each.")
    if count > 1 and config.objective.name != "masked_tokens":
        raise ConfigError(f"iterations.count={count}: only masked token prediction (objective.name='masked_tokens') "
                          f"learns a previous iteration's codes; objective.name={config.objective.name!r}.")
    if int(it.codebook_size) < 0:
        raise ConfigError(f"iterations.codebook_size={it.codebook_size}: 0 keeps objective.codebook_size, or >= 2.")
    return count


def iteration_config(config: ml_collections.ConfigDict, k: int, teacher: str | None = None
                     ) -> ml_collections.ConfigDict:
    """The config of iteration k (1-based): its step count and, for k > 1, the teacher tokenizer reading
    `teacher` (the model directory iteration k-1 exported)."""
    c = ml_collections.ConfigDict(copy.deepcopy(config.to_dict()))
    it = config.iterations
    if it.steps:
        c.train.steps = int(it.steps[k - 1])
    if k > 1:
        if not teacher:
            raise ConfigError(f"iteration {k} learns the codes of iteration {k - 1}'s encoder, which exported "
                              f"nothing (a remote workdir needs a local --config.train.export_dir).")
        c.objective.tokenizer = "teacher"
        c.objective.teacher = str(teacher)
        c.objective.init_from_teacher = bool(it.init_from_teacher)
        if int(it.codebook_size):
            c.objective.codebook_size = int(it.codebook_size)
    if c.train.get("export_dir"):  # one export per iteration: a shared export_dir would be overwritten
        c.train.export_dir = export_dir(config, "", k)
    return c


def export_latest(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                  path: str | os.PathLike | None = None) -> str:
    """Export the newest checkpoint of the latest iteration that has started (`audiorep pretrain --export-only`)."""
    config = with_defaults(config)
    count = check(config)
    if count == 1:
        return experiment.export_latest(config, workdir, path)
    check_workdir(workdir)
    started = [k for k in range(1, count + 1) if (iteration_dir(workdir, k) / "checkpoints").is_dir()]
    if not started:
        raise TrainError(f"no iteration has a checkpoint under {workdir} (looked for iter1..iter{count}): train "
                         f"first with the same command without --export-only, or pass the --workdir of a run.")
    k = started[-1]
    teacher = export_dir(config, workdir, k - 1) if k > 1 else None
    return experiment.export_latest(iteration_config(config, k, teacher), str(iteration_dir(workdir, k)), path)


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> TrainResult:
    """Train every iteration in turn; returns the TrainResult of the last one that ran (stopped or done)."""
    config = with_defaults(config)
    count = check(config)
    if count == 1:
        return experiment.train(config, workdir)
    check_workdir(workdir)
    result = None
    for k in range(1, count + 1):
        cfg = iteration_config(config, k, result.export_dir if result is not None else None)
        log.info("iteration %d of %d: %d steps in %s%s", k, count, cfg.train.steps, iteration_dir(workdir, k),
                 f" (targets: k-means codes of {cfg.objective.teacher})" if k > 1 else "")
        result = experiment.train(cfg, str(iteration_dir(workdir, k)))
        if result.status != "done":
            break
    return result
