"""Resuming from checkpoints that are damaged or of another model; training curves drawn at each checkpoint."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import ml_collections
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from audiorep.pretrain import curves, trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trainer_toy import ToyModel, toy_config, toy_data, toy_export, toy_loss, toy_task  # noqa: E402


def _rows(workdir: Path) -> list[dict]:
    rows = [json.loads(ln) for ln in (workdir / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("steps_per_s")
    return rows


def _run(workdir: Path, steps: int, **train) -> trainer.TrainResult:
    cfg = toy_config(steps=steps, checkpoint_every=5, **train)
    cfg.optim.schedule = "constant"  # the learning rate of a step does not depend on the run's length
    return trainer.Trainer(cfg, workdir, toy_task(), toy_data()).run()


def _truncate_largest_array_file(step_dir: Path) -> Path:
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    victim = max(files, key=lambda p: p.stat().st_size)
    with open(victim, "r+b") as f:
        f.truncate(victim.stat().st_size // 3)
    return victim


def test_a_truncated_latest_checkpoint_falls_back_to_the_newest_intact_one_and_is_kept_aside(tmp_path, caplog):
    straight = tmp_path / "straight"
    _run(straight, 15)
    work = tmp_path / "w"
    _run(work, 10)
    victim = _truncate_largest_array_file(work / "checkpoints" / "10")
    size = victim.stat().st_size
    with caplog.at_level(logging.WARNING, logger="audiorep.pretrain.trainer"):
        res = _run(work, 15)
    assert res.step == 15 and res.status == "done"
    warning = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert len(warning) == 1 and "checkpoint of step 10" in warning[0]
    assert f"moved it to {work / 'damaged' / '10'}" in warning[0] and "resuming from step 5" in warning[0]
    kept = work / "damaged" / "10" / victim.relative_to(work / "checkpoints" / "10")
    assert kept.stat().st_size == size  # moved aside as it was, never deleted
    assert _rows(work) == _rows(straight)  # steps 6..15 were trained again from step 5, exactly


def test_when_every_checkpoint_is_damaged_the_run_stops_instead_of_starting_over(tmp_path):
    _run(tmp_path, 5)
    before = (tmp_path / "metrics.jsonl").read_text()
    _truncate_largest_array_file(tmp_path / "checkpoints" / "5")
    with pytest.raises(trainer.TrainError, match=r"every checkpoint in .* is damaged \(steps 5, moved to .*damaged"):
        _run(tmp_path, 10)
    assert (tmp_path / "damaged" / "5" / "state").is_dir()
    assert (tmp_path / "metrics.jsonl").read_text() == before  # the run's logs are left as they were


def test_export_of_a_run_whose_latest_checkpoint_is_damaged_uses_the_newest_intact_one(tmp_path):
    _run(tmp_path, 10)
    _truncate_largest_array_file(tmp_path / "checkpoints" / "10")
    tr = trainer.Trainer(toy_config(steps=10), tmp_path, toy_task(seed=1), toy_data())
    assert tr.restore_latest() == 5
    assert trainer.Trainer.checkpoint_steps(tmp_path) == [5]


def test_resuming_with_another_model_is_refused_naming_the_config_that_differs(tmp_path):
    def config(preset: str) -> ml_collections.ConfigDict:
        c = toy_config(steps=10, checkpoint_every=5)
        c.model = ml_collections.ConfigDict(dict(preset=preset))
        return c

    trainer.Trainer(config("toy-64"), tmp_path, toy_task(), toy_data()).run()
    wider = trainer.Task(model=ToyModel(hidden=32, rngs=nnx.Rngs(0)), loss=toy_loss, export=toy_export,
                         num_layers=2)
    with pytest.raises(trainer.TrainError) as err:
        trainer.Trainer(config("toy-32"), tmp_path, wider, toy_data()).run()
    message = str(err.value)
    assert f"{tmp_path} holds a run of another model" in message
    assert "model.preset='toy-64' (here 'toy-32')" in message
    assert "Resume with the config that started the run, or pass a new --workdir" in message
    assert trainer.Trainer.checkpoint_steps(tmp_path) == [5, 10]  # its checkpoints are untouched


def test_resuming_logs_no_warning_about_steps_missing_for_deletion(tmp_path, caplog):
    _run(tmp_path, 10, keep_checkpoints=2)
    with caplog.at_level(logging.INFO):
        _run(tmp_path, 25, keep_checkpoints=2)
    assert trainer.Trainer.checkpoint_steps(tmp_path) == [20, 25]
    noisy = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [m for m in noisy if "deletion" in m], noisy


# ------------------------------------------------------------------------------------------- curves
def test_training_curves_are_drawn_at_each_checkpoint_with_loss_lr_and_the_objectives_metrics(tmp_path):
    _run(tmp_path, 5)
    png = tmp_path / curves.CURVES_FILE
    assert curves.read_panels(png) == ["loss", "lr", "grad_norm", "batch_fingerprint", "mse"]
    first = png.read_bytes()
    _run(tmp_path, 10)  # redrawn at the next checkpoint, with the new steps
    assert png.read_bytes() != first
    with Image.open(png) as im:
        pixels = np.asarray(im.convert("L"), np.float32)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 600 and pixels.std() > 5  # drawn, not blank
    assert not list(tmp_path.glob(".curves.png.tmp*"))  # written atomically: no temp file left


def test_the_export_carries_the_runs_training_curves(tmp_path):
    res = trainer.Trainer(toy_config(steps=10, checkpoint_every=5, export_at_end=True), tmp_path, toy_task(),
                          toy_data()).run()
    exported = Path(res.export_dir) / curves.EXPORTED_CURVES_FILE
    assert exported.read_bytes() == (tmp_path / curves.CURVES_FILE).read_bytes()
    assert (Path(res.export_dir) / "params.npz").is_file()


def test_curves_leave_out_non_finite_values_and_bookkeeping(tmp_path):
    rows = [{"step": 1, "loss": 2.0, "lr": 0.0, "acc": 0.1, "steps_per_s": 9.0},
            {"step": 2, "loss": float("nan"), "lr": 1e-3, "acc": 0.2, "steps_per_s": 9.0}]
    assert curves.draw_curves(rows, tmp_path / "c.png") == ["loss", "lr", "acc"]
    assert curves.read_panels(tmp_path / "c.png") == ["loss", "lr", "acc"]
