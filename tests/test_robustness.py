"""`audiorep robustness`: corruption x severity sweeps of clean-trained probes, their cache, state and outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_tasks import ToneEmbedder, make_fsdd
from test_tasks_detection import DETECTION_LAYOUTS

from audiorep.audio import corruptions as C
from audiorep.cli import main
from audiorep.downstream import probes as P
from audiorep.downstream import robustness as R
from audiorep.downstream import tasks as T
from audiorep.downstream.cache import EmbeddingCache, load_clip
from audiorep.downstream.leaderboard import append_result, read_results, write_leaderboard

GRID = P.make_grid("linear", 0, max_epochs=30)  # one shape: one compile
CORRUPT = ["white_noise", "low_pass"]


class CountingEmbedder(ToneEmbedder):
    """ToneEmbedder that counts the clips it embeds (what the cache did not serve)."""

    def __init__(self, name="tone-features"):
        self.name, self.clips = name, 0

    def cache_spec(self):
        return super().cache_spec() | {"model": self.name}

    def scene(self, clips):
        self.clips += len(clips)
        return super().scene(clips)


@pytest.fixture(scope="module")
def fsdd(tmp_path_factory):
    return make_fsdd(tmp_path_factory.mktemp("fsdd"))


def _sweep(root, tmp_path, embedder=None, **kw):
    kw = {"corruptions": CORRUPT, "severities": (1, 5), "grid": GRID, "max_folds": 2, "progress": False,
          "out_dir": tmp_path / "out"} | kw
    return R.sweep("fsdd", embedder or CountingEmbedder(), root, EmbeddingCache(tmp_path / "cache"), **kw)


def test_a_cell_equals_the_clean_probe_on_hand_corrupted_embeddings(fsdd, tmp_path):
    emb = CountingEmbedder()
    rob = _sweep(fsdd, tmp_path, emb).result.extra["robustness"]
    spec = T.get_task("fsdd")
    index = spec.read(fsdd)
    split = spec.splits(index, 0)[1]

    def x(records, corrupt=False):
        clips = [load_clip(r, emb.sample_rate) for r in records]
        if corrupt:
            clips = [C.corrupt(c, emb.sample_rate, "low_pass", 5, seed=R.clip_seed(0, r.key))
                     for c, r in zip(clips, records)]
        return emb.scene(clips)

    y = [np.array([r.labels[0] for r in part], np.int32) for part in (split.train, split.validation, split.test)]
    by_hand = P.fit_probe(x(split.train), y[0], x(split.validation), y[1], x(split.test, corrupt=True), y[2],
                          num_classes=len(index.classes), grid=GRID)
    folds = json.loads(open(rob["state"]).read())["cells"]["low_pass@5"]["folds"]
    assert folds[1] == pytest.approx(by_hand.test["accuracy"], abs=1e-6)
    assert rob["table"]["low_pass"]["values"]["5"] < rob["clean"]  # 800 Hz low-pass removes the 900 Hz digit


def test_the_clean_column_is_what_audiorep_probe_scores(fsdd, tmp_path):
    result = _sweep(fsdd, tmp_path).result
    probe = T.run("fsdd", CountingEmbedder(), fsdd, EmbeddingCache(tmp_path / "cache"), grid=GRID, max_folds=2,
                  progress=False)
    assert result.extra["robustness"]["clean_folds"] == pytest.approx(probe.folds, abs=1e-6)
    assert result.task == "fsdd@robustness" and result.scores["clean"] == pytest.approx(probe.mean, abs=1e-6)


def test_a_rerun_computes_nothing_and_a_fresh_state_reuses_the_cached_corrupted_embeddings(fsdd, tmp_path):
    first = _sweep(fsdd, tmp_path, CountingEmbedder())
    again = CountingEmbedder()
    rerun = _sweep(fsdd, tmp_path, again)
    assert rerun.computed == 0 and again.clips == 0
    assert rerun.result.extra["robustness"]["table"] == first.result.extra["robustness"]["table"]
    fresh = CountingEmbedder()
    other_state = _sweep(fsdd, tmp_path, fresh, out_dir=tmp_path / "elsewhere")
    assert other_state.computed == 4 and fresh.clips == 0  # every cell rescored from the embedding cache
    assert other_state.result.mean == pytest.approx(first.result.mean, abs=1e-6)


def test_another_model_or_seed_reuses_no_corrupted_embedding(fsdd, tmp_path):
    first = CountingEmbedder()
    _sweep(fsdd, tmp_path, first)
    other = CountingEmbedder("another-model")
    _sweep(fsdd, tmp_path, other)
    assert other.clips == first.clips > 0
    reseeded = CountingEmbedder()
    _sweep(fsdd, tmp_path, reseeded, seed=1)
    assert reseeded.clips > 0
    keys = {e["spec"].get("transform") for e in EmbeddingCache(tmp_path / "cache").entries()}
    assert {k.split("|")[0].rsplit("-", 1)[0] for k in keys if k} == {
        f"{n}-s{s}-seed{seed}" for n in CORRUPT for s in (1, 5) for seed in (0, 1)}


def test_a_killed_sweep_resumes_at_the_first_missing_cell(fsdd, tmp_path, monkeypatch):
    whole = _sweep(fsdd, tmp_path / "whole", CountingEmbedder())
    real = C.corrupt

    def failing(audio, rate, name, severity, **kw):
        if (name, severity) == ("low_pass", 1):
            raise KeyboardInterrupt  # the sweep is killed during its third cell
        return real(audio, rate, name, severity, **kw)

    monkeypatch.setattr(C, "corrupt", failing)
    with pytest.raises(KeyboardInterrupt):
        _sweep(fsdd, tmp_path, CountingEmbedder())
    state = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert sorted(state["cells"]) == ["white_noise@1", "white_noise@5"]
    monkeypatch.setattr(C, "corrupt", real)
    resumed = _sweep(fsdd, tmp_path, CountingEmbedder())
    assert resumed.computed == 2
    assert resumed.result.extra["robustness"]["table"] == whole.result.extra["robustness"]["table"]


def test_cells_another_run_of_the_same_sweep_stored_meanwhile_are_kept(fsdd, tmp_path):
    first = _sweep(fsdd, tmp_path, corruptions=["white_noise"])
    state = json.loads(first.state.read_text())
    state["cells"]["low_pass@1"] = {"folds": [0.5, 0.5], "scores": {"accuracy": 0.5}, "seconds": 0.0}
    R.write_state(first.state, state)  # what a second process of the same sweep wrote
    R.write_state(first.state, json.loads(first.state.read_text()) | {"cells": {}})
    assert sorted(json.loads(first.state.read_text())["cells"]) == ["low_pass@1", "white_noise@1", "white_noise@5"]


def test_train_augment_trains_on_corrupted_copies_and_tests_the_held_out_corruptions(fsdd, tmp_path):
    report = _sweep(fsdd, tmp_path, CountingEmbedder(), corruptions=["white_noise", "low_pass", "mu_law"],
                    train_augment="low_pass")
    rob = report.result.extra["robustness"]
    assert report.result.task == "fsdd@robustness+low_pass" and rob["train_augment"] == ["low_pass"]
    assert sorted(rob["table"]) == ["mu_law", "white_noise"]
    augmented = [e for e in EmbeddingCache(tmp_path / "cache").entries()
                 if str(e["spec"].get("transform", "")).startswith("augment:")]
    assert len(augmented) == 1 and "low_pass-s1" in augmented[0]["spec"]["transform"]


def test_every_corruption_in_train_augment_is_refused(fsdd, tmp_path):
    with pytest.raises(R.RobustnessError, match="train-augment"):
        _sweep(fsdd, tmp_path, corruptions=["low_pass"], train_augment="low_pass")


def test_a_detection_task_reports_eer_per_corruption(tmp_path):
    root, _ = DETECTION_LAYOUTS["deepfake_folder"](tmp_path / "df")
    report = R.sweep("deepfake_folder", CountingEmbedder(), root, EmbeddingCache(tmp_path / "cache"),
                     corruptions=["white_noise"], severities="1,5", grid=GRID, max_folds=1, progress=False,
                     out_dir=tmp_path / "out")
    rob = report.result.extra["robustness"]
    assert report.result.metric == "eer" and not report.result.higher_is_better
    assert set(rob["table"]["white_noise"]["values"]) == {"1", "5"}
    assert rob["table"]["white_noise"]["drop"]["5"] == pytest.approx(rob["table"]["white_noise"]["values"]["5"]
                                                                      - rob["clean"])


def test_a_song_task_is_refused_before_any_work(tmp_path):
    with pytest.raises(R.RobustnessError, match="clip tasks"):
        R.sweep("sonics", CountingEmbedder(), tmp_path, EmbeddingCache(tmp_path / "cache"), progress=False,
                out_dir=tmp_path / "out")


@pytest.mark.parametrize("text,levels", [("1-5", (1, 2, 3, 4, 5)), ("1,3,5", (1, 3, 5)), ("5,1-2", (1, 2, 5))])
def test_severities_parse_as_ranges_and_lists(text, levels):
    assert R.parse_severities(text) == levels


@pytest.mark.parametrize("text", ["0", "6", "1-7", "a", ""])
def test_severities_outside_1_to_5_are_refused(text):
    with pytest.raises(R.RobustnessError, match="1..5"):
        R.parse_severities(text)


def test_the_leaderboard_shows_a_sweep_with_its_heatmap_copied_into_assets(fsdd, tmp_path):
    report = _sweep(fsdd, tmp_path)
    results = tmp_path / "results.jsonl"
    append_result(results, report.result)
    files = write_leaderboard(results, tmp_path / "board")
    page = files["html"].read_text()
    (copied,) = [k.split(":", 1)[1] for k in files if k.startswith("robustness:")]
    assert report.heatmap.is_file() and (tmp_path / "board" / "assets" / copied).read_bytes() == \
        report.heatmap.read_bytes()
    assert "<h2>Robustness</h2>" in page and f"assets/{copied}" in page and "low_pass" in page


@pytest.mark.slow
def test_cli_prints_the_table_writes_the_heatmap_and_a_row_the_leaderboard_shows(fsdd, tmp_path, capsys):
    results = tmp_path / "results.jsonl"
    code = main(["robustness", "--model", "logmel", "--task", "fsdd", "--data-root", str(fsdd), "--corruptions",
                 "white_noise,low_pass", "--severities", "1,5", "--grid", "linear", "--max-folds", "1", "--results",
                 str(results), "--cache", str(tmp_path / "cache"), "-q"])
    out = capsys.readouterr().out
    assert code == 0 and "low_pass" in out and "sev 5" in out and "clean" in out
    (row,) = read_results(results)
    png = row.extra["robustness"]["heatmap_png"]
    assert row.task == "fsdd@robustness" and png.startswith(str(tmp_path / "results-robustness"))
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    files = write_leaderboard(results, tmp_path / "board")
    page = files["html"].read_text()
    copied = [k for k in files if k.startswith("robustness:")]
    assert "<h2>Robustness</h2>" in page and len(copied) == 1 and f"assets/{copied[0].split(':', 1)[1]}" in page


def test_cli_refuses_a_bad_severity_in_one_line(fsdd, capsys):
    code = main(["robustness", "--model", "logmel", "--task", "fsdd", "--data-root", str(fsdd), "--severities", "9"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "1..5" in err


def test_cli_refuses_an_unknown_corruption_in_one_line(fsdd, capsys):
    code = main(["robustness", "--model", "logmel", "--task", "fsdd", "--data-root", str(fsdd), "--corruptions",
                 "white_noise,hum"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "unknown corruption 'hum'" in err


def test_cli_keeps_an_existing_heatmap_unless_forced(fsdd, tmp_path, capsys):
    png = tmp_path / "mine.png"
    png.write_bytes(b"not yours")
    code = main(["robustness", "--model", "logmel", "--task", "fsdd", "--data-root", str(fsdd), "--heatmap", str(png),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "--force" in err and png.read_bytes() == b"not yours" and not (tmp_path / "out").exists()
