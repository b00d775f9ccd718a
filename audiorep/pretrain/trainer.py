"""One training loop for every objective: jitted sharded step, orbax checkpoints, metrics, progress bar.

The trainer knows a `Task` (an nnx model, an objective `loss(model, batch, rng) -> (scalar, metrics)` and
how to export the encoder) and a data iterator factory; nothing else. Around them it builds:

- an optax AdamW with warm-up + cosine (or the SSAST / PaSST schedules), gradient clipping, optional
  layer-wise LR decay and an EMA of the parameters;
- one `jax.jit` step over `nnx.split` state (params, other variables, optimizer state, step, PRNG key),
  sharded over the ('data', 'fsdp') mesh of pretrain/distributed.py, with gradient accumulation (a scan
  over micro-batches), bf16 compute over fp32 master weights, optional rematerialisation, and a NaN/Inf
  guard: a non-finite step leaves the state untouched, the loop stops with the step number, and no
  non-finite state is ever saved;
- an orbax CheckpointManager (async, atomic, keep-N) saving every K steps, at the end, and on
  SIGTERM/SIGINT (Ctrl-C saves, then exits), with the grain iterator state beside the arrays, so the same
  command resumes exactly where it stopped — same batches, same random draws, same losses;
- metrics in TensorBoard event files and metrics.jsonl in the workdir, training curves (loss, lr, the
  objective's metrics; pretrain/curves.py) in WORKDIR/curves.png at each checkpoint, and a tqdm bar.

A resume checks the checkpoint against the model (a run of another model is refused, naming the config fields
that differ) and falls back to the newest intact checkpoint when the latest is damaged (e.g. a truncated
file), moving the damaged one to WORKDIR/damaged/ with a warning; nothing is deleted.

`Trainer(config, workdir, task, make_iterator).run()` is the same loop for any task; pretrain/experiment.py
builds the task and data from an experiment config (configs/*.py). Used by `audiorep pretrain` and the demo.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from etils import epath
from flax import nnx
from jax.experimental import multihost_utils
from tensorboardX import SummaryWriter
from tqdm.auto import tqdm

from audiorep.errors import AudiorepError
from audiorep.models.layers import REMAT_POLICIES, set_remat
from audiorep.paths import is_remote, write_atomically
from audiorep.pretrain import curves, distributed
from audiorep.pretrain.config import ConfigError, flatten

log = logging.getLogger(__name__)

LossFn = Callable[[nnx.Module, Mapping[str, jax.Array], jax.Array], tuple[jax.Array, dict[str, jax.Array]]]
IteratorFactory = Callable[[int, int, int], Iterator[Mapping[str, np.ndarray]]]


class NonFiniteLossError(RuntimeError):
    """The loss or the gradient norm became NaN/Inf; the state was not updated by that step."""

    def __init__(self, step: int, last_checkpoint: int | None, metrics: Mapping[str, float]):
        self.step = step
        self.last_checkpoint = last_checkpoint
        where = (f"the last good checkpoint is step {last_checkpoint}" if last_checkpoint is not None
                 else "no checkpoint was written yet")
        super().__init__(
            f"non-finite loss/gradients at step {step} ({', '.join(f'{k}={v:.4g}' for k, v in metrics.items())}); "
            f"training stopped and {where}. Lower optim.lr, raise optim.warmup_steps, set optim.clip_norm, or "
            f"use train.compute_dtype=float32; the same command then resumes from that checkpoint.")


class TrainError(AudiorepError, ValueError):
    """A run that cannot start, resume or export as asked (workdir, checkpoints); the message says the fix."""


@dataclasses.dataclass
class Task:
    """What to train.

    model: the nnx module holding every trained parameter (encoder + objective heads).
    loss: `loss(model, batch, rng) -> (f32[] scalar, {name: f32[]})`; batch leaves are [B_micro, ...].
    export: `export(model, path)` writes a model directory (audiorep.load works on it), or None.
    num_layers: encoder depth, for layer-wise LR decay (params under `blocks.<i>` / `layers.<i>`).
    """

    model: nnx.Module
    loss: LossFn
    export: Callable[[nnx.Module, str], None] | None = None
    num_layers: int | None = None
    name: str = "task"


# ------------------------------------------------------------------------------------------- defaults
def default_train_config() -> ml_collections.ConfigDict:
    """Every experiment field the trainer and the experiment assembly read, with its default; experiment files
    (configs/) set the model, frontend and objective, and override what their recipe changes."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    # the training audio (pretrain/experiment.py data_source)
    c.data = ml_collections.ConfigDict(dict(
        dataset="tfds",             # 'tfds' (ArrayRecord build) | a reader ('audioset', 'folder', ...) | 'synthetic'
        root="",                    # the dataset's folder (tfds: any path tfds reads, gs:// too); must be set
        split="train",              # '' = every clip of a reader dataset
        frames=0,                   # frames per training example (cut or padded); 0 = the encoder's window
        worker_count=8,             # grain decoding processes (0: in-process)
        options=ml_collections.ConfigDict(),  # the reader's options, e.g. file_pattern for audioset
        balance="none",             # 'folder': each top-level folder of root as often as the largest (corpus mixes)
        # 'synthetic': the corpus written to root when it is missing (audiorep.data.synthetic)
        synthetic=ml_collections.ConfigDict(dict(per_class=200, seconds=10.5, seed=0, sample_rate=16000)),
    ))
    c.train = ml_collections.ConfigDict(dict(
        steps=1000,
        batch_size=8,               # global, across all processes and devices
        accum_steps=1,              # gradient accumulation: micro-batches per step (scan)
        compute_dtype="float32",    # 'bfloat16': bf16 compute over fp32 master params
        remat="none",               # per block: 'none' | 'dots' (keep matmul outputs) | 'full' (keep block inputs)
        log_every=10,
        checkpoint_every=500,
        keep_checkpoints=3,
        async_checkpoints=True,
        export_at_end=True,
        export_dir="",              # where the encoder is exported at the end ('' = WORKDIR/export)
        progress=True,
    ))
    c.optim = ml_collections.ConfigDict(dict(
        lr=1e-4,
        schedule="cosine",          # 'cosine' | 'constant' | 'ssast' | 'passt'
        warmup_steps=100,
        end_lr_ratio=0.0,           # cosine: final lr / peak lr
        b1=0.9,
        b2=0.999,
        eps=1e-8,
        weight_decay=0.05,
        clip_norm=1.0,              # 0 disables
        layer_decay=1.0,            # < 1: lr of block i scaled by layer_decay ** (L + 1 - i)
        ema_decay=0.0,              # > 0 keeps an EMA of the params (exported instead of the raw params)
        # 'ssast': linear warm-up, then halve on plateau of the training loss averaged over plateau_steps
        plateau_factor=0.5,
        plateau_patience=2,
        plateau_steps=4000,
        # 'passt': exponential warm-up, constant, linear ramp-down to passt_last_ratio * lr
        rampdown_start=50_000,
        rampdown_steps=50_000,
        passt_last_ratio=0.01,
    ))
    # BEATs iterations (pretrain/iterations.py; masked_tokens only): count > 1 trains WORKDIR/iter1..iterN, encoder
    # k > 1 on the labels of a tokenizer distilled from encoder k-1 ('distilled') or on k-means codes of its outputs
    # ('kmeans'); steps / tokenizer_steps: one count per iteration (empty: train.steps each)
    c.iterations = ml_collections.ConfigDict(dict(count=1, steps=(), tokenizer="distilled", tokenizer_steps=(),
                                                  init_from_teacher=False, codebook_size=0, encoder_init="",
                                                  tokenizer_init=(), agreement_clips=8))
    # the distilled tokenizer stages of those iterations (fields documented in pretrain/distill.py)
    c.distill = ml_collections.ConfigDict(dict(teacher="", preset="", overrides=ml_collections.ConfigDict(),
                                               estimator_depth=3, lr=0.0, warmup_steps=-1, batch_size=0, frames=0,
                                               restart_dead=False, restart_threshold=0.1))
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1))
    c.distributed = ml_collections.ConfigDict(dict(mode="auto", coordinator_address="", num_processes=0,
                                                   process_id=-1))
    return c


