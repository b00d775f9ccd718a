r"""The BEATs driver: tokenizer 1 -> encoder 1 -> tokenizer 2 -> encoder 2 -> ...

With `config.iterations.count = N > 1`, `run(config, workdir)` runs BEATs' iterative recipe (arXiv 2212.09058,
section 3) as a sequence of stages, each a normal resumable trainer run in its own folder:

  WORKDIR/iter1              encoder 1 on the config's own targets (random-projection codes: BEATs iteration 1)
  WORKDIR/iter2/tokenizer    tokenizer 2 distilled from encoder 1 (iterations.tokenizer='distilled')
  WORKDIR/iter2              encoder 2 on tokenizer 2's labels
  ...                        and so on up to iterN; each encoder exports to WORKDIR/iter<k>/export
                             (`audiorep.load` opens it), each tokenizer to WORKDIR/iter<k>/tokenizer/export
                             (a tokenizer directory, tokenizers/tokenizer_dir.py); with train.export_dir
                             (needed by a remote workdir): EXPORT/iter<k> and EXPORT/tokenizer<k>

Tokenizers of iterations k > 1 (`iterations.tokenizer`):
- 'distilled' (the default: the paper's recipe): a BEATs-style Transformer tokenizer with a NormEMA VQ codebook,
  trained by self-distillation from encoder k-1 (an estimator reconstructs encoder k-1's last layer from the
  quantised codes; tokenizers/distilled.py) for `iterations.tokenizer_steps` steps through the same trainer,
  then exported; encoder k learns its labels (`objective.tokenizer='distilled'`). It labels BEATs' 16 x 16
  patch grid, so the encoder must be family 'beats'.
- 'kmeans': HuBERT's way, no training run: k-means codes of encoder k-1's outputs, fitted in seconds when
  encoder k's stage is built (`objective.tokenizer='teacher'`, tokenizers/teacher.py); any masked-token
  encoder (the SSAST ones too: configs/tiny_masked_tokens.py uses it).

Any stage can start from an existing artifact instead of training it: `iterations.encoder_init=DIR` is encoder
1 (a model directory: a converted official BEATs checkpoint or another run's export; iteration 1 is then not
trained), `iterations.tokenizer_init=(DIR2, DIR3, ...)` are the tokenizers of iterations 2, 3, ... (tokenizer
directories, e.g. `audiorep convert beats-tokenizer Tokenizer_iter3.pt DIR`; '' or a shorter tuple: distil
those). Running the same command again skips finished stages (last checkpoint at the stage's step count and its
export written) and resumes the unfinished one from its newest checkpoint, so a run killed anywhere (even
`kill -9` in the middle of a tokenizer stage) completes on the rerun. `count = 1` is a plain run in WORKDIR.

At the end the driver writes WORKDIR/iterations.json and WORKDIR/iterations.md (`audiorep pretrain` prints the
table): per iteration and stage, the steps trained, the final loss (mean of the last 10 logged steps), the
masked-label accuracy (encoder stages, same window), and for every tokenizer, on one fixed batch of training
clips (the first `iterations.agreement_clips` clips of iteration 1's training order, features without
augmentation): the share of the codebook used, the perplexity of the code histogram (exp of its
entropy), and the normalised mutual information of its labels with the previous iteration's labels on the
same patches: NMI = I(a; b) / ((H(a) + H(b)) / 2), 1 when the two label the patches identically up to
renaming codes, 0 when they are independent.

    audiorep pretrain --config configs/tiny_beats.py --workdir /tmp/b --config.iterations.count=2
    audiorep pretrain --config configs/tiny_masked_tokens.py --workdir /tmp/w \
        --config.iterations.count=2 --config.iterations.steps=3000,1500 --config.iterations.init_from_teacher=true

Fields (`config.iterations`, defaults in trainer.default_train_config): count; steps (encoder steps, one per
iteration, or empty: train.steps each); tokenizer ('distilled' | 'kmeans'); tokenizer_steps (distillation steps,
one per iteration k > 1, or one count for all, or empty: train.steps); init_from_teacher (encoder k starts from
encoder k-1's weights); codebook_size ('kmeans' codes for k > 1; 0 keeps objective.codebook_size);
encoder_init; tokenizer_init; agreement_clips.

Not yet: a given tokenizer is used as is; starting a distillation from a given tokenizer's weights (fine-tuning
a converted official tokenizer on new data) is not offered.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

from audiorep.paths import is_remote
from audiorep.pretrain import distill, experiment
from audiorep.pretrain.config import ConfigError
from audiorep.pretrain.objectives import fit_frames
from audiorep.pretrain.trainer import Trainer, TrainError, TrainResult, check_workdir, with_defaults

log = logging.getLogger(__name__)

TOKENIZERS = ("distilled", "kmeans")
TABLE_JSON, TABLE_MD = "iterations.json", "iterations.md"
FINAL_WINDOW = 10  # logged steps averaged for the table's final loss / accuracy


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step of the recipe: train (or take as given) the tokenizer or the encoder of iteration k."""

    iteration: int
    kind: str          # 'tokenizer' | 'encoder'
    workdir: str       # the trainer's folder
    export: str        # what the stage hands on: a tokenizer directory or a model directory
    steps: int
    given: str = ""    # an existing directory used as the stage's output: nothing is trained

    @property
    def name(self) -> str:
        return f"{self.kind} {self.iteration}"


