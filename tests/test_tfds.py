"""TFDS builders: a tiny folder dataset -> ArrayRecord -> tfds data source, without TensorFlow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from audiorep.audio.io import AudioError, load_audio, save_audio
from audiorep.data.sources import DatasetIndex, Record, read_dataset
from audiorep.data.tfds import builder as tb

RATE = 8000


def write_folder(root: Path, per_class: int = 3, classes=("cat", "dog"), seconds: float = 0.25) -> Path:
    rng = np.random.default_rng(1)
    for c in classes:
        for i in range(per_class):
            n = int(seconds * RATE) + 40 * i
            save_audio(root / c / f"{c}{i}.wav", rng.uniform(-0.6, 0.6, n).astype(np.float32), RATE)
    return root


@pytest.fixture
def folder(tmp_path) -> Path:
    return write_folder(tmp_path / "raw")


def test_prepare_folder_reads_back_labels_paths_and_audio(folder, tmp_path):
    prepared = tb.prepare("folder", folder, tmp_path / "out", sample_rate=RATE)
    index = read_dataset("folder", folder)
    source = tb.data_source(tmp_path / "out", "train")
    assert len(source) == len(index.records) == prepared.splits["train"]
    for i, rec in enumerate(index.records):  # stored in reader order
        ex = source[i]
        assert ex["path"].decode() == rec.path
        assert ex["label"] == rec.labels[0]
        assert [n.decode() for n in ex["label_names"]] == list(rec.label_names)
        wave, _ = load_audio(rec.path)
        np.testing.assert_array_equal(tb.from_pcm16(ex["audio"]), wave)  # 16-bit wav -> int16: lossless


def test_prepared_dataset_is_array_record_with_rate_in_metadata(folder, tmp_path):
    prepared = tb.prepare("folder", folder, tmp_path / "out", sample_rate=16000)
    files = sorted(p.name for p in prepared.path.iterdir())
    assert any(".array_record-" in f for f in files)
    meta = json.loads((prepared.path / "metadata.json").read_text())
    assert meta["sample_rate"] == 16000 and meta["classes"] == ["cat", "dog"] and meta["reader"] == "folder"
    assert prepared.path.relative_to(tmp_path / "out").parts == ("audiorep_folder", "16k", "1.0.0")


def test_prepare_resamples_to_the_chosen_rate(folder, tmp_path):
    tb.prepare("folder", folder, tmp_path / "out", sample_rate=16000)
    first = read_dataset("folder", folder).records[0]
    stored = tb.data_source(tmp_path / "out", "train")[0]["audio"]
    assert stored.dtype == np.int16
    assert stored.shape[0] == 2 * load_audio(first.path)[0].shape[0]


def test_tfds_data_source_finds_the_build_by_name(folder, tmp_path):
    import tensorflow_datasets as tfds

    tb.prepare("folder", folder, tmp_path / "out", sample_rate=RATE)
    source = tfds.data_source("audiorep_folder/8k", data_dir=str(tmp_path / "out"), split="train")
    assert len(source) == 6 and source[0]["audio"].dtype == np.int16
    assert "tensorflow" not in sys.modules


def test_splits_from_split_folders_become_tfds_splits(tmp_path):
    write_folder(tmp_path / "raw" / "train", per_class=2)
    write_folder(tmp_path / "raw" / "test", per_class=1)
    prepared = tb.prepare("folder", tmp_path / "raw", tmp_path / "out", sample_rate=RATE)
    assert prepared.splits == {"test": 2, "train": 4}
    assert tb.data_source(tmp_path / "out", "test")[0]["split"] == b"test"


def test_multilabel_index_is_stored_multi_hot_with_fold_group_and_window(tmp_path):
    raw = tmp_path / "raw"
    save_audio(raw / "a.wav", np.full(RATE, 0.25, np.float32), RATE)
    save_audio(raw / "b.wav", np.full(RATE, -0.25, np.float32), RATE)
    records = [
        Record(str(raw / "a.wav"), (0, 2), ("x", "z"), "train", 3, "spk1", "audioset", 0.25, 0.75),
        Record(str(raw / "b.wav"), (), (), "train", None, None, "audioset"),
    ]
    index = DatasetIndex("audioset", records, ("x", "y", "z"), multilabel=True, root=str(raw))
    cfg = tb.make_config(index, reader="audioset", sample_rate=RATE)
    builder = tb.builder_class("audioset")(data_dir=str(tmp_path / "out"), config=cfg, file_format="array_record",
                                           index=index)
    import tensorflow_datasets as tfds

    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(raw)))
    source = tb.data_source(tmp_path / "out", "train")
    first, second = source[0], source[1]
    assert first["label"].tolist() == [True, False, True] and second["label"].tolist() == [False] * 3
    assert (first["fold"], first["group"], second["fold"], second["group"]) == (3, b"spk1", -1, b"")
    assert first["audio"].shape == (RATE // 2,)  # the 0.25-0.75 s window only
    assert first["end_s"] == pytest.approx(0.75) and second["end_s"] == -1.0


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.integers(1, 300), elements=st.floats(-1.0, 1.0, width=32)))
def test_pcm16_round_trip_error_is_at_most_one_step(wave):
    back = tb.from_pcm16(tb.to_pcm16(wave))
    assert back.dtype == np.float32
    assert np.max(np.abs(back - wave)) <= 1.0 / 32768 + 1e-9


def test_pcm16_matches_soundfile_16bit_reading(tmp_path, rng):
    wave = rng.uniform(-1, 1, 500).astype(np.float32)
    save_audio(tmp_path / "x.wav", wave, RATE, subtype="PCM_16")
    from_file, _ = load_audio(tmp_path / "x.wav")
    np.testing.assert_array_equal(tb.from_pcm16(tb.to_pcm16(from_file)), from_file)


def test_config_name_encodes_rate_and_options():
    assert tb.config_name(16000) == "16k"
    assert tb.config_name(22050) == "22050hz"
    assert tb.config_name(16000, {"task": 12, "include_silence": True}) == "16k-include_silence_True-task_12"


def test_second_prepare_reuses_the_build_and_overwrite_rebuilds(folder, tmp_path):
    first = tb.prepare("folder", folder, tmp_path / "out", sample_rate=RATE)
    again = tb.prepare("folder", folder, tmp_path / "out", sample_rate=RATE)
    assert not first.reused and again.reused
    write_folder(folder, per_class=4)
    rebuilt = tb.prepare("folder", folder, tmp_path / "out", sample_rate=RATE, overwrite=True)
    assert not rebuilt.reused and rebuilt.splits["train"] == 8


def test_failed_rebuild_keeps_the_previous_build(folder, tmp_path):
    first = tb.prepare("folder", folder, tmp_path / "out", sample_rate=RATE)
    (folder / "cat" / "broken.wav").write_bytes(b"not audio")
    with pytest.raises(AudioError, match="broken.wav"):
        tb.prepare("folder", folder, tmp_path / "out", sample_rate=RATE, overwrite=True)
    assert tb.find_prepared(tmp_path / "out") == first.path
    assert len(tb.data_source(tmp_path / "out", "train")) == 6
    assert not tb.stale_builds(tmp_path / "out")


def test_failed_build_leaves_no_dataset_behind(folder, tmp_path):
    (folder / "cat" / "broken.wav").write_bytes(b"RIFF not really a wav")
    with pytest.raises(AudioError, match="(?s)broken.wav.*skip-unreadable"):
        tb.prepare("folder", folder, tmp_path / "out", sample_rate=RATE)
    config_dir = tmp_path / "out" / "audiorep_folder" / "8k"
    assert not (config_dir / "1.0.0").exists()
    assert not list(config_dir.glob("incomplete.*"))
    with pytest.raises(tb.PrepareError, match="no finished TFDS dataset"):
        tb.find_prepared(tmp_path / "out")


def test_skip_unreadable_builds_the_rest_and_lists_the_skipped(folder, tmp_path):
    (folder / "cat" / "broken.wav").write_bytes(b"")
    prepared = tb.prepare("folder", folder, tmp_path / "out", sample_rate=RATE, skip_unreadable=True)
    assert prepared.splits["train"] == 6
    assert len(prepared.skipped) == 1 and "broken.wav" in prepared.skipped[0]


@pytest.mark.slow
def test_killed_build_is_never_read_as_a_dataset(folder, tmp_path):
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import time
        import audiorep.audio.io as io
        from audiorep.data.tfds import builder as tb
        real = io.load_audio
        calls = []
        def slow(*a, **k):
            calls.append(1)
            if len(calls) == 3:
                print("HALFWAY", flush=True)
                time.sleep(600)
            return real(*a, **k)
        tb.load_audio = slow
        tb.prepare("folder", {str(folder)!r}, {str(out)!r}, sample_rate={RATE})
    """)
    # TMPDIR: the killed build cannot remove its TFDS download dir; keep it out of /tmp
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env={**os.environ, "AUDIOREP_NO_TCMALLOC": "1", "TMPDIR": str(tmp_path)})
    try:
        deadline = time.time() + 120
        while time.time() < deadline and b"HALFWAY" not in proc.stdout.readline():
            pass
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    config_dir = out / "audiorep_folder" / "8k"
    assert list(config_dir.glob("incomplete.*")), "the killed build should have been writing into incomplete.*"
    assert not (config_dir / "1.0.0").exists()
    with pytest.raises(tb.PrepareError, match="interrupted"):
        tb.find_prepared(out)
    assert tb.stale_builds(out)
    prepared = tb.prepare("folder", folder, out, sample_rate=RATE)
    assert prepared.splits["train"] == 6 and tb.find_prepared(out) == prepared.path


