"""`audiorep datasets prepare`: synthetic corpus -> ArrayRecord build -> pipeline batches."""

from __future__ import annotations

import numpy as np

from audiorep.cli import main
from audiorep.data import pipeline as pl
from audiorep.data.synthetic import write_corpus


def test_prepare_command_builds_a_dataset_the_pipeline_reads(tmp_path, capsys):
    index = write_corpus(tmp_path / "syn", per_class=2, seed=0, seconds=0.5, classes=("chirp_up", "clicks_fast"))
    rc = main(["datasets", "prepare", "folder", "--root", str(tmp_path / "syn"), "--out", str(tmp_path / "tfds"),
               "--sample-rate", "8000"])
    assert rc == 0
    assert "audiorep_folder/8k" in capsys.readouterr().out
    source = pl.tfds_source(tmp_path / "tfds", "train")
    assert source.sample_rate == 8000 and source.classes == index.classes
    batch = next(iter(pl.train_dataset(source, clip_samples=4000, batch_size=4, seed=0, shard=pl.Shard(0, 1))))
    assert batch["audio"].shape == (4, 4000) and np.isin(batch["label"], [0, 1]).all()


def test_prepare_command_passes_reader_options(tmp_path):
    write_corpus(tmp_path / "syn", per_class=1, seed=0, seconds=0.25, classes=("chirp_up", "clicks_fast"))
    rc = main(["datasets", "prepare", "folder", "--root", str(tmp_path / "syn"), "--out", str(tmp_path / "tfds"),
               "--sample-rate", "8000", "-o", "extensions=.wav"])
    assert rc == 0
    source = pl.tfds_source(tmp_path / "tfds", "train")
    assert len(source) == 2 and source.path.endswith("audiorep_folder/8k-extensions_.wav/1.0.0")


def test_prepare_command_reports_a_missing_root(tmp_path, capsys):
    rc = main(["datasets", "prepare", "folder", "--root", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert rc == 1
    assert "is not a directory" in capsys.readouterr().err


def test_prepare_command_refuses_an_out_that_is_a_file_and_leaves_it(tmp_path, capsys):
    write_corpus(tmp_path / "syn", per_class=1, seed=0, seconds=0.25, classes=("chirp_up",))
    out = tmp_path / "notes.txt"
    out.write_text("the user's file")
    before = out.read_bytes(), out.stat().st_mtime_ns
    rc = main(["datasets", "prepare", "folder", "--root", str(tmp_path / "syn"), "--out", str(out)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(lines) == 1 and lines[0].startswith("error: --out") and "is a file" in lines[0]
    assert (out.read_bytes(), out.stat().st_mtime_ns) == before


def test_prepare_command_refuses_an_out_under_a_file(tmp_path, capsys):
    write_corpus(tmp_path / "syn", per_class=1, seed=0, seconds=0.25, classes=("chirp_up",))
    (tmp_path / "f").write_text("x")
    rc = main(["datasets", "prepare", "folder", "--root", str(tmp_path / "syn"), "--out", str(tmp_path / "f" / "d")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(lines) == 1 and "lies under the file" in lines[0]