def iteration_dir(workdir: str | os.PathLike, k: int) -> epath.Path:
    """Where iteration k (1-based) trains its encoder: WORKDIR/iter<k> (local or gs://)."""
    return epath.Path(workdir) / f"iter{k}"


def tokenizer_workdir(workdir: str | os.PathLike, k: int) -> epath.Path:
    """Where iteration k distils its tokenizer: WORKDIR/iter<k>/tokenizer."""
    return iteration_dir(workdir, k) / "tokenizer"


def export_dir(config: ml_collections.ConfigDict, workdir: str | os.PathLike, k: int) -> str:
    """Where iteration k exports its encoder: train.export_dir/iter<k> when set, else WORKDIR/iter<k>/export."""
    base = config.train.get("export_dir")
    return str(Path(base) / f"iter{k}") if base else str(iteration_dir(workdir, k) / "export")


def tokenizer_export_dir(config: ml_collections.ConfigDict, workdir: str | os.PathLike, k: int) -> str:
    """Where iteration k exports its distilled tokenizer: train.export_dir/tokenizer<k> when set (beside, not
    inside, the encoder's export, which a re-export replaces), else WORKDIR/iter<k>/tokenizer/export."""
    base = config.train.get("export_dir")
    return str(Path(base) / f"tokenizer{k}") if base else str(tokenizer_workdir(workdir, k) / "export")


def _per_iteration(value, count: int, name: str, what: str) -> tuple:
    """A tuple field with entries for iterations 2, 3, ... in order (at most count - 1; a bare string is one)."""
    items = tuple(value or ())
    if isinstance(value, str):
        items = (value,) if value else ()
    if len(items) > count - 1:
        raise ConfigError(f"iterations.{name}={items}: {count - 1} {what} at most (iterations 2..{count}).")
    return items


def tokenizer_steps(config: ml_collections.ConfigDict, k: int) -> int:
    """Distillation steps of iteration k > 1: iterations.tokenizer_steps (one per iteration, or one for all),
    else train.steps."""
    steps = tuple(config.iterations.get("tokenizer_steps") or ())
    if not steps:
        return int(config.train.steps)
    return int(steps[0] if len(steps) == 1 else steps[k - 2])


