"""The demo (main job) end to end at toy size: corpus -> pretraining -> three probed representations -> leaderboard."""

from __future__ import annotations

import json

import pytest

from audiorep import demo


@pytest.mark.slow
def test_demo_runs_end_to_end_and_a_rerun_reuses_everything(tmp_path, capsys):
    plan = demo.DemoPlan(out_dir=tmp_path / "demo", minutes=0.01, per_class=6, seconds=1.0, fsdd=None,
                         grid="linear", progress=False)
    assert plan.steps == 50  # the floor: a run always trains a little
    rows = demo.run_demo(plan)
    assert sorted(r.model for r in rows) == ["demo-logmel", "demo-pretrained", "demo-random-init"]
    assert all(r.task == "synthetic" and 0.0 <= r.mean <= 1.0 for r in rows)
    out = capsys.readouterr().out
    assert "pretraining: step 50" in out and "synthetic: pretrained" in out and "vs best baseline" in out
    board = tmp_path / "demo" / "leaderboard"
    assert (board / "index.html").is_file() and (board / "leaderboard.md").is_file()
    assert (tmp_path / "demo" / "pretrain" / "export" / "audiorep_model.json").is_file()
    lines = (tmp_path / "demo" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["task"] == "synthetic"

    again = demo.run_demo(plan)  # corpus, training run and embeddings are reused; rows are appended
    out = capsys.readouterr().out
    assert "corpus: reusing" in out and "pretraining: step 50" in out
    assert [r.mean for r in again] == [r.mean for r in rows]
    assert len((tmp_path / "demo" / "results.jsonl").read_text().splitlines()) == 6


def _fake_fsdd(root, speakers=("ann", "bob", "cat", "dan", "eve", "fay"), takes=2):
    import numpy as np

    from audiorep.audio.io import save_audio

    rec = root / "recordings"
    rec.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for d in range(10):
        for s in speakers:
            for t in range(takes):
                save_audio(rec / f"{d}_{s}_{t}.wav", (0.1 * rng.standard_normal(4000)).astype(np.float32), 8000)
    return root


def test_pretraining_audio_holds_only_speakers_no_probed_fold_tests(tmp_path):
    fsdd = _fake_fsdd(tmp_path / "fsdd")
    syn = tmp_path / "demo" / "synthetic"
    syn.mkdir(parents=True)
    plan = demo.DemoPlan(out_dir=tmp_path / "demo", fsdd=fsdd, fsdd_folds=3, progress=False)
    tested = demo.fsdd_test_speakers(plan)
    assert len(tested) == 3
    root = demo.pretraining_audio(plan, syn)
    linked = sorted((root / "fsdd").iterdir())
    speakers = {p.name.split("_")[1] for p in linked}
    assert len(linked) == 3 * 10 * 2 and speakers.isdisjoint(tested) and len(speakers) == 3
    assert all(p.is_symlink() and p.resolve().parent == (fsdd / "recordings").resolve() for p in linked)
    assert (root / "synthetic").resolve() == syn.resolve()
    assert demo.pretraining_audio(plan, syn) == root  # a rerun reuses the same folder
    every = demo.DemoPlan(out_dir=tmp_path / "demo6", fsdd=fsdd, fsdd_folds=6, progress=False)
    assert demo.pretraining_audio(every, syn) == syn  # every speaker is tested once: synthetic audio only
    assert demo.pretraining_audio(demo.DemoPlan(out_dir=tmp_path / "x", fsdd=None), syn) == syn


def test_the_margin_over_a_baseline_is_compared_fold_by_fold():
    from audiorep.downstream.leaderboard import Result

    pre = Result(model="demo-pretrained", task="synthetic", metric="accuracy", mean=0.5, folds=[0.5, 0.6, 0.4])
    base = Result(model="demo-logmel", task="synthetic", metric="accuracy", mean=0.45, folds=[0.4, 0.5, 0.45])
    m = demo.paired_margin(pre, base)
    diff = [0.1, 0.1, -0.05]
    assert (m.wins, m.folds) == (2, 3) and m.mean == pytest.approx(sum(diff) / 3)
    mean = sum(diff) / 3
    assert m.stderr == pytest.approx((sum((d - mean) ** 2 for d in diff) / 2) ** 0.5 / 3 ** 0.5)
    assert m.describe().startswith("ahead on 2 of 3 folds, margin +0.050 ± 0.050 s.e.")
    assert "within fold noise" in m.describe()
    clear = demo.paired_margin(Result(model="p", task="t", metric="a", mean=0.6, folds=[0.6, 0.61, 0.62]),
                               Result(model="b", task="t", metric="a", mean=0.4, folds=[0.4, 0.4, 0.41]))
    assert clear.wins == 3 and "noise" not in clear.describe()
    with pytest.raises(ValueError, match="not scored on the same folds"):
        demo.paired_margin(pre, Result(model="b", task="synthetic", metric="a", mean=0.4, folds=[0.4]))


def test_the_demo_pretrains_with_the_recipe_of_configs_tiny_masked_tokens(tmp_path):
    from pathlib import Path

    from audiorep.pretrain import config as config_lib
    from audiorep.pretrain.trainer import with_defaults

    assert demo.recipe_path() == Path(__file__).resolve().parents[1] / "configs" / "tiny_masked_tokens.py"
    plan = demo.DemoPlan(out_dir=tmp_path, minutes=0.5, seed=3, progress=False)
    config = demo.demo_config(plan, tmp_path / "audio")
    recipe = with_defaults(config_lib.load_config(f"{demo.recipe_path()}:steps=600"))
    for section in ("model", "frontend", "objective", "optim"):
        assert config[section].to_dict() == recipe[section].to_dict(), section
    assert (config.train.steps, config.optim.warmup_steps, config.seed) == (600, 60, 3)
    assert (config.data.dataset, config.data.root, "synthetic" in config.data) == ("folder", str(tmp_path / "audio"),
                                                                                    False)
    assert config.frontend.config.level_db == -25.0 and config.objective.visible_mse_weight == 3.0
