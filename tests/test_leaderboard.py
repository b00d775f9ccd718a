"""Results store (append-only JSONL) and the leaderboard outputs (markdown, HTML, CSV, HEAR CSV)."""

from __future__ import annotations

import csv
import io
import re

import pytest

from audiorep.downstream import leaderboard as L


def _r(model, task, mean, std=0.01, metric="accuracy", date="2026-01-01T00:00:00+00:00", **kw):
    return L.Result(model=model, task=task, metric=metric, mean=mean, std=std, folds=[mean - std, mean + std],
                    date=date, **kw)


@pytest.fixture
def rows():
    return [_r("logmel", "esc50", 0.40), _r("beats-tiny", "esc50", 0.70), _r("random", "esc50", 0.30),
            _r("logmel", "fsdd", 0.80), _r("beats-tiny", "fsdd", 0.95),
            _r("logmel", "asv", 0.20, metric="eer", higher_is_better=False),
            _r("beats-tiny", "asv", 0.05, metric="eer", higher_is_better=False)]


def test_append_then_read_returns_rows_in_order(tmp_path, rows):
    path = tmp_path / "results.jsonl"
    for r in rows:
        L.append_result(path, r)
    back = L.read_results(path)
    assert [(r.model, r.task, r.mean) for r in back] == [(r.model, r.task, r.mean) for r in rows]
    assert back[0].version and back[0].folds == rows[0].folds


def test_append_never_rewrites_earlier_lines(tmp_path, rows):
    path = tmp_path / "results.jsonl"
    L.append_result(path, rows[0])
    before = path.read_bytes()
    L.append_result(path, rows[1])
    assert path.read_bytes().startswith(before)


def test_torn_last_line_is_skipped_and_next_row_starts_fresh(tmp_path, rows):
    path = tmp_path / "results.jsonl"
    L.append_result(path, rows[0])
    with open(path, "a") as f:
        f.write('{"model": "half-writ')  # a run killed mid-write
    L.append_result(path, rows[1])
    with pytest.warns(UserWarning, match=r"results.jsonl:2: skipping"):
        back = L.read_results(path)
    assert [r.model for r in back] == ["logmel", "beats-tiny"]


def test_missing_results_file_says_how_to_make_one(tmp_path):
    with pytest.raises(L.ResultsError, match="audiorep probe"):
        L.read_results(tmp_path / "none.jsonl")


def test_latest_row_per_model_and_task_wins():
    old = _r("m", "esc50", 0.5, date="2026-01-01T00:00:00+00:00")
    new = _r("m", "esc50", 0.6, date="2026-02-01T00:00:00+00:00")
    assert L.latest([new, old])[("m", "esc50")].mean == 0.6


def test_normalised_scores_put_best_at_one_and_respect_lower_is_better(rows):
    b = L.Board.from_results(rows)
    assert b.normalised("beats-tiny", "esc50") == 1.0 and b.normalised("random", "esc50") == 0.0
    assert b.normalised("logmel", "esc50") == pytest.approx(0.25)
    assert b.normalised("beats-tiny", "asv") == 1.0  # lower EER is better
    assert b.models[0] == "beats-tiny"  # sorted by mean normalised score


def test_markdown_has_a_row_per_model_and_a_column_per_task(rows):
    md = L.to_markdown(rows)
    lines = md.strip().splitlines()
    assert lines[0].startswith("| Model | asv (eer ↓) | esc50 (accuracy) | fsdd (accuracy) |")
    assert len(lines) == 2 + 3
    assert "0.7000 ± 0.0100" in md and "| random | – |" in md


def test_hear_csv_uses_the_hear_columns_and_fills_matching_tasks(rows):
    table = list(csv.reader(io.StringIO(L.to_hear_csv(rows, urls={"beats-tiny": "https://x"}))))
    assert table[0] == ["Model", "URL", *L.HEAR_COLUMNS]
    row = dict(zip(table[0], next(r for r in table if r[0] == "beats-tiny")))
    assert float(row["ESC-50"]) == pytest.approx(0.70)
    assert row["URL"] == "https://x" and row["FSD50K"] == ""