def tokenizer_init(config: ml_collections.ConfigDict, k: int) -> str:
    """The tokenizer directory given for iteration k > 1 ('' when it is distilled)."""
    given = _per_iteration(config.iterations.get("tokenizer_init"), int(config.iterations.count), "tokenizer_init",
                           "tokenizer directories")
    return str(given[k - 2]) if k - 2 < len(given) else ""


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
                          f"learns a previous iteration's labels; objective.name={config.objective.name!r}.")
    if int(it.codebook_size) < 0:
        raise ConfigError(f"iterations.codebook_size={it.codebook_size}: 0 keeps objective.codebook_size, or >= 2.")
    kind = it.get("tokenizer", "distilled")
    if kind not in TOKENIZERS:
        raise ConfigError(f"iterations.tokenizer={kind!r}: 'distilled' (BEATs: a VQ tokenizer distilled from the "
                          f"previous encoder) or 'kmeans' (k-means codes of the previous encoder's outputs).")
    tsteps = tuple(it.get("tokenizer_steps") or ())
    if tsteps and (len(tsteps) not in (1, count - 1) or min(int(s) for s in tsteps) < 1):
        raise ConfigError(f"iterations.tokenizer_steps={tsteps}: give one positive step count for every "
                          f"tokenizer, or {count - 1} (one per iteration 2..{count}), or leave it empty to run "
                          f"train.steps={config.train.steps}.")
    given = _per_iteration(it.get("tokenizer_init"), count, "tokenizer_init", "tokenizer directories")
    if count > 1 and kind == "distilled" and config.model.family != "beats":
        raise ConfigError(f"iterations.tokenizer='distilled' labels BEATs' 16 x 16 patch grid in time-major order, "
                          f"and model.family={config.model.family!r} encodes another; set "
                          f"--config.iterations.tokenizer=kmeans (k-means codes of the previous encoder's outputs).")
    if kind == "kmeans" and any(given):
        raise ConfigError("iterations.tokenizer_init gives tokenizer directories, which iterations.tokenizer='kmeans' "
                          "does not read; set --config.iterations.tokenizer=distilled to use them.")
    for path in [p for p in given if p] + ([str(it.encoder_init)] if it.get("encoder_init") else []):
        if not Path(path).expanduser().is_dir():
            raise ConfigError(f"iterations: {path!r} (encoder_init / tokenizer_init) is not a directory; pass a "
                              f"model directory (encoder) or a tokenizer directory made by audiorep.")
    if int(it.get("agreement_clips", 8)) < 1:
        raise ConfigError(f"iterations.agreement_clips={it.agreement_clips}: the label table needs at least one clip.")
    return count


