"""A tiny self-contained task for the trainer tests: a 2-block MLP regressing a fixed random target.

Importable (tests build `Task`s from it) and runnable as a script, so subprocess tests (kill/resume,
multi-process, sharding) run the same command twice:

  python tests/trainer_toy.py WORKDIR [--config.train.steps=40 ...] [--slow-data=0.05] [--slow-save=5]
"""

from __future__ import annotations

import sys
import time
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


def toy_data(seed: int = 0, slow: float = 0.0):
    rng = np.random.default_rng(1234)
    xs = rng.normal(size=(N_EXAMPLES, DIM)).astype(np.float32)
    w = rng.normal(size=(DIM,)).astype(np.float32)
    ys = np.tanh(xs @ w).astype(np.float32)

    def make_iterator(pid: int, pcount: int, local_batch: int):
        def get(i):
            if slow:
                time.sleep(slow)
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


def main(argv: list[str]) -> int:
    workdir = argv[0]
    rest, overrides = config_lib.split_overrides(argv[1:])
    slow_data = slow_save = 0.0
    for a in rest:
        if a.startswith("--slow-data="):
            slow_data = float(a.split("=", 1)[1])
        elif a.startswith("--slow-save="):
            slow_save = float(a.split("=", 1)[1])
    if slow_save:  # stretch the checkpoint write so a test can kill the process in the middle of it
        from grain import checkpoint as gck

        orig = gck.CheckpointHandler.save

        def slow(self, directory, item=None, args=None):
            orig(self, directory, item=item, args=args)
            print(f"SAVING {directory}", flush=True)
            time.sleep(slow_save)

        gck.CheckpointHandler.save = slow
    cfg = toy_config()
    config_lib.apply_overrides(cfg, overrides)
    distributed.initialize(cfg.distributed.to_dict())
    tr = trainer.Trainer(cfg, workdir, toy_task(cfg.seed), toy_data(cfg.seed, slow_data))
    result = tr.run()
    # the whole parameters as this process sees them (gathered when sharded across processes)
    checksum = params_checksum(trainer.host_value(x) for x in jax.tree.leaves(tr.state["params"]))
    print(f"DONE step={result.step} status={result.status} loss={result.metrics.get('loss')} "
          f"params={checksum!r}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
