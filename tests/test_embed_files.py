"""`audiorep embed` / embed_files: folders -> one .npz, unreadable files listed, no pickle needed to read it."""

import numpy as np
import pytest
import toy_encoder  # noqa: F401  (registers the 'toy' models)
from conftest import tone

import audiorep
from audiorep import cli
from audiorep.audio.io import AudioError, save_audio
from audiorep.downstream.embed import EmbedError, embed_files


@pytest.fixture(scope="module")
def toy():
    return audiorep.load("toy", batch_size=4)


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    save_audio(root / "a.wav", tone(300, 0.5, 16000), 16000)
    save_audio(root / "b.flac", tone(500, 1.5, 8000), 8000)
    save_audio(root / "deep" / "c.ogg", tone(700, 0.8, 22050), 22050)
    (root / "broken.wav").write_bytes(b"RIFF not really")
    (root / "notes.txt").write_text("not audio")
    return root


def test_folder_is_embedded_recursively_with_relative_names(toy, corpus, tmp_path):
    res = embed_files(toy, [corpus], tmp_path / "out.npz", progress=False)
    d = np.load(tmp_path / "out.npz", allow_pickle=False)
    assert list(d["files"]) == ["a.wav", "b.flac", "deep/c.ogg"] == res.files
    assert d["embeddings"].shape == (3, toy.scene_embedding_size) and d["embeddings"].dtype == np.float32
    np.testing.assert_allclose(d["durations_s"], [0.5, 1.5, 0.8], atol=1e-3)
    assert str(d["model"]) == "toy" and int(d["sample_rate"]) == 16000 and str(d["pooling"]) == "mean"


def test_embeddings_match_embedding_the_decoded_clip(toy, corpus, tmp_path):
    from audiorep.audio.io import load_audio

    embed_files(toy, [corpus / "b.flac"], tmp_path / "one.npz", progress=False)
    d = np.load(tmp_path / "one.npz", allow_pickle=False)
    clip, _ = load_audio(corpus / "b.flac", sample_rate=16000)
    np.testing.assert_allclose(d["embeddings"][0], toy.scene(clip), rtol=1e-5, atol=1e-6)


def test_unreadable_files_are_listed_not_fatal(toy, corpus, tmp_path):
    res = embed_files(toy, [corpus], tmp_path / "out.npz", progress=False)
    d = np.load(tmp_path / "out.npz", allow_pickle=False)
    assert list(d["failed_files"]) == ["broken.wav"] and [f for f, _ in res.failed] == ["broken.wav"]
    assert "broken.wav" in str(d["failed_errors"][0])


def test_timestamps_are_stored_as_offsets_into_one_array(toy, corpus, tmp_path):
    embed_files(toy, [corpus], tmp_path / "ts.npz", timestamps=True, progress=False)
    d = np.load(tmp_path / "ts.npz", allow_pickle=False)
    off = d["timestamp_offsets"]
    assert off[0] == 0 and off[-1] == len(d["timestamp_embeddings"]) == len(d["timestamp_times_ms"])
    for i, dur in enumerate(d["durations_s"]):
        times = d["timestamp_times_ms"][off[i]: off[i + 1]]
        assert times[-1] <= 1000 * dur and np.allclose(np.diff(times), toy.time_resolution_ms)