def with_defaults(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """`config` on top of `default_train_config()` (fields the experiment leaves out get defaults)."""
    base = default_train_config()
    merged = ml_collections.ConfigDict(base.to_dict())
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict) and key in merged and isinstance(
                merged[key], ml_collections.ConfigDict):
            for k, v in value.items():
                merged[key][k] = v
        else:
            merged[key] = value
    return merged


def check_train_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """`config` with defaults, after refusing train/optim values that cannot train (ConfigError naming the field).

    train.steps=0 is refused too: it would export the untrained initial encoder as a finished run.
    """
    cfg = with_defaults(config)
    t, o = cfg.train, cfg.optim

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    need(int(t.steps) >= 1, f"train.steps={t.steps}: train at least one step (0 would export the untrained encoder "
                            f"as a finished run); set --config.train.steps to a positive count.")
    need(int(t.batch_size) >= 1, f"train.batch_size={t.batch_size}: the global batch needs at least one clip; set "
                                 f"--config.train.batch_size to a positive count (e.g. 8).")
    need(int(t.accum_steps) >= 1 and int(t.batch_size) % int(t.accum_steps) == 0,
         f"train.accum_steps={t.accum_steps}: use a positive count that divides train.batch_size={t.batch_size}.")
    for name in ("log_every", "checkpoint_every", "keep_checkpoints"):
        need(int(t[name]) >= 1, f"train.{name}={t[name]}: use a positive count (--config.train.{name}=N).")
    lr = float(o.lr)
    need(math.isfinite(lr) and lr > 0, f"optim.lr={o.lr}: the peak learning rate must be a positive number; set "
                                       f"--config.optim.lr (e.g. 1e-4).")
    need(int(o.warmup_steps) >= 0, f"optim.warmup_steps={o.warmup_steps}: use 0 (no warm-up) or more.")
    for name in ("weight_decay", "clip_norm"):
        need(float(o[name]) >= 0, f"optim.{name}={o[name]}: use 0 (off) or a positive number.")
    need(0.0 < float(o.layer_decay) <= 1.0, f"optim.layer_decay={o.layer_decay}: use a factor in (0, 1] (1: off).")
    need(0.0 <= float(o.ema_decay) < 1.0, f"optim.ema_decay={o.ema_decay}: use a decay in [0, 1) (0: no EMA).")
    return cfg


