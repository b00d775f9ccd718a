"""`audiorep datasets list | inspect | synth`."""

from __future__ import annotations

import pytest
from test_sources import ESC_ROWS, make_esc50

from audiorep.cli import main
from audiorep.cli.datasets import reader_options
from audiorep.data.sources import READERS, DatasetError


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps tables to the terminal width


def test_list_shows_every_reader_with_its_layout(capsys):
    assert main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    for name in READERS:
        assert name in out
    assert "esc50.csv" in out and "validation_list.txt" in out


def test_synth_then_inspect_prints_a_per_class_table(tmp_path, capsys):
    out_dir = tmp_path / "syn"
    assert main(["datasets", "synth", "--out", str(out_dir), "--per-class", "2", "--seconds", "0.25",
                 "--classes", "chirp_up,chirp_down,noise_low"]) == 0
    assert "wrote 6 clips of 3 classes" in capsys.readouterr().out
    assert main(["datasets", "inspect", "folder", "--root", str(out_dir), "-q"]) == 0
    out = capsys.readouterr().out
    assert "records per class" in out
    for name in ("chirp_up", "chirp_down", "noise_low"):
        assert name in out
    assert "1.5 s" in out  # total duration, 6 x 0.25 s, from soundfile.info


def test_synth_refuses_a_non_empty_folder(tmp_path, capsys):
    (tmp_path / "x.txt").write_text("x")
    assert main(["datasets", "synth", "--out", str(tmp_path), "--per-class", "1", "--seconds", "0.2"]) == 1
    assert "not empty" in capsys.readouterr().err


def test_inspect_esc50_with_options_counts_folds(tmp_path, capsys):
    root = make_esc50(tmp_path, ESC_ROWS)
    assert main(["datasets", "inspect", "esc50", "--root", str(root), "-o", "esc10=true", "-q"]) == 0
    out = capsys.readouterr().out
    assert "fold 1" in out and "fold 5" in out and "rooster" in out
    assert "hand_saw" not in out  # not an ESC-10 class


def test_inspect_lists_unreadable_files_and_fails_unless_skipping(tmp_path, capsys):
    root = make_esc50(tmp_path, ESC_ROWS)
    (root / "audio" / "2-56234-A-9.wav").write_bytes(b"not audio")
    assert main(["datasets", "inspect", "esc50", "--root", str(root), "-q"]) == 1
    out = capsys.readouterr().out
    assert "unreadable:" in out and "2-56234-A-9.wav" in out
    assert main(["datasets", "inspect", "esc50", "--root", str(root), "-q", "--skip-unreadable"]) == 0


def test_inspect_reports_a_layout_error_cleanly(tmp_path, capsys):
    assert main(["datasets", "inspect", "esc50", "--root", str(tmp_path)]) == 1
    assert "esc50.csv" in capsys.readouterr().err


def test_reader_options_are_typed_from_the_reader_signature():
    assert reader_options("esc50", ["esc10=yes", "folds=1,2"]) == {"esc10": True, "folds": [1, 2]}
    assert reader_options("speech_commands", ["num_classes=12", "silence_hop_s=1"]) == {
        "num_classes": 12, "silence_hop_s": 1.0}
    assert reader_options("audioset", ["file_pattern=Y{ytid}.wav", "splits=eval"]) == {
        "file_pattern": "Y{ytid}.wav", "splits": ["eval"]}
    assert reader_options("folder", ["label_regex=^(\\d)_", "group_csv=none"]) == {
        "label_regex": "^(\\d)_", "group_csv": None}
    with pytest.raises(DatasetError, match="esc10"):
        reader_options("esc50", ["esc_ten=1"])
    with pytest.raises(DatasetError, match="true or false"):
        reader_options("esc50", ["esc10=maybe"])