def stages(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> list[Stage]:
    """Every stage of the recipe in order (after `check`): encoder 1, then tokenizer k (distilled) and encoder k."""
    config = with_defaults(config)
    count = check(config)
    it = config.iterations
    out = []
    for k in range(1, count + 1):
        if k > 1 and it.tokenizer == "distilled":
            out.append(Stage(k, "tokenizer", str(tokenizer_workdir(workdir, k)),
                             tokenizer_export_dir(config, workdir, k), tokenizer_steps(config, k),
                             given=tokenizer_init(config, k)))
        steps = int(it.steps[k - 1]) if it.steps else int(config.train.steps)
        given = str(it.encoder_init) if k == 1 and it.get("encoder_init") else ""
        out.append(Stage(k, "encoder", str(iteration_dir(workdir, k)), export_dir(config, workdir, k), steps, given))
    return out


def stage_output(stage: Stage) -> str:
    """The directory the stage hands on (its export, or the given one)."""
    return stage.given or stage.export


def stage_done(stage: Stage) -> bool:
    """Given, or trained to its step count with its export written (exports are written atomically)."""
    if stage.given:
        return True
    done = Trainer.checkpoint_steps(stage.workdir)
    return bool(done) and done[-1] >= stage.steps and epath.Path(stage.export).is_dir()


# --------------------------------------------------------------------------------------- stage configs
def _copy(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(copy.deepcopy(config.to_dict()))


def iteration_config(config: ml_collections.ConfigDict, k: int, teacher: str | None = None,
                     tokenizer: str | None = None) -> ml_collections.ConfigDict:
    """The config of encoder k (1-based): its step count and, for k > 1, its targets: the labels of the
    tokenizer directory `tokenizer` ('distilled'), or k-means codes of `teacher` (the model directory of encoder
    k-1; 'kmeans'); `teacher` is also where `init_from_teacher` copies the weights from."""
    c = _copy(config)
    it = config.iterations
    if it.steps:
        c.train.steps = int(it.steps[k - 1])
    if k > 1:
        if not teacher:
            raise ConfigError(f"iteration {k} learns from iteration {k - 1}'s encoder, which exported nothing (a "
                              f"remote workdir needs a local --config.train.export_dir).")
        c.objective.teacher = str(teacher)
        c.objective.init_from_teacher = bool(it.init_from_teacher)
        if it.get("tokenizer", "distilled") == "kmeans":
            c.objective.tokenizer = "teacher"
            if int(it.codebook_size):
                c.objective.codebook_size = int(it.codebook_size)
        else:
            if not tokenizer:
                raise ConfigError(f"iteration {k} learns the labels of tokenizer {k}, which exported nothing.")
            c.objective.tokenizer = "distilled"
            c.objective.tokenizer_dir = str(tokenizer)
    if c.train.get("export_dir"):  # one export per iteration: a shared export_dir would be overwritten
        c.train.export_dir = export_dir(config, "", k)
    return c


def tokenizer_config(config: ml_collections.ConfigDict, stage: Stage, teacher: str) -> ml_collections.ConfigDict:
    """The config of tokenizer stage k: the experiment's data and frontend, the distillation's own fields
    (`config.distill`, see pretrain/distill.py), `stage.steps` steps, exporting to `stage.export`."""
    c = _copy(config)
    c.train.steps = int(stage.steps)
    c.train.export_dir = stage.export
    return distill.stage_config(c, teacher=teacher)


# ------------------------------------------------------------------------------------------------ run
def _train_stage(config: ml_collections.ConfigDict, stage: Stage, inputs: dict[str, str]) -> TrainResult:
    if stage.kind == "tokenizer":
        cfg = tokenizer_config(config, stage, inputs["teacher"])
        log.info("%s: distilling from %s, %d steps in %s", stage.name, inputs["teacher"], stage.steps, stage.workdir)
        return distill.train(cfg, stage.workdir)
    cfg = iteration_config(config, stage.iteration, inputs.get("teacher"), inputs.get("tokenizer"))
    targets = {"distilled": f" (labels of {inputs.get('tokenizer')})", "teacher": f" (k-means codes of "
               f"{inputs.get('teacher')}'s outputs)"}.get(cfg.objective.get("tokenizer"), "")
    log.info("%s: %d steps in %s%s", stage.name, stage.steps, stage.workdir, targets)
    return experiment.train(cfg, stage.workdir)


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> TrainResult:
    """Run every unfinished stage in turn, then write the per-iteration table (`summary`).

    Returns the TrainResult of the last stage that ran (stopped or done); when every stage was finished already,
    a done result of the last encoder (step = its steps, export_dir = its export).
    """
    config = with_defaults(config)
    count = check(config)
    if count == 1:
        return experiment.train(config, workdir)
    check_workdir(workdir)
    if is_remote(workdir) and not config.train.get("export_dir"):
        raise ConfigError(f"--workdir {workdir} is remote, and every iteration hands a local directory (model or "
                          f"tokenizer) to the next: set --config.train.export_dir=LOCAL_DIR.")
    plan = stages(config, workdir)
    inputs: dict[str, str] = {}
    result = None
    for stage in plan:
        if stage.iteration > 1:  # tokenizer k distils encoder k-1; encoder k may start from its weights
            inputs["teacher"] = stage_output(next(s for s in plan if s.kind == "encoder"
                                                 and s.iteration == stage.iteration - 1))
        if stage_done(stage):
            log.info("%s: %s", stage.name, f"given ({stage.given})" if stage.given else f"finished ({stage.export})")
        else:
            result = _train_stage(config, stage, inputs)
            if result.status != "done":
                return result
        if stage.kind == "tokenizer":
            inputs["tokenizer"] = stage_output(stage)
    write_summary(config, workdir, summary(config, workdir))
    last = plan[-1]
    return result if result is not None and result.export_dir else TrainResult(
        step=last.steps, status="done", metrics={}, export_dir=stage_output(last))


def export_latest(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                  path: str | os.PathLike | None = None) -> str:
    """Export the newest checkpoint of the latest encoder that has started (`audiorep pretrain --export-only`)."""
    config = with_defaults(config)
    count = check(config)
    if count == 1:
        return experiment.export_latest(config, workdir, path)
    check_workdir(workdir)
    plan = [s for s in stages(config, workdir) if s.kind == "encoder" and not s.given]
    started = [s for s in plan if Trainer.checkpoint_steps(s.workdir)]
    if not started:
        raise TrainError(f"no iteration has a checkpoint under {workdir} (looked for iter1..iter{count}): train "
                         f"first with the same command without --export-only, or pass the --workdir of a run.")
    k = started[-1].iteration
    teacher = stage_output(next(s for s in stages(config, workdir) if s.kind == "encoder" and s.iteration == k - 1)
                           ) if k > 1 else None
    tok = next((stage_output(s) for s in stages(config, workdir) if s.kind == "tokenizer" and s.iteration == k), None)
    return experiment.export_latest(iteration_config(config, k, teacher, tok), str(iteration_dir(workdir, k)), path)


# ------------------------------------------------------------------------------------------- the table
def label_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised mutual information of two labelings of the same items: I(a; b) / ((H(a) + H(b)) / 2).

    a, b: int arrays of one shape. 1 when they agree up to renaming labels, 0 when independent; two constant
    labelings count as identical (1.0).
    """
    a, b = np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"label agreement needs labels of the same patches; got {a.shape} and {b.shape}.")
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    joint = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(joint, (ai, bi), 1.0)
    joint /= joint.sum()
    pa, pb = joint.sum(1), joint.sum(0)
    nz = joint > 0
    mi = float(np.sum(joint[nz] * np.log(joint[nz] / np.outer(pa, pb)[nz])))
    ha, hb = _entropy(pa), _entropy(pb)
    if ha + hb == 0:
        return 1.0
    return max(0.0, min(1.0, 2.0 * mi / (ha + hb)))


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-np.sum(p * np.log(p)))


def code_stats(labels: np.ndarray, codebook_size: int) -> dict[str, float]:
    """Share of the codebook used and perplexity (exp of the code histogram's entropy) of i32 labels."""
    counts = np.bincount(np.asarray(labels).reshape(-1), minlength=codebook_size).astype(np.float64)
    return {"codes_used": float(np.mean(counts > 0)), "perplexity": float(math.exp(_entropy(counts / counts.sum())))}


def final_metrics(workdir: str | os.PathLike) -> dict[str, float]:
    """steps (the last logged step) and the mean of the last FINAL_WINDOW logged rows' loss / acc in a stage's
    metrics.jsonl (empty when nothing was logged there)."""
    path = epath.Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        return {}
    tail = rows[-FINAL_WINDOW:]
    out = {"steps": int(rows[-1]["step"])}
    for key, name in (("loss", "loss"), ("acc", "masked_acc")):
        vals = [float(r[key]) for r in tail if key in r]
        if vals:
            out[name] = float(np.mean(vals))
    return out


def iteration_labels(config: ml_collections.ConfigDict, clips: int, feats=None):
    """The targets encoder `config` learns, on the table's fixed batch.

    Returns (labels i32[B, N], codebook size, what the tokenizer is, feats). `feats` f32[B, frames, mels]: the
    batch; when None, the first `clips` clips of this config's training data order, without augmentation.
    """
    task, make_iterator = experiment.build(config)
    objective = task.loss
    if feats is None:
        batch = next(make_iterator(0, 1, clips))
        feats = fit_frames(objective.frontend(jnp.asarray(batch["audio"])), objective.frames)
    labels = np.asarray(objective.codes(task.model.encoder, feats))
    kind = config.objective.get("tokenizer", "random_projection")
    return labels, int(objective.tokenizer.codebook_size), kind, feats


def _where(path: str, workdir: str | os.PathLike) -> str:
    """`path` relative to the workdir when it lies inside it (the table stays readable), else as given."""
    try:
        return os.path.relpath(path, os.fspath(workdir)) if Path(path).is_relative_to(os.fspath(workdir)) else path
    except ValueError:
        return path


def summary(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> list[dict]:
    """The per-iteration table: one row per tokenizer and encoder, in recipe order (see the module docstring)."""
    config = with_defaults(config)
    plan = stages(config, workdir)
    clips = int(config.iterations.get("agreement_clips", 8))
    rows, previous, feats = [], None, None
    for k in range(1, int(config.iterations.count) + 1):
        enc = next(s for s in plan if s.kind == "encoder" and s.iteration == k)
        tok = next((s for s in plan if s.kind == "tokenizer" and s.iteration == k), None)
        teacher = stage_output(next(s for s in plan if s.kind == "encoder" and s.iteration == k - 1)) if k > 1 else None
        cfg = iteration_config(config, k, teacher, stage_output(tok) if tok else None)
        labels, size, kind, feats = iteration_labels(cfg, clips, feats)
        about = {"random_projection": "random projection", "teacher": f"k-means of encoder {k - 1}'s outputs"
                 }.get(kind, kind)
        row = {"iteration": k, "stage": "tokenizer", "source": about, "codebook_size": size,
               **code_stats(labels, size)}
        if tok is not None and tok.given:
            row["source"] = f"given: {tok.given}"
        elif tok is not None:
            row["source"] = f"distilled from encoder {k - 1}: {_where(tok.export, workdir)}"
            row.update(final_metrics(tok.workdir))
        if previous is not None:
            row["nmi_previous"] = label_agreement(labels, previous)
        previous = labels
        rows.append(row)
        erow = {"iteration": k, "stage": "encoder",
                "source": f"given: {enc.given}" if enc.given else _where(enc.export, workdir)}
        if not enc.given:
            erow.update(final_metrics(enc.workdir))
        rows.append(erow)
    return rows


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def table_markdown(rows: list[dict]) -> str:
    """The summary rows as a markdown table."""
    head = ("| iteration | stage | steps | final loss | masked acc | codes used | perplexity | NMI vs previous labels "
            "| source |\n|---|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {r['iteration']} | {r['stage']} | {_fmt(r.get('steps'))} | {_fmt(r.get('loss'))} | "
        f"{_fmt(r.get('masked_acc'))} | {_fmt(r.get('codes_used'))} | {_fmt(r.get('perplexity'), 1)} | "
        f"{_fmt(r.get('nmi_previous'))} | {r['source']} |\n" for r in rows)
    return head + body


def write_summary(config: ml_collections.ConfigDict, workdir: str | os.PathLike, rows: list[dict]) -> str:
    """WORKDIR/iterations.json and WORKDIR/iterations.md (replaced atomically); returns the markdown."""
    text = table_markdown(rows)
    note = (f"\nfinal loss / masked acc: mean of the last {FINAL_WINDOW} logged steps; codes used, perplexity and "
            f"NMI (normalised mutual information with the previous iteration's labels): on "
            f"{int(config.iterations.get('agreement_clips', 8))} fixed training clips.\n")
    root = epath.Path(workdir)
    if jax.process_index() == 0:  # every process computed the same rows; one writes them
        for name, data in ((TABLE_JSON, json.dumps({"rows": rows}, indent=2)), (TABLE_MD, text + note)):
            tmp = root / f".{name}.tmp"
            tmp.write_text(data)
            tmp.replace(root / name)
        log.info("per-iteration table in %s", root / TABLE_MD)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("iterations table written")
    return text


def read_table(workdir: str | os.PathLike) -> str:
    """The per-iteration table the last run wrote (WORKDIR/iterations.md)."""
    path = epath.Path(workdir) / TABLE_MD
    if not path.exists():
        raise TrainError(f"no per-iteration table in {workdir}: run every stage first (the same audiorep pretrain "
                         f"command without --export-only).")
    return path.read_text()