def check_workdir(workdir: str | os.PathLike) -> None:
    """Refuse a local workdir that is a file (or lies under one), before anything is built or written."""
    if is_remote(workdir):
        return
    path = os.path.abspath(os.path.expanduser(os.fspath(workdir)))
    probe = path
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe) if os.path.dirname(probe) != probe else ""
    if probe and not os.path.isdir(probe):
        where = "is a file" if probe == path else f"lies under {probe}, which is a file"
        raise TrainError(f"--workdir {workdir} {where}; pass a folder (a new one, or a previous run's to resume).")


# ----------------------------------------------------------------------------------------- optimizer
def make_schedule(optim: Mapping[str, Any], total_steps: int) -> optax.Schedule:
    """Learning rate per step (before any plateau scaling)."""
    lr, warm = float(optim["lr"]), int(optim["warmup_steps"])
    name = optim["schedule"]
    if name == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, max(warm, 0), max(total_steps, warm + 1),
                                                  end_value=lr * float(optim["end_lr_ratio"]))
    if name in ("constant", "ssast"):
        if warm <= 0:
            return optax.constant_schedule(lr)
        return optax.join_schedules([optax.linear_schedule(0.0, lr, warm), optax.constant_schedule(lr)], [warm])
    if name == "passt":
        # PaSST's exp_warmup_linear_down: lr * exp(-5 (1 - t)^2) ramp-up, flat, linear down to last_ratio * lr.
        start, length, last = int(optim["rampdown_start"]), int(optim["rampdown_steps"]), optim["passt_last_ratio"]

        def sched(step):
            step = jnp.asarray(step, jnp.float32)
            t = jnp.clip(step / max(warm, 1), 0.0, 1.0)
            up = jnp.where(warm > 0, jnp.exp(-5.0 * (1.0 - t) ** 2), 1.0)
            frac = jnp.clip((step - start) / max(length, 1), 0.0, 1.0)
            down = 1.0 - frac * (1.0 - last)
            return lr * up * down

        return sched
    raise ValueError(f"optim.schedule={name!r}: use 'cosine', 'constant', 'ssast' or 'passt'.")


_LAYER = re.compile(r"(?:^|\W)(?:blocks|layers)\W+(\d+)(?:\W|$)")
_NO_DECAY = ("bias", "scale", "norm", "pos_embed", "mask_embed", "cls_token", "dist_token", "embedding")


def _path_str(path) -> str:
    """'blocks.0.kernel' for a jax key path into an nnx.State (the Variable's '.value' dropped)."""
    names = [str(getattr(p, "key", getattr(p, "idx", getattr(p, "name", p)))) for p in path]
    return ".".join(names[:-1] if names and names[-1] == "value" else names)


def decay_mask(params) -> Any:
    """True for parameters that get weight decay: matrices/kernels, not biases, norms, embeddings."""
    def one(path, x):
        name = _path_str(path).lower()
        return bool(getattr(x, "ndim", 0) >= 2 and not any(k in name for k in _NO_DECAY))

    return jax.tree_util.tree_map_with_path(one, params)


def layer_scales(params, num_layers: int, decay: float) -> Any:
    """Layer-wise LR factors: embeddings decay^(L+1), block i decay^(L-i), everything after 1."""
    def one(path, x):
        name = _path_str(path)
        m = _LAYER.search(name)
        if m:
            depth = int(m.group(1)) + 1
        elif any(k in name for k in ("patch", "pos_embed", "mask_embed", "cls_token", "dist_token", "embed")):
            depth = 0
        else:
            depth = num_layers + 1
        return jnp.asarray(decay ** (num_layers + 1 - depth), jnp.float32)

    return jax.tree_util.tree_map_with_path(one, params)


