"""Mesh, sharding rules, and training across devices and processes (subprocesses: device count is fixed at JAX init)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from processes import free_port, run_together

from audiorep.pretrain import distributed

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "tests" / "trainer_toy.py"
sys.path.insert(0, str(TOY.parent))
from trainer_toy import params_checksum  # noqa: E402


def _env(devices: int) -> dict[str, str]:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{ROOT / 'tests'}"
    env.pop("JAX_PLATFORMS", None)
    env["JAX_PLATFORMS"] = "cpu"
    return env


def test_leaf_spec_shards_the_largest_divisible_dimension():
    assert distributed.leaf_spec((64, 3 * 256), 2) == distributed.P(None, "fsdp")
    assert distributed.leaf_spec((768, 3), 2) == distributed.P("fsdp", None)
    assert distributed.leaf_spec((33, 65), 2) == distributed.P()  # nothing divisible
    assert distributed.leaf_spec((4096,), 1) == distributed.P()  # fsdp == 1: replicated
    assert distributed.leaf_spec((8,), 2) == distributed.P()  # too small to be worth it


def test_mesh_rejects_an_fsdp_that_does_not_divide_the_devices():
    with pytest.raises(ValueError, match="must divide the device count"):
        distributed.make_mesh(data=-1, fsdp=3)


def test_explicit_initialize_names_the_missing_flags():
    with pytest.raises(ValueError, match="num_processes, process_id"):
        distributed.initialize(dict(coordinator_address="127.0.0.1:1234"))


SHARDED_VS_SINGLE = textwrap.dedent("""
    import jax, numpy as np
    from audiorep.pretrain import distributed, trainer
    from trainer_toy import toy_config, toy_data, toy_task
    assert jax.device_count() == 8
    out = {}
    for name, mesh in [("sharded", distributed.make_mesh(4, 2)),
                       ("single", distributed.make_mesh(1, 1, devices=jax.devices()[:1]))]:
        cfg = toy_config(steps=6, checkpoint_every=100, accum_steps=1)
        tr = trainer.Trainer(cfg, WORKDIR + "/" + name, toy_task(0), toy_data(0), mesh=mesh)
        res = tr.run()
        specs = {str(x.sharding.spec) for x in jax.tree.leaves(tr.state["params"])}
        out[name] = (res.metrics["loss"], jax.device_get(tr.state["params"]), specs)
    assert any("fsdp" in s for s in out["sharded"][2]), out["sharded"][2]
    np.testing.assert_allclose(out["sharded"][0], out["single"][0], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(out["sharded"][1]), jax.tree.leaves(out["single"][1])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    print("OK", out["sharded"][0], out["single"][0])
""")


@pytest.mark.slow
def test_sharded_step_on_8_devices_matches_one_device(tmp_path):
    code = f"WORKDIR = {str(tmp_path)!r}\n" + SHARDED_VS_SINGLE
    proc = subprocess.run([sys.executable, "-c", code], env=_env(8), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "OK" in proc.stdout


@pytest.mark.slow
def test_two_processes_train_together_agree_on_parameters_and_export(tmp_path):
    port = free_port()
    outs = run_together(
        [[sys.executable, str(TOY), str(tmp_path / "run"), "--config.train.steps=12",
          f"--config.distributed.coordinator_address=127.0.0.1:{port}", "--config.distributed.num_processes=2",
          f"--config.distributed.process_id={i}", "--config.mesh.fsdp=2", "--config.train.export_at_end=True"]
         for i in range(2)], _env(2), "DONE")
    assert "step=12 status=done" in outs[0]
    assert outs[0] == outs[1]  # same loss and the same parameter checksum on both processes
    assert (tmp_path / "run" / "checkpoints" / "12").is_dir()
    # process 0 exported the whole (fsdp-sharded, gathered) parameters
    with np.load(tmp_path / "run" / "export" / "params.npz", allow_pickle=False) as z:
        exported = params_checksum(z[f"arr_{i}"] for i in range(len(z.files)))
    assert f"params={exported!r}" in outs[0]