def test_output_must_be_npz_and_is_written_atomically(toy, corpus, tmp_path):
    with pytest.raises(AudioError, match=r"\.npz"):
        embed_files(toy, [corpus], tmp_path / "out.csv", progress=False)
    embed_files(toy, [corpus / "a.wav"], tmp_path / "x.npz", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["x.npz"]


def test_missing_path_and_empty_folder_are_clear_errors(toy, tmp_path):
    with pytest.raises(AudioError, match="no such file or folder"):
        embed_files(toy, [tmp_path / "nope"], tmp_path / "o.npz", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AudioError, match="no audio files"):
        embed_files(toy, [tmp_path / "empty"], tmp_path / "o.npz", progress=False)


def test_cli_embed_writes_the_npz_and_reports_failures(corpus, tmp_path, capsys):
    rc = cli.main(["embed", "--model", "toy", str(corpus), "--out", str(tmp_path / "cli.npz"), "--layer", "0,-1",
                   "--pooling", "mean+max", "-q"])
    assert rc == 0
    d = np.load(tmp_path / "cli.npz", allow_pickle=False)
    assert d["embeddings"].shape[0] == 3 and str(d["layer"]) == "[0, -1]" and str(d["pooling"]) == "mean+max"
    err = capsys.readouterr().err
    assert "broken.wav" in err and "3 files" in err


def test_cli_embed_unknown_model_exits_with_a_message(corpus, tmp_path, capsys):
    rc = cli.main(["embed", "--model", "beats-tyni", str(corpus), "--out", str(tmp_path / "o.npz"), "-q"])
    assert rc == 2 and "Did you mean beats-tiny" in capsys.readouterr().err


@pytest.mark.slow
def test_real_recordings_embed_with_beats_tiny(fsdd_dir, tmp_path):
    files = sorted(fsdd_dir.glob("*.wav"))[::150]  # 20 real 8 kHz clips of different lengths
    model = audiorep.load("beats-tiny")
    res = embed_files(model, files, tmp_path / "fsdd.npz", progress=False)
    d = np.load(tmp_path / "fsdd.npz", allow_pickle=False)
    assert len(res.files) == len(files) and not res.failed
    assert np.isfinite(d["embeddings"]).all() and d["embeddings"].shape == (len(files), 64)


def _snapshot(path):
    """(bytes, mtime_ns) of a file, to show it was left alone."""
    return path.read_bytes(), path.stat().st_mtime_ns


@pytest.fixture
def broken_only(tmp_path):
    root = tmp_path / "broken"
    root.mkdir()
    (root / "x.wav").write_bytes(b"RIFF not really")
    (root / "y.wav").write_bytes(b"")
    return root


def test_unreadable_inputs_write_nothing_and_name_the_files(toy, broken_only, tmp_path):
    with pytest.raises(EmbedError, match=r"none of the 2 audio file\(s\) could be read.*x\.wav.*y\.wav"):
        embed_files(toy, [broken_only], tmp_path / "o.npz", progress=False)
    assert not (tmp_path / "o.npz").exists()


def test_an_existing_output_is_refused_without_overwrite_and_replaced_with_it(toy, corpus, tmp_path):
    out = tmp_path / "o.npz"
    out.write_bytes(b"the user's archive")
    before = _snapshot(out)
    with pytest.raises(EmbedError, match="already exists.*--force"):
        embed_files(toy, [corpus / "a.wav"], out, progress=False)
    assert _snapshot(out) == before
    embed_files(toy, [corpus / "a.wav"], out, progress=False, overwrite=True)
    assert list(np.load(out, allow_pickle=False)["files"]) == ["a.wav"]


def test_an_output_folder_is_refused_before_the_inputs_are_read(toy, tmp_path):
    (tmp_path / "o.npz").mkdir()
    with pytest.raises(EmbedError, match="is a folder"):  # not the AudioError of the missing input: checked first
        embed_files(toy, [tmp_path / "missing"], tmp_path / "o.npz", progress=False, overwrite=True)


def test_an_output_under_a_file_is_refused(toy, corpus, tmp_path):
    (tmp_path / "f").write_text("a file")
    with pytest.raises(EmbedError, match="is a file, not a folder"):
        embed_files(toy, [corpus / "a.wav"], tmp_path / "f" / "o.npz", progress=False)


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_cli_embed_of_unreadable_files_keeps_the_existing_archive(broken_only, corpus, tmp_path, capsys):
    out = tmp_path / "o.npz"
    assert cli.main(["embed", "--model", "toy", str(corpus / "a.wav"), "--out", str(out), "-q"]) == 0
    before = _snapshot(out)
    capsys.readouterr()
    rc = cli.main(["embed", "--model", "toy", str(broken_only), "--out", str(out), "--force", "-q"])
    assert rc != 0 and "could be read" in _one_error_line(capsys.readouterr().err)
    assert _snapshot(out) == before


def test_cli_embed_refuses_an_existing_file_without_force(corpus, tmp_path, capsys):
    out = tmp_path / "o.npz"
    out.write_bytes(b"the user's archive")
    before = _snapshot(out)
    rc = cli.main(["embed", "--model", "toy", str(corpus), "--out", str(out), "-q"])
    assert rc != 0 and "--force" in _one_error_line(capsys.readouterr().err)
    assert _snapshot(out) == before


def test_cli_embed_refuses_a_folder_as_out(corpus, tmp_path, capsys):
    (tmp_path / "o.npz").mkdir()
    (tmp_path / "o.npz" / "keep.txt").write_text("kept")
    rc = cli.main(["embed", "--model", "toy", str(corpus), "--out", str(tmp_path / "o.npz"), "--force", "-q"])
    assert rc != 0 and "is a folder" in _one_error_line(capsys.readouterr().err)
    assert (tmp_path / "o.npz" / "keep.txt").read_text() == "kept"
