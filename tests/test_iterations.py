"""BEATs-style iterations: iteration k > 1 learns k-means codes of encoder k-1; reruns resume, never retrain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audiorep import cli
from audiorep.pretrain import config as config_lib
from audiorep.pretrain import iterations, trainer

ROOT = Path(__file__).resolve().parents[1]


def _config(tmp_path: Path, *overrides: str):
    cfg = trainer.with_defaults(config_lib.load_config(str(ROOT / "configs" / "tiny_masked_tokens.py")))
    config_lib.apply_overrides(cfg, [f"data.root={tmp_path / 'syn'}", "data.synthetic.per_class=4",
                                     "train.progress=false", "train.log_every=1", *overrides])
    return cfg


def test_iteration_fields_are_checked_with_a_clear_error(tmp_path):
    cfg = _config(tmp_path, "iterations.count=2", "iterations.steps=10,20,30")
    with pytest.raises(ValueError, match=r"give 2 positive step counts"):
        iterations.check(cfg)
    cfg.iterations.steps = ()
    assert iterations.check(cfg) == 2
    cfg.objective.name = "mspm"
    with pytest.raises(ValueError, match="only masked token prediction"):
        iterations.check(cfg)
    cfg.iterations.count = 0
    with pytest.raises(ValueError, match="iterations.count=0"):
        iterations.check(cfg)
    second = iterations.iteration_config(_config(tmp_path, "iterations.count=2", "iterations.steps=10,20",
                                                 "iterations.codebook_size=64"), 2, "/runs/iter1/export")
    assert (second.train.steps, second.objective.tokenizer, second.objective.teacher,
            second.objective.codebook_size) == (20, "teacher", "/runs/iter1/export", 64)
    with pytest.raises(ValueError, match="exported nothing"):
        iterations.iteration_config(second, 2, None)
    assert str(iterations.iteration_dir("gs://bucket/run", 2)) == "gs://bucket/run/iter2"  # pods train on gs://


@pytest.mark.slow
def test_two_iterations_through_the_cli_then_a_rerun_trains_nothing(tmp_path, capsys):
    work = tmp_path / "w"
    argv = ["pretrain", "--config", str(ROOT / "configs" / "tiny_masked_tokens.py"), "--workdir", str(work),
            f"--config.data.root={tmp_path / 'syn'}", "--config.data.synthetic.per_class=4",
            "--config.train.progress=false", "--config.train.log_every=1", "--config.optim.warmup_steps=2",
            "--config.iterations.count=2", "--config.iterations.steps=12,8", "--config.iterations.codebook_size=32",
            "--config.iterations.init_from_teacher=true", "--config.objective.kmeans_batches=2"]
    assert cli.main(argv) == 0
    assert f"encoder exported to {work / 'iter2' / 'export'}" in capsys.readouterr().out
    from audiorep.models import model_dir

    meta = model_dir.load_model_dir(work / "iter2" / "export").meta
    assert meta["steps"] == 8 and meta["objective"]["tokenizer"] == "teacher"
    assert meta["objective"]["teacher"] == str(work / "iter1" / "export") and meta["objective"]["codebook_size"] == 32
    assert model_dir.load_model_dir(work / "iter1" / "export").meta["objective"]["tokenizer"] == "random_projection"
    lines = [len((work / f"iter{k}" / "metrics.jsonl").read_text().splitlines()) for k in (1, 2)]
    assert lines == [12, 8]
    assert json.loads((work / "iter2" / "metrics.jsonl").read_text().splitlines()[0])["codes_used"] > 0
    assert cli.main(argv) == 0  # both iterations are at their last step: nothing is trained again
    assert [len((work / f"iter{k}" / "metrics.jsonl").read_text().splitlines()) for k in (1, 2)] == lines
    assert cli.main([*argv, "--export-only", "--export-dir", str(tmp_path / "again")]) == 0
    assert model_dir.load_model_dir(tmp_path / "again").meta["objective"]["tokenizer"] == "teacher"
