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
