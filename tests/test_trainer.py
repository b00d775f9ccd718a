"""The training loop: optimisation, checkpoints and exact resume, NaN guard, accumulation, logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from audiorep.pretrain import trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trainer_toy import ToyModel, toy_config, toy_data, toy_loss, toy_task  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "tests" / "trainer_toy.py"


def _rows(workdir: Path) -> list[dict]:
    rows = [json.loads(ln) for ln in (workdir / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("steps_per_s")
    return rows


def test_loss_falls_and_logs_are_written(tmp_path):
    res = trainer.Trainer(toy_config(steps=30), tmp_path, toy_task(), toy_data()).run()
    rows = _rows(tmp_path)
    assert [r["step"] for r in rows] == list(range(1, 31))
    assert np.mean([r["loss"] for r in rows[-5:]]) < 0.5 * np.mean([r["loss"] for r in rows[:5]])
    assert res.status == "done" and res.step == 30
    assert list(tmp_path.glob("events.out.tfevents.*"))
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [20, 25, 30]


def test_a_relative_workdir_is_taken_from_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # orbax refuses relative checkpoint paths; the trainer must not pass one
    res = trainer.Trainer(toy_config(steps=6, checkpoint_every=3), "runs/rel", toy_task(), toy_data()).run()
    assert res.status == "done"
    assert sorted(int(p.name) for p in (tmp_path / "runs/rel/checkpoints").iterdir() if p.name.isdigit()) == [3, 6]


def test_running_again_after_the_end_resumes_without_training(tmp_path):
    trainer.Trainer(toy_config(steps=10), tmp_path, toy_task(), toy_data()).run()
    before = _rows(tmp_path)
    res = trainer.Trainer(toy_config(steps=10), tmp_path, toy_task(), toy_data()).run()
    assert res.step == 10 and _rows(tmp_path) == before


def test_gradient_accumulation_matches_the_full_batch(tmp_path):
    a = trainer.Trainer(toy_config(steps=4, accum_steps=1), tmp_path / "a", toy_task(), toy_data())
    b = trainer.Trainer(toy_config(steps=4, accum_steps=4), tmp_path / "b", toy_task(), toy_data())
    # the toy loss adds rng noise per micro-batch; compare the noiseless gradient path via mse of step 1
    batch = next(toy_data()(0, 1, 8))
    gb = {k: jnp.asarray(v) for k, v in batch.items()}
    sa, ma = a._step(a.state, gb)
    sb, mb = b._step(b.state, gb)
    assert ma["grad_norm"] == pytest.approx(float(mb["grad_norm"]), rel=2e-2)
    assert ma["loss"] == pytest.approx(float(mb["loss"]), rel=1e-2)


def test_nan_guard_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    class Counted(ToyModel):
        def __init__(self, *, rngs):
            super().__init__(rngs=rngs)
            self.calls = nnx.Variable(jnp.zeros((), jnp.int32))

    def loss(model, batch, rng):
        value, metrics = toy_loss(model, batch, rng)
        model.calls[...] = model.calls[...] + 1
        return jnp.where(model.calls[...] >= 8, jnp.nan, value), metrics

    task = trainer.Task(model=Counted(rngs=nnx.Rngs(0)), loss=loss)
    tr = trainer.Trainer(toy_config(steps=20, checkpoint_every=5), tmp_path, task, toy_data())
    with pytest.raises(trainer.NonFiniteLossError, match="at step 8.*last good checkpoint is step 5") as err:
        tr.run()
    assert err.value.step == 8
    mngr = ocp.CheckpointManager(tmp_path / "checkpoints")
    assert mngr.all_steps() == [5]
    # the guarded state never took the NaN update
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tr.state["params"]))
    assert int(tr.state["step"]) == 7


def _flat(tree) -> dict[str, np.ndarray]:
    """{'blocks.0.kernel': float64 copy, ...} of a parameter tree (copies: the step donates its input state)."""
    return {jax.tree_util.keystr(path, simple=True, separator=".").removesuffix(".value"): np.array(v, np.float64)
            for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _toy_forward(p: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """ToyModel in float64 numpy: two tanh-GELU layers and a linear head.  f[B, DIM] -> f[B]."""
    h = x.astype(np.float64)
    for i in range(2):
        h = h @ p[f"blocks.{i}.kernel"] + p[f"blocks.{i}.bias"]
        h = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3)))
    return (h @ p["head.kernel"] + p["head.bias"])[:, 0]


def _one_step(tmp_path: Path, *, compute_dtype: str = "float32", **optim):
    """(params before, state after, metrics) of one trainer step of a noiseless MSE task on the first toy batch."""
    def mse(model, batch, rng):
        del rng
        return jnp.mean((model(batch["x"]).astype(jnp.float32) - batch["y"]) ** 2), {}

    cfg = toy_config(steps=10, compute_dtype=compute_dtype)
    cfg.optim.update(dict(schedule="constant", warmup_steps=0, weight_decay=0.0, **optim))
    tr = trainer.Trainer(cfg, tmp_path, trainer.Task(model=ToyModel(rngs=nnx.Rngs(0)), loss=mse, num_layers=2),
                         toy_data())
    batch = {k: jnp.asarray(v) for k, v in next(toy_data()(0, 1, 8)).items()}
    before = _flat(tr.state["params"])
    after, metrics = tr._step(tr.state, batch)
    return before, after, metrics, {k: np.asarray(v) for k, v in batch.items()}


def test_layer_decay_scales_each_layers_update_by_decay_to_its_distance_from_the_top(tmp_path):
    p0, plain, _, _ = _one_step(tmp_path / "a")
    _, decayed, _, _ = _one_step(tmp_path / "b", layer_decay=0.5)
    plain, decayed = _flat(plain["params"]), _flat(decayed["params"])
    scale = {"blocks.0": 0.25, "blocks.1": 0.5, "head": 1.0}  # 2 layers: 0.5 ** 2, 0.5 ** 1, 0.5 ** 0
    assert sorted(p0) == sorted(f"{layer}.{w}" for layer in scale for w in ("bias", "kernel"))
    for name, start in p0.items():
        step = plain[name] - start
        assert np.abs(step).max() > 1e-3, name  # lr 1e-2: Adam's first step moves every parameter
        np.testing.assert_allclose(decayed[name] - start, scale[name.rsplit(".", 1)[0]] * step, rtol=1e-3,
                                   atol=1e-7, err_msg=name)


def test_bf16_compute_runs_the_forward_on_rounded_weights_and_updates_fp32_master_weights(tmp_path):
    import ml_dtypes

    p0, state, metrics, batch = _one_step(tmp_path, compute_dtype="bfloat16")
    rounded = {k: v.astype(np.float32).astype(ml_dtypes.bfloat16).astype(np.float64) for k, v in p0.items()}
    loss_bf16 = np.mean((_toy_forward(rounded, batch["x"]) - batch["y"]) ** 2)
    loss_fp32 = np.mean((_toy_forward(p0, batch["x"]) - batch["y"]) ** 2)
    assert abs(loss_bf16 - loss_fp32) > 1e-4 * loss_fp32  # the rounding is visible in the loss
    assert float(metrics["loss"]) == pytest.approx(loss_bf16, rel=1e-5)
    new = jax.tree.leaves(state["params"])
    assert all(p.dtype == jnp.float32 for p in new)
    # the master weights keep fp32 precision: the step's small updates are not rounded to bf16
    flat = np.concatenate([np.asarray(p).ravel() for p in new])
    assert np.mean(flat != flat.astype(ml_dtypes.bfloat16).astype(np.float32)) > 0.9


def test_fp32_compute_runs_the_forward_on_the_weights_as_they_are(tmp_path):
    p0, _, metrics, batch = _one_step(tmp_path)
    assert float(metrics["loss"]) == pytest.approx(np.mean((_toy_forward(p0, batch["x"]) - batch["y"]) ** 2),
                                                   rel=1e-5)


def test_ema_after_a_step_is_the_decayed_mix_of_the_old_and_new_params(tmp_path):
    p0, state, _, _ = _one_step(tmp_path, ema_decay=0.9)
    p1, ema = _flat(state["params"]), _flat(state["ema"])
    for name in p0:
        assert np.abs(p1[name] - p0[name]).max() > 1e-3, name
        np.testing.assert_allclose(ema[name], 0.9 * p0[name] + 0.1 * p1[name], rtol=1e-6, atol=1e-7, err_msg=name)


def test_bf16_remat_ema_and_layer_decay_together_train(tmp_path):
    cfg = toy_config(steps=30, compute_dtype="bfloat16", remat="dots")
    cfg.optim.update(dict(ema_decay=0.9, layer_decay=0.5))
    trainer.Trainer(cfg, tmp_path, toy_task(), toy_data()).run()
    rows = _rows(tmp_path)
    assert np.mean([r["loss"] for r in rows[-5:]]) < 0.5 * np.mean([r["loss"] for r in rows[:5]])


def test_layer_scales_follow_depth():
    model = ToyModel(rngs=nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    scales = trainer.layer_scales(params, num_layers=2, decay=0.5)
    flat = {trainer._path_str(p): float(v) for p, v in jax.tree_util.tree_flatten_with_path(scales)[0]}
    assert flat["blocks.0.kernel"] == pytest.approx(0.25)
    assert flat["blocks.1.kernel"] == pytest.approx(0.5)
    assert flat["head.kernel"] == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["cosine", "constant", "ssast", "passt"])
def test_schedules_warm_up_from_zero_to_the_peak(name):
    optim = trainer.default_train_config().optim
    optim.update(dict(schedule=name, lr=1.0, warmup_steps=10, rampdown_start=50, rampdown_steps=20))
    sched = trainer.make_schedule(optim, 100)
    assert float(sched(0)) < 0.01
    assert float(sched(10)) == pytest.approx(1.0, rel=1e-3)
    if name == "passt":
        assert float(sched(70)) == pytest.approx(0.01, rel=1e-3)
    if name == "cosine":
        assert float(sched(100)) == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------------ kill -9 and restart
def _start(workdir: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.Popen([sys.executable, str(TOY), str(workdir), *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(p: subprocess.Popen) -> str:
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out[-3000:]
    return out


CMD = ("--config.train.steps=15", "--config.train.checkpoint_every=5")


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory) -> list[dict]:
    """metrics of an uninterrupted run of CMD (shared by the kill tests)."""
    workdir = tmp_path_factory.mktemp("straight")
    _finish(_start(workdir, *CMD))
    return _rows(workdir)


def _read_until(p: subprocess.Popen, marker: str) -> str:
    """Lines of p's output up to and including the first one that holds `marker` (which must come)."""
    lines = []
    for line in p.stdout:
        lines.append(line)
        if marker in line:
            return "".join(lines)
    raise AssertionError(f"the run ended without printing {marker!r}:\n" + "".join(lines)[-3000:])