def test_unknown_dataset_name_lists_the_choices(folder, tmp_path):
    with pytest.raises(tb.PrepareError, match="choose one of: folder, esc50"):
        tb.prepare("esc-50", folder, tmp_path / "out")


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(tb.PrepareError, match="is not a directory"):
        tb.prepare("folder", tmp_path / "nope", tmp_path / "out")


def test_several_builds_in_one_data_dir_need_a_name(folder, tmp_path):
    tb.prepare("folder", folder, tmp_path / "out", sample_rate=RATE)
    tb.prepare("folder", folder, tmp_path / "out", sample_rate=16000)
    with pytest.raises(tb.PrepareError, match="several datasets"):
        tb.find_prepared(tmp_path / "out")
    assert tb.open_prepared(tmp_path / "out", "audiorep_folder/16k").sample_rate == 16000


def test_parallel_decoding_gives_the_same_dataset(folder, tmp_path):
    tb.prepare("folder", folder, tmp_path / "one", sample_rate=16000)
    tb.prepare("folder", folder, tmp_path / "two", sample_rate=16000, num_workers=2)
    a, b = tb.data_source(tmp_path / "one", "train"), tb.data_source(tmp_path / "two", "train")
    for i in range(len(a)):
        np.testing.assert_array_equal(a[i]["audio"], b[i]["audio"])