def test_html_is_self_contained_and_sortable(rows):
    page = L.to_html(rows)
    assert '<table class="sortable">' in page and "<script>" in page
    assert page.count("data:image/png;base64,") == 1 + 3  # heatmap + one bar chart per task
    assert not re.search(r"""(src|href)=["']https?://""", page)


def test_write_leaderboard_writes_four_files(tmp_path, rows):
    store = tmp_path / "r.jsonl"
    for r in rows:
        L.append_result(store, r)
    files = L.write_leaderboard(store, tmp_path / "board")
    assert {p.name for p in files.values()} == {"leaderboard.md", "index.html", "leaderboard.csv",
                                                "hear_leaderboard.csv"}
    assert all(p.stat().st_size > 0 for p in files.values())
    assert list(tmp_path.joinpath("board").glob(".*tmp*")) == []


def test_row_without_required_fields_is_rejected():
    with pytest.raises(L.ResultsError, match="lacks"):
        L.Result.from_dict({"model": "m"})


NAN_ROWS = [
    '{"model": "good", "task": "esc50", "metric": "accuracy", "mean": 0.8, "std": 0.01, "folds": [0.79, 0.81]}',
    '{"model": "nan-string", "task": "esc50", "metric": "accuracy", "mean": "NaN", "std": 0.0, "folds": []}',
    '{"model": "nan-number", "task": "esc50", "metric": "accuracy", "mean": NaN, "std": NaN, "folds": [NaN, 0.5]}',
    '{"model": "ok", "task": "esc50", "metric": "accuracy", "mean": 0.6, "std": 0.02, "folds": [0.58, 0.62]}',
]


def test_nan_scores_read_as_nan_and_rank_last(tmp_path):
    store = tmp_path / "r.jsonl"
    store.write_text("\n".join(NAN_ROWS) + "\n")
    results = L.read_results(store)
    assert [r.model for r in results] == ["good", "nan-string", "nan-number", "ok"]
    assert L.Board.from_results(results).models[:2] == ["good", "ok"]
    table = L.to_markdown(results).splitlines()
    assert table[-2:] == ["| nan-number | n/a | n/a |", "| nan-string | n/a | n/a |"]


def test_a_board_with_nan_scores_writes_every_page(tmp_path):
    store = tmp_path / "r.jsonl"
    store.write_text("\n".join(NAN_ROWS) + "\n")
    files = L.write_leaderboard(store, tmp_path / "board")
    page = files["html"].read_text()
    assert page.count("data:image/png;base64,") == 2 and ">n/a</td>" in page
    assert files["csv"].read_text().splitlines()[1:] == ["good,0.8", "ok,0.6", "nan-number,", "nan-string,"]


def test_a_score_that_is_no_number_skips_the_row_naming_file_and_line(tmp_path):
    store = tmp_path / "r.jsonl"
    store.write_text(NAN_ROWS[0] + '\n{"model": "x", "task": "esc50", "metric": "accuracy", "mean": "high"}\n')
    with pytest.warns(UserWarning, match=r"r.jsonl:2: skipping malformed result row: 'mean' is 'high'"):
        results = L.read_results(store)
    assert [r.model for r in results] == ["good"]


def test_leaderboard_command_renders_nan_rows_as_na(tmp_path, capsys):
    from audiorep.cli import main

    store = tmp_path / "r.jsonl"
    store.write_text("\n".join(NAN_ROWS) + "\n")
    assert main(["leaderboard", str(store), "--out", str(tmp_path / "board")]) == 0
    out = capsys.readouterr().out
    assert "n/a" in out and "0.8000" in out


