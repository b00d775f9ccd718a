"""A tiny self-contained task for the trainer tests: a 2-block MLP regressing a fixed random target.

Importable (tests build `Task`s from it) and runnable as a script, so subprocess tests (kill/resume,
multi-process, sharding) run the same command twice:

  python tests/trainer_toy.py WORKDIR [--config.train.steps=40 ...] [--pause-at-step=N] [--hang-save=K]

`--pause-at-step=N` and `--hang-save=K` put the run at a known point for a test to act on (kill it, signal it)
without timing assumptions; see `pause_before_step` and `hang_grain_save`.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from pathlib import Path

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiorep.pretrain import config as config_lib  # noqa: E402
from audiorep.pretrain import distributed, trainer  # noqa: E402

DIM = 16
N_EXAMPLES = 64


class ToyModel(nnx.Module):
    def __init__(self, din: int = DIM, hidden: int = 64, *, rngs: nnx.Rngs):
        self.blocks = nnx.List([nnx.Linear(din, hidden, rngs=rngs), nnx.Linear(hidden, hidden, rngs=rngs)])
        self.head = nnx.Linear(hidden, 1, rngs=rngs)

    def __call__(self, x):
        for b in self.blocks:
            x = nnx.gelu(b(x))
        return self.head(x)[..., 0]


def toy_loss(model, batch, rng):
    """MSE to the target plus a little noise from `rng` (so the PRNG stream matters for exactness)."""
    x = batch["x"] + 0.01 * jax.random.normal(rng, batch["x"].shape, batch["x"].dtype)
    pred = model(x).astype(jnp.float32)
    loss = jnp.mean((pred - batch["y"]) ** 2)
    order = jnp.arange(1, batch["x"].shape[0] + 1)[:, None]  # fingerprint sees the order of rows too
    return loss, {"mse": loss, "batch_fingerprint": jnp.sum(batch["x"] * order)}


def toy_data(seed: int = 0):
    rng = np.random.default_rng(1234)
    xs = rng.normal(size=(N_EXAMPLES, DIM)).astype(np.float32)
    w = rng.normal(size=(DIM,)).astype(np.float32)
    ys = np.tanh(xs @ w).astype(np.float32)

    def make_iterator(pid: int, pcount: int, local_batch: int):
        def get(i):
            return {"x": xs[i], "y": ys[i]}

        ds = grain.MapDataset.range(N_EXAMPLES)[pid::pcount].shuffle(seed=seed).repeat(None).map(get)
        return iter(ds.batch(local_batch, drop_remainder=True).to_iter_dataset())

    return make_iterator


def toy_export(model, path: str) -> None:
    """Writes the parameters (flattened, in tree order) to PATH/params.npz."""
    Path(path).mkdir(parents=True, exist_ok=True)
    leaves = [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]
    np.savez(Path(path) / "params.npz", *leaves)


def params_checksum(leaves) -> float:
    """One number that changes with any parameter value (position-weighted sum)."""
    vals = [np.asarray(v, np.float64) for v in leaves]
    return sum(float(np.sum(v * np.arange(1, v.size + 1).reshape(v.shape))) for v in vals)


def toy_task(seed: int = 0) -> trainer.Task:
    return trainer.Task(model=ToyModel(rngs=nnx.Rngs(seed)), loss=toy_loss, export=toy_export, num_layers=2,
                        name="toy")


def toy_config(**train) -> ml_collections.ConfigDict:
    c = trainer.default_train_config()
    c.train.update(dict(steps=20, batch_size=8, log_every=1, checkpoint_every=5, progress=False,
                        export_at_end=False), **{})
    c.train.update(train)
    c.optim.update(dict(lr=1e-2, warmup_steps=2, weight_decay=0.01))
    return c


def die_with_parent() -> None:
    """Linux: have the kernel kill this process when its parent (the test) dies, so a run a test paused or hung on
    purpose is never left behind when the test itself is stopped."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


def wait_for_stop_signal(message: str) -> None:
    """Print `message`, then wait until the process receives SIGTERM or SIGINT (whichever thread the kernel hands
    it to); the trainer's own handler then runs as usual. A signal that arrives between the print and the wait is
    not lost: Python's C-level handler writes its number to the wakeup pipe, which the wait reads. Main thread only.
    """
    die_with_parent()
    r, w = os.pipe()
    os.set_blocking(w, False)
    old = signal.set_wakeup_fd(w)
    try:
        print(message, flush=True)
        while os.read(r, 1)[0] not in (signal.SIGTERM, signal.SIGINT):
            pass
    finally:
        signal.set_wakeup_fd(old)
        os.close(r)
        os.close(w)


def pause_before_step(steps: int) -> None:
    """After this process has run `steps` training steps, print `PAUSED step=<steps>` and wait for SIGTERM/SIGINT.

    Everything of those steps is done by then (metrics rows written, synchronous checkpoints committed): a test
    reads the line, then kills or signals the process at a known step. Works on any run in this process (the toy
    or `audiorep pretrain`): it wraps `distributed.global_batch`, which the trainer's loop calls in the main
    thread once per step, just before the step.
    """
    real = distributed.global_batch
    drawn = 0

    def counted(local, mesh, global_batch_size):
        nonlocal drawn
        drawn += 1
        if drawn == steps + 1:
            wait_for_stop_signal(f"PAUSED step={steps}")
        return real(local, mesh, global_batch_size)

    distributed.global_batch = counted


def hang_grain_save(nth: int) -> None:
    """The `nth` data-iterator save of this process writes its file, prints `SAVING <dir>` and never returns, so
    that checkpoint is never committed: a test kills the process in the middle of that checkpoint write."""
    from grain import checkpoint as gck

    orig = gck.CheckpointHandler.save
    calls = 0

    def save(self, directory, item=None, args=None):
        nonlocal calls
        orig(self, directory, item=item, args=args)
        calls += 1
        if calls == nth:
            die_with_parent()
            print(f"SAVING {directory}", flush=True)
            threading.Event().wait()  # until the test kills the process

    gck.CheckpointHandler.save = save


def main(argv: list[str]) -> int:
    workdir = argv[0]
    rest, overrides = config_lib.split_overrides(argv[1:])
    for a in rest:
        name, _, value = a.partition("=")
        if name == "--pause-at-step":
            pause_before_step(int(value))
        elif name == "--hang-save":
            hang_grain_save(int(value))
        else:
            raise SystemExit(f"unknown argument {a!r}")
    cfg = toy_config()
    config_lib.apply_overrides(cfg, overrides)
    distributed.initialize(cfg.distributed.to_dict())
    tr = trainer.Trainer(cfg, workdir, toy_task(cfg.seed), toy_data(cfg.seed))
    result = tr.run()
    # the whole parameters as this process sees them (gathered when sharded across processes)
    checksum = params_checksum(trainer.host_value(x) for x in jax.tree.leaves(tr.state["params"]))
    print(f"DONE step={result.step} status={result.status} loss={result.metrics.get('loss')} "
          f"params={checksum!r}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