def _scale_by_tree(scales) -> optax.GradientTransformation:
    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda u, s: u * s.astype(u.dtype), updates, scales), state

    return optax.GradientTransformation(init, update)


def make_optimizer(optim: Mapping[str, Any], total_steps: int, params, num_layers: int | None = None):
    """(optax transformation, lr schedule) for AdamW + clipping + optional layer decay / plateau."""
    schedule = make_schedule(optim, total_steps)
    parts = []
    if float(optim["clip_norm"]) > 0:
        parts.append(optax.clip_by_global_norm(float(optim["clip_norm"])))
    parts.append(optax.adamw(schedule, b1=float(optim["b1"]), b2=float(optim["b2"]), eps=float(optim["eps"]),
                             weight_decay=float(optim["weight_decay"]), mask=decay_mask(params)))
    if float(optim["layer_decay"]) < 1.0:
        if not num_layers:
            raise ValueError("optim.layer_decay < 1 needs the encoder depth (Task.num_layers); this task has none.")
        parts.append(_scale_by_tree(layer_scales(params, num_layers, float(optim["layer_decay"]))))
    if optim["schedule"] == "ssast":
        parts.append(optax.contrib.reduce_on_plateau(
            factor=float(optim["plateau_factor"]), patience=int(optim["plateau_patience"]),
            accumulation_size=int(optim["plateau_steps"])))
    return optax.chain(*parts), schedule


# ------------------------------------------------------------------------------------------ the step
def _cast(tree, dtype):
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def build_step(graphdef, loss_fn: LossFn, tx, schedule, cfg: ml_collections.ConfigDict):
    """The pure train step: (state, batch) -> (state, metrics).  Batch leaves are [B_global, ...].

    state = {params, rest, opt, step: i32[], key: u32[2], ema?}. Gradients of the mean loss over
    `accum_steps` micro-batches (row i goes to micro-batch i % accum_steps); params stay fp32, the forward
    runs in `compute_dtype`; a non-finite loss or gradient norm leaves the whole state unchanged.
    """
    accum = int(cfg.train.accum_steps)
    compute = jnp.dtype(cfg.train.compute_dtype)
    ema_decay = float(cfg.optim.ema_decay)
    remat = cfg.train.remat
    if remat not in ("none", *REMAT_POLICIES):
        raise ValueError(f"train.remat={remat!r}: use 'none', 'dots' or 'full'.")

    def micro_loss(params, rest, batch, key):
        model = nnx.merge(graphdef, _cast(params, compute) if compute != jnp.float32 else params, rest, copy=True)
        set_remat(model, remat)
        loss, metrics = loss_fn(model, batch, key)
        new_rest = nnx.split(model, nnx.Param, ...)[2]
        return loss.astype(jnp.float32), (jax.tree.map(lambda m: m.astype(jnp.float32), metrics), new_rest)

    grad_fn = jax.value_and_grad(micro_loss, has_aux=True)

    def step(state, batch):
        params, rest = state["params"], state["rest"]
        key = jax.random.fold_in(state["key"], state["step"])
        if accum == 1:
            (loss, (metrics, new_rest)), grads = grad_fn(params, rest, batch, key)
        else:
            def split(x):
                b = x.shape[0]
                if b % accum:
                    raise ValueError(f"batch of {b} does not split into train.accum_steps={accum} micro-batches.")
                return jnp.swapaxes(x.reshape(b // accum, accum, *x.shape[1:]), 0, 1)

            micro = jax.tree.map(split, batch)

            def body(carry, xs):
                g_acc, r = carry
                i, mb = xs
                (lo, (m, r)), g = grad_fn(params, r, mb, jax.random.fold_in(key, i))
                return (jax.tree.map(jnp.add, g_acc, g), r), (lo, m)

            zeros = jax.tree.map(jnp.zeros_like, params)
            (grads, new_rest), (losses, ms) = jax.lax.scan(body, (zeros, rest), (jnp.arange(accum), micro))
            grads = jax.tree.map(lambda g: g / accum, grads)
            loss = losses.mean()
            metrics = jax.tree.map(lambda m: m.mean(0), ms)
        grad_norm = optax.tree.norm(grads)
        updates, opt = tx.update(grads, state["opt"], params, value=loss)
        new_params = optax.apply_updates(params, updates)
        ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        new = dict(state, params=new_params, rest=new_rest, opt=opt, step=state["step"] + 1)
        if "ema" in state:
            new["ema"] = jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, state["ema"], new_params)
        # NaN/Inf guard: keep everything as it was (the step counter too) when this step is not finite.
        new = jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, state)
        lr = schedule(state["step"])
        plateau = optax.tree_utils.tree_get(opt, "scale", default=None) if cfg.optim.schedule == "ssast" else None
        if plateau is not None:
            lr = lr * plateau
        out = dict(metrics, loss=loss, grad_norm=grad_norm, lr=jnp.asarray(lr, jnp.float32),
                   finite=ok.astype(jnp.float32))
        return new, out

    return step