@pytest.mark.slow
def test_resume_after_kill_replays_the_same_batches_and_losses(tmp_path, straight_run):
    # synchronous saves: checkpoint 5 is committed before step 6 starts; the run pauses after step 8
    p = _start(tmp_path, *CMD, "--config.train.async_checkpoints=false", "--pause-at-step=8")
    _read_until(p, "PAUSED step=8")
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert [r["step"] for r in _rows(tmp_path)] == list(range(1, 9))  # rows 6-8 outlive their checkpoint
    assert ocp.CheckpointManager(tmp_path / "checkpoints").all_steps() == [5]
    out = _finish(_start(tmp_path, *CMD))
    assert "step=15 status=done" in out
    assert _rows(tmp_path) == straight_run


@pytest.mark.slow
def test_kill_during_a_checkpoint_write_leaves_the_previous_checkpoint_loadable(tmp_path, straight_run):
    p = _start(tmp_path, *CMD, "--hang-save=2")  # the second save (step 10) never completes
    _read_until(p, "SAVING")
    p.send_signal(signal.SIGKILL)
    p.wait()
    mngr = ocp.CheckpointManager(tmp_path / "checkpoints")
    assert mngr.latest_step() == 5
    out = _finish(_start(tmp_path, *CMD))
    assert "step=15 status=done" in out
    assert _rows(tmp_path) == straight_run


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_then_exits(tmp_path):
    p = _start(tmp_path, "--config.train.steps=400", "--config.train.checkpoint_every=1000", "--pause-at-step=3")
    _read_until(p, "PAUSED step=3")
    p.send_signal(signal.SIGTERM)
    out = _finish(p)
    assert "DONE step=4 status=interrupted" in out  # the step in flight when the signal came, then the save
    assert ocp.CheckpointManager(tmp_path / "checkpoints").all_steps() == [4]
    assert [r["step"] for r in _rows(tmp_path)] == [1, 2, 3, 4]