@pytest.mark.parametrize("out", ["taken.txt", "taken.txt/board"])
def test_leaderboard_out_on_a_file_is_one_line_error_and_the_file_is_kept(tmp_path, capsys, rows, out):
    from audiorep.cli import main

    store = tmp_path / "r.jsonl"
    for r in rows:
        L.append_result(store, r)
    taken = tmp_path / "taken.txt"
    taken.write_bytes(b"my notes\n")
    assert main(["leaderboard", str(store), "--out", str(tmp_path / out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out ") and "taken.txt" in err and err.count("\n") == 1
    assert taken.read_bytes() == b"my notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl", "taken.txt"]


def fake_model_dir(path):
    """A model directory as `audiorep pretrain` exports it, as far as the leaderboard looks: training_curves.png."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path.mkdir(parents=True)
    plt.imsave(path / "training_curves.png", [[0.0, 1.0], [1.0, 0.0]])
    return path


def test_training_curves_of_a_pretrained_model_are_copied_and_linked(tmp_path, rows):
    model_dir = fake_model_dir(tmp_path / "run" / "export")
    rows.append(_r("pretrained", "esc50", 0.75, extra={"model_dir": str(model_dir)}))
    files = L.write_leaderboard(rows, tmp_path / "board")
    (copied,) = (tmp_path / "board" / "assets").iterdir()
    assert copied.read_bytes() == (model_dir / "training_curves.png").read_bytes()
    page = files["html"].read_text()
    assert page.count("training curves</a>") == 1
    assert re.search(rf'<td data-v="pretrained">pretrained <a class=sub href="assets/{copied.name}">', page)


def test_a_model_dir_without_curves_gets_no_link(tmp_path, rows):
    (tmp_path / "export").mkdir()
    rows.append(_r("random-init", "esc50", 0.3, extra={"model_dir": str(tmp_path / "export")}))
    files = L.write_leaderboard(rows, tmp_path / "board")
    assert "training curves</a>" not in files["html"].read_text()
    assert not (tmp_path / "board" / "assets").exists()


def detection_outputs(folder):
    """A detection run's outputs as the tasks runner writes them (downstream/plots.py)."""
    import numpy as np

    from audiorep.downstream import plots

    rng = np.random.default_rng(0)
    split = plots.SplitScores("official", np.r_[rng.normal(1, 1, 20), rng.normal(0, 1, 30)],
                              np.r_[np.ones(20, bool), np.zeros(30, bool)], np.array([f"c{i}" for i in range(50)]))
    return plots.write_detection_outputs(folder, [split], title="beats-tiny · asv")


def test_detection_plots_are_copied_and_linked_from_the_score_cell(tmp_path, rows):
    det = detection_outputs(tmp_path / "results-detection" / "run1")
    rows.append(_r("beats-tiny", "asv", 0.04, metric="eer", higher_is_better=False, date="2026-02-01T00:00:00+00:00",
                   extra={"detection": det}))
    files = L.write_leaderboard(rows, tmp_path / "board")
    copied = sorted(p.name for p in (tmp_path / "board" / "assets").iterdir())
    assert len(copied) == 2 and copied[0].startswith("det-asv-beats-tiny-") and copied[1].startswith("histogram-")
    assert (tmp_path / "board" / "assets" / copied[0]).read_bytes() == open(det["det_png"], "rb").read()
    page = files["html"].read_text()
    anchor = re.search(r'0\.0400[^<]*<a class=sub href="#(det-[0-9a-f]+)">DET</a></td>', page).group(1)
    section = page[page.index(f'<h3 id="{anchor}">'):]
    assert f'src="assets/{copied[0]}"' in section and f'src="assets/{copied[1]}"' in section
    assert page.count(">DET</a>") == 1  # only the row with plots


def test_a_detection_row_whose_plots_are_gone_gets_no_link(tmp_path, rows):
    rows.append(_r("beats-tiny", "asv", 0.04, metric="eer", higher_is_better=False, date="2026-02-01T00:00:00+00:00",
                   extra={"detection": {"det_png": str(tmp_path / "gone.png"),
                                        "histogram_png": str(tmp_path / "gone2.png")}}))
    files = L.write_leaderboard(rows, tmp_path / "board")
    assert ">DET</a>" not in files["html"].read_text() and not (tmp_path / "board" / "assets").exists()