def host_value(x):
    """The whole value of a (possibly process-sharded) array, on this host; a collective in multi-process runs."""
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
        return x
    if x.is_fully_replicated:
        return x.addressable_data(0)
    return multihost_utils.process_allgather(x, tiled=True)


# ------------------------------------------------------------------------------------- metrics output
class MetricsWriter:
    """metrics.jsonl + TensorBoard events in the workdir (process 0 only).

    On resume from step s, rows after s (written before a crash) are dropped and TensorBoard purges
    events after s, so the logs read as one uninterrupted run.
    """

    def __init__(self, workdir: epath.Path, start_step: int, enabled: bool):
        self.enabled = enabled
        self.path = workdir / "metrics.jsonl"
        self.local = not is_remote(workdir)
        self.rows: list[str] = []
        self.tb = None
        if not enabled:
            return
        if self.path.exists():
            kept = [ln for ln in self.path.read_text().splitlines() if ln.strip() and _row_step(ln) <= start_step]
            self._rewrite(kept)
            self.rows = kept
        try:
            self.tb = SummaryWriter(str(workdir), purge_step=start_step + 1 if start_step else None,
                                    flush_secs=30)
        except Exception as e:  # e.g. gs:// without google-cloud-storage
            log.warning("TensorBoard events disabled (%s); metrics.jsonl is still written.", e)

    def _rewrite(self, lines: list[str]) -> None:
        text = "".join(ln + "\n" for ln in lines)
        if self.local:
            tmp = self.path.parent / f".{self.path.name}.tmp"
            tmp.write_text(text)
            os.replace(tmp, self.path)
        else:
            self.path.write_text(text)

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        row = json.dumps({"step": step, **{k: float(v) for k, v in metrics.items()}})
        self.rows.append(row)
        if self.local:
            with open(self.path, "a") as f:
                f.write(row + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                if math.isfinite(float(v)):
                    self.tb.add_scalar(k if "/" in k else f"train/{k}", float(v), step)

    def flush(self) -> None:
        if not self.enabled:
            return
        if not self.local:
            self._rewrite(self.rows)
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        self.flush()
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def _stored_shape(x) -> tuple[int, ...]:
    """The shape an array has in a checkpoint: typed PRNG keys are stored as their raw uint32 key data."""
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return tuple(jax.random.key_data(x).shape)
    return tuple(x.shape)


def _row_step(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62


class _IteratorSnapshot:
    """The iterator state taken at save time, for grain's orbax handler (async saves must not read a
    live iterator that has already moved on)."""

    def __init__(self, iterator):
        state = iterator.get_state()
        self._state = state if isinstance(state, bytes) else json.dumps(state, indent=4).encode()

    def get_state(self) -> bytes:
        return self._state


# ------------------------------------------------------------------------------------------ the loop
@dataclasses.dataclass
class TrainResult:
    step: int
    status: str                    # 'done' | 'interrupted'
    metrics: dict[str, float]
    export_dir: str | None = None


class Trainer:
    """Train `task` on batches from `make_iterator(process_index, process_count, local_batch)`.

    The iterator yields dicts of numpy arrays [B_local, ...] and must have get_state()/set_state()
    (a grain DatasetIterator or DataLoader iterator) so checkpoints can hold its position.
    """

    def __init__(self, config: ml_collections.ConfigDict, workdir: str | os.PathLike, task: Task,
                 make_iterator: IteratorFactory, *, mesh: jax.sharding.Mesh | None = None):
        self.cfg = check_train_config(config)
        check_workdir(workdir)
        # orbax needs absolute paths: a relative local workdir is taken relative to the current directory
        self.workdir = epath.Path(workdir if is_remote(workdir) else os.path.abspath(os.path.expanduser(workdir)))
        self.task = task
        self.make_iterator = make_iterator
        self.mesh = mesh or distributed.make_mesh(self.cfg.mesh.data, self.cfg.mesh.fsdp)
        self.is_main = jax.process_index() == 0
        self._stop_signal: int | None = None

        graphdef, params, rest = nnx.split(task.model, nnx.Param, ...)
        self.graphdef = graphdef
        self.tx, self.schedule = make_optimizer(self.cfg.optim, self.cfg.train.steps, params, task.num_layers)
        self.global_batch = int(self.cfg.train.batch_size)
        self.local_batch = distributed.local_batch_size(self.global_batch, self.mesh)
        if (self.global_batch // int(self.cfg.train.accum_steps)) % (self.mesh.size) and self.cfg.train.accum_steps > 1:
            raise ValueError(f"train.batch_size={self.global_batch} / accum_steps={self.cfg.train.accum_steps} must "
                             f"still be a multiple of the {self.mesh.size} devices.")

        key = jax.random.PRNGKey(int(self.cfg.seed))
        state = dict(params=params, rest=rest, step=jnp.zeros((), jnp.int32), key=key)
        if float(self.cfg.optim.ema_decay) > 0:
            state["ema"] = params
        abstract = jax.eval_shape(lambda s: dict(s, opt=self.tx.init(s["params"])), state)
        self.state_sharding = distributed.param_sharding(abstract, self.mesh)
        init = jax.jit(lambda s: dict(s, opt=self.tx.init(s["params"])), out_shardings=self.state_sharding)
        self.state = init(state)
        del state
        self._step = jax.jit(build_step(graphdef, task.loss, self.tx, self.schedule, self.cfg),
                             in_shardings=(self.state_sharding, None), out_shardings=(self.state_sharding, None),
                             donate_argnums=0)

    # -- checkpoints
    @staticmethod
    def checkpoint_steps(workdir: str | os.PathLike) -> list[int]:
        """The steps with a finished (committed) checkpoint in WORKDIR/checkpoints, oldest first."""
        root = epath.Path(workdir if is_remote(workdir) else os.path.abspath(os.path.expanduser(workdir)))
        ckpts = root / "checkpoints"
        if not ckpts.is_dir():
            return []
        return sorted(int(d.name) for d in ckpts.iterdir() if d.name.isdigit() and (d / "commit_success.txt").exists())

    @staticmethod
    def require_checkpoint(workdir: str | os.PathLike) -> None:
        """Refuse a workdir without any checkpoint (e.g. before exporting), naming the command that makes one."""
        check_workdir(workdir)
        if not Trainer.checkpoint_steps(workdir):
            raise TrainError(f"no checkpoint in {os.path.join(os.fspath(workdir), 'checkpoints')}: train first "
                             f"(audiorep pretrain --config FILE --workdir {workdir}), or pass the --workdir of a run.")

    def _manager(self):
        options = ocp.CheckpointManagerOptions(
            max_to_keep=int(self.cfg.train.keep_checkpoints),
            enable_async_checkpointing=bool(self.cfg.train.async_checkpoints),
            create=True,
        )
        return ocp.CheckpointManager(self.workdir / "checkpoints", options=options, item_names=("state", "data"))

    def _save(self, mngr, step: int, iterator) -> None:
        mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(self.state),
                                                data=grain.checkpoint.CheckpointSave(_IteratorSnapshot(iterator))),
                  force=True)

    def _restore(self, mngr, step: int, iterator=None):
        """Load checkpoint `step` into the trainer; returns the restored data iterator (None when not asked)."""
        abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                self.state, self.state_sharding)
        items = dict(state=ocp.args.StandardRestore(abstract))
        if iterator is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(iterator)
        restored = mngr.restore(step, args=ocp.args.Composite(**items))
        self.state = restored["state"]
        return restored["data"] if iterator is not None else None

    def _check_same_model(self, step: int) -> None:
        """Refuse a checkpoint whose arrays are not this model's (another preset, objective or optimizer)."""
        path = self.workdir / "checkpoints" / str(step) / "state"
        handler = ocp.PyTreeCheckpointHandler()
        try:
            saved = {_path_str(p): tuple(m.shape) for p, m in jax.tree_util.tree_flatten_with_path(
                handler.metadata(path))[0] if hasattr(m, "shape")}
        except Exception:  # unreadable metadata is damage, which the restore that follows reports and handles
            return
        finally:
            handler.close()
        ours = {_path_str(p): _stored_shape(x) for p, x in jax.tree_util.tree_flatten_with_path(self.state)[0]}
        differ = sorted(k for k in set(saved) | set(ours) if saved.get(k) != ours.get(k))
        if not differ:
            return
        example = differ[0]
        raise TrainError(
            f"{self.workdir} holds a run of another model: {len(differ)} of its checkpoint's arrays do not match this "
            f"config's (e.g. {example}: {saved.get(example, 'absent')} there, {ours.get(example, 'absent')} here)"
            f"{self._config_difference()}. Resume with the config that started the run, or pass a new --workdir.")

    def _config_difference(self) -> str:
        """'; config.json there has model.preset='x' (here 'y')' for the fields that change arrays, else ''."""
        saved_file = self.workdir / "config.json"
        try:
            saved = flatten(ml_collections.ConfigDict(json.loads(saved_file.read_text())))
        except (OSError, ValueError):
            return ""
        here = flatten(self.cfg)
        keys = [k for k in sorted(set(saved) | set(here)) if k.split(".")[0] in ("model", "objective", "frontend")
                and saved.get(k) != here.get(k) and not (isinstance(saved.get(k), list | tuple)
                                                         and list(saved[k]) == list(here.get(k) or ()))]
        if not keys:
            return ""
        shown = ", ".join(f"{k}={saved.get(k)!r} (here {here.get(k)!r})" for k in keys[:3])
        return f"; its config.json has {shown}{' ...' if len(keys) > 3 else ''}"

    def _restore_newest_intact(self, mngr, iterator=None):
        """Restore the newest checkpoint that loads; a damaged one is moved to WORKDIR/damaged/ with a warning.

        Returns (step, manager, restored iterator): 0 and the untouched iterator when there is no checkpoint;
        the manager is a new one when a damaged checkpoint was moved (the old one still lists it).
        """
        damaged = []
        while (step := mngr.latest_step()) is not None:
            self._check_same_model(step)
            try:
                return step, mngr, self._restore(mngr, step, iterator)
            except Exception as err:  # orbax / tensorstore raise bare Exception (OUT_OF_RANGE ...) for unreadable data
                reason = str(err).split("\n")[0][:160]
            mngr.close()
            moved = self._move_damaged(step)
            damaged.append(step)
            older = [s for s in self.checkpoint_steps(self.workdir) if s < step]
            if self.is_main:
                log.warning("checkpoint of step %d in %s is damaged (%s); moved it to %s and %s.", step,
                            self.workdir / "checkpoints", reason, moved,
                            f"resuming from step {older[-1]}, the newest intact one" if older else
                            "no older checkpoint is left")
            mngr = self._manager()
        if damaged:
            mngr.close()
            raise TrainError(f"every checkpoint in {self.workdir / 'checkpoints'} is damaged (steps "
                             f"{', '.join(map(str, damaged))}, moved to {self.workdir / 'damaged'}); start again with "
                             f"a new --workdir (the damaged ones stay where they are for inspection).")
        return 0, mngr, iterator

    def _move_damaged(self, step: int) -> epath.Path:
        """Move checkpoint `step` out of the checkpoint folder to WORKDIR/damaged/<step>[.n] (never deleted)."""
        dest_dir = self.workdir / "damaged"
        dest = dest_dir / str(step)
        n = 1
        while dest.exists():
            dest, n = dest_dir / f"{step}.{n}", n + 1
        if self.is_main:
            dest_dir.mkdir(parents=True, exist_ok=True)
            (self.workdir / "checkpoints" / str(step)).rename(dest)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"damaged checkpoint {step} moved")
        return dest

    # -- signals
    def _on_signal(self, signum, frame):
        del frame
        if self._stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        self._stop_signal = signum
        if self.is_main:
            log.warning("received %s: saving a checkpoint, then stopping (Ctrl-C again to abort at once).",
                        signal.Signals(signum).name)

    def _stop_requested(self, step: int) -> bool:
        if jax.process_count() == 1:
            return self._stop_signal is not None
        if multihost_utils.reached_preemption_sync_point(step):
            return True
        if step % max(int(self.cfg.train.log_every), 1) == 0:  # agree on local Ctrl-C/SIGTERM now and then
            flags = multihost_utils.process_allgather(np.int32(self._stop_signal is not None))
            return bool(np.any(flags))
        return False

    # -- model access
    def model(self, *, ema: bool | None = None) -> nnx.Module:
        """The task model with the current (or EMA, when kept) parameters, on host-addressable arrays."""
        use_ema = ("ema" in self.state) if ema is None else ema
        params = self.state["ema"] if use_ema else self.state["params"]
        return nnx.merge(self.graphdef, params, self.state["rest"])

    def export(self, path: str | os.PathLike | None = None) -> str | None:
        """Write the encoder as a model directory; returns its path or None.

        `path` defaults to train.export_dir, else WORKDIR/export. Model directories are local files
        (models/model_dir.py): with a remote (gs://) workdir and no local export_dir, export is skipped with
        the command that does it later. In a multi-process run every process must call this (the sharded
        parameters are gathered from all of them); process 0 writes.
        """
        if self.task.export is None:
            return None
        path = path or self.cfg.train.get("export_dir") or None
        if path is None and is_remote(self.workdir):
            if self.is_main:
                log.warning("export skipped (remote workdir %s; model directories are local): set "
                            "--config.train.export_dir=LOCAL_DIR, or afterwards on one host run: audiorep pretrain "
                            "--config ... --workdir %s --export-only --export-dir LOCAL_DIR "
                            "--config.distributed.mode=off", self.workdir, self.workdir)
            return None
        path = str(path or (self.workdir / "export"))
        graphdef, state = nnx.split(self.model())
        model = nnx.merge(graphdef, jax.tree.map(host_value, state))  # gathers across processes when sharded
        if self.is_main:
            self.task.export(model, path)
            drawn = self.workdir / curves.CURVES_FILE
            if drawn.exists():  # the run's training curves travel with the model (the leaderboard links them)
                write_atomically(epath.Path(path) / curves.EXPORTED_CURVES_FILE, drawn.read_bytes())
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("export written")
        return path

    def restore_latest(self) -> int:
        """Load the newest intact checkpoint's arrays (not the data position) into the trainer; returns its step."""
        self.require_checkpoint(self.workdir)
        step, mngr, _ = self._restore_newest_intact(self._manager())
        mngr.close()
        return step

    def draw_curves(self, rows: list[str]) -> list[str]:
        """WORKDIR/curves.png from metrics rows (JSON lines); returns the panels drawn. Process 0 only."""
        if not self.is_main or not rows:
            return []
        return curves.draw_curves(curves.read_rows(rows), self.workdir / curves.CURVES_FILE,
                                  title=f"{self.task.name}: {self.workdir.name}")

    # -- the loop
    def run(self) -> TrainResult:
        cfg = self.cfg
        total = int(cfg.train.steps)
        pid, pcount = distributed.process_shard()
        iterator = self.make_iterator(pid, pcount, self.local_batch)
        start, mngr, iterator = self._restore_newest_intact(self._manager(), iterator)
        if start:
            if self.is_main:
                log.info("resumed from %s at step %d", self.workdir / "checkpoints", start)
        elif self.is_main:
            self.workdir.mkdir(parents=True, exist_ok=True)
            (self.workdir / "config.json").write_text(cfg.to_json_best_effort(indent=2))
        writer = MetricsWriter(self.workdir, start, self.is_main)
        old_handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)
                        if _in_main_thread()}
        bar = _progress(total, start, self.is_main and bool(cfg.train.progress))
        log_every = max(int(cfg.train.log_every), 1)
        ckpt_every = max(int(cfg.train.checkpoint_every), 1)
        last_saved = start if start else None
        pending: tuple[int, dict] | None = None  # metrics of the previous step, read one step late
        last: dict[str, float] = {}
        t0, s0 = time.perf_counter(), start
        status = "done"
        step = start

        def check(step_done: int, metrics) -> dict[str, float]:
            host = {k: float(v) for k, v in jax.device_get(metrics).items()}
            if host.get("finite", 1.0) < 1.0:
                mngr.wait_until_finished()
                writer.close()
                raise NonFiniteLossError(step_done, last_saved, {k: v for k, v in host.items()
                                                                 if k in ("loss", "grad_norm")})
            host.pop("finite", None)
            return host

        try:
            while step < total:
                batch = next(iterator)
                gbatch = distributed.global_batch(batch, self.mesh, self.global_batch)
                self.state, metrics = self._step(self.state, gbatch)
                step += 1
                if pending is not None:
                    check(*pending)
                pending = (step, metrics)
                save_now = step % ckpt_every == 0 or step == total
                log_now = step % log_every == 0 or step == total
                stop = self._stop_requested(step)
                if save_now or log_now or stop:
                    last = check(*pending)
                    pending = None
                if log_now:
                    now = time.perf_counter()
                    rate = (step - s0) / max(now - t0, 1e-9)
                    t0, s0 = now, step
                    writer.write(step, dict(last, steps_per_s=rate))
                    bar.set_postfix(loss=f"{last['loss']:.4f}", lr=f"{last['lr']:.2e}", refresh=False)
                bar.update(1)
                if save_now or stop:
                    self._save(mngr, step, iterator)
                    last_saved = step
                    writer.flush()
                    self.draw_curves(writer.rows)
                if stop:
                    status = "interrupted"
                    break
        finally:
            bar.close()
            mngr.wait_until_finished()
            mngr.close()
            writer.close()
            for s, h in old_handlers.items():
                signal.signal(s, h)
        export_dir = None
        if status == "done" and cfg.train.export_at_end:
            export_dir = self.export()
        if self.is_main:
            msg = "finished" if status == "done" else f"stopped by {signal.Signals(self._stop_signal).name}"
            log.info("%s at step %d; checkpoint in %s%s", msg, step, self.workdir / "checkpoints",
                     f"; exported to {export_dir}" if export_dir else "")
        return TrainResult(step=step, status=status, metrics=last, export_dir=export_dir)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _progress(total: int, start: int, enabled: bool):
    return tqdm(total=total, initial=start, disable=not enabled, unit="step", dynamic_ncols=True,
                desc="train", smoothing=0.1)
