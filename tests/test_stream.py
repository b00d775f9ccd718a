"""Streaming embeddings and scores (downstream/stream.py), saved probe heads (downstream/heads.py), `audiorep stream`
and `audiorep probe --save-head` (toy encoder, generated audio)."""

import io
import itertools
import json
import resource

import numpy as np
import pytest
import soundfile as sf
import toy_encoder  # noqa: F401  (registers the 'toy' models)
from conftest import tiny_fsdd, tone
from hypothesis import given, settings
from hypothesis import strategies as st

import audiorep
from audiorep.audio.io import AudioError
from audiorep.cli import main
from audiorep.downstream import probes
from audiorep.downstream import tasks as T
from audiorep.downstream.cache import EmbeddingCache
from audiorep.downstream.heads import Head, HeadError, model_of
from audiorep.downstream.stream import Streamer, StreamError, pcm_blocks


@pytest.fixture(scope="module")
def toy():
    return audiorep.load("toy")


@pytest.fixture(scope="module")
def trained(toy):
    """A probe trained on random toy-sized embeddings: (its ProbeResult, test embeddings, a Head for `toy`)."""
    rng = np.random.default_rng(0)
    d = toy.scene_embedding_size
    centres = rng.standard_normal((2, d)) * 3
    split = lambda n, s: (centres[np.arange(n) % 2] + np.random.default_rng(s).standard_normal((n, d)),  # noqa: E731
                          (np.arange(n) % 2).astype(np.int32))
    (xtr, ytr), (xva, yva), (xte, yte) = split(40, 1), split(20, 2), split(20, 3)
    grid = probes.Grid("tiny", (probes.GridPoint(hidden_layers=1, hidden_dim=16, seed=3),),
                       probes.Schedule(max_epochs=6, check_every=3, patience=2, batch_size=16))
    res = probes.fit_probe(xtr, ytr, xva, yva, xte, yte, num_classes=2, grid=grid)
    head = Head.from_probe(res.head, classes=["spoof", "bonafide"], positive=1, multilabel=False, model=model_of(toy))
    return res, xte.astype(np.float32), head


def _noise(n, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def _blocks(x, size):
    return [x[i: i + size] for i in range(0, len(x), size)]


def test_stream_gives_the_offline_scene_embedding_of_each_window(toy):
    x = _noise(3 * 16000)
    steps = list(toy.stream(_blocks(x, 777), window_ms=1000, hop_ms=250))
    assert [s.time_ms for s in steps] == [1000.0 + 250 * k for k in range(9)]
    for k, step in enumerate(steps):
        np.testing.assert_array_equal(step.embedding, toy.scene(x[4000 * k: 4000 * k + 16000]))
        assert step.score is None


@settings(max_examples=4, deadline=None)
@given(sizes=st.lists(st.integers(1, 9000), min_size=1, max_size=4))
def test_any_block_sizes_give_the_scores_of_one_call(toy, trained, sizes):
    head = trained[2]
    x = _noise(2 * 16000 + 123, seed=1)
    whole = list(toy.stream([x], window_ms=800, hop_ms=300, head=head))
    cuts, i, blocks = itertools.cycle(sizes), 0, []
    while i < len(x):
        n = next(cuts)
        blocks.append(x[i: i + n])
        i += n
    parts = list(toy.stream(blocks, window_ms=800, hop_ms=300, head=head))
    assert [s.time_ms for s in parts] == [s.time_ms for s in whole] and len(whole) == 5
    assert [s.score for s in parts] == [s.score for s in whole]
    np.testing.assert_array_equal(np.stack([s.embedding for s in parts]), np.stack([s.embedding for s in whole]))


def test_stream_at_another_rate_equals_the_offline_scene_at_that_rate(toy):
    x = _noise(2 * 8000, seed=2)
    steps = list(toy.stream(_blocks(x, 1000), window_ms=1000, hop_ms=500, sample_rate=8000))
    assert len(steps) == 3
    np.testing.assert_array_equal(steps[1].embedding, toy.scene(x[4000:12000], sample_rate=8000))


def test_a_stream_shorter_than_one_window_gives_one_result_for_all_of_it(toy):
    x = _noise(5000, seed=3)
    (step,) = list(toy.stream(_blocks(x, 1024), window_ms=1000, hop_ms=500))
    assert step.time_ms == pytest.approx(1000 * 5000 / 16000)
    np.testing.assert_array_equal(step.embedding, toy.scene(x))


def test_the_streamer_keeps_at_most_a_window_and_a_block(toy):
    streamer = Streamer(toy, window_ms=500, hop_ms=250)
    for block in _blocks(_noise(5 * 16000, seed=4), 1600):
        streamer.push(block)
        assert len(streamer.buffer) <= 8000 + 1600
    assert streamer.emitted == 19


def test_a_window_or_hop_under_one_sample_is_refused(toy):
    with pytest.raises(StreamError, match="--hop-ms"):
        Streamer(toy, window_ms=1000, hop_ms=0.01)


def test_integer_blocks_are_refused_with_the_fix(toy):
    with pytest.raises(AudioError, match="divide by 32768"):
        list(toy.stream([np.zeros(100, np.int16)], window_ms=100, hop_ms=50))


def test_pcm_blocks_decode_s16le_across_reads_that_split_samples():
    x = (np.random.default_rng(5).standard_normal(3000) * 8000).astype("<i2")
    stereo = np.repeat(x[:, None], 2, axis=1)

    class Dribble(io.BytesIO):  # a pipe that returns odd-sized reads
        def read1(self, n=-1):
            return super().read(min(n, 333))

    blocks = list(pcm_blocks(Dribble(stereo.tobytes()), "s16le", 10.0, 16000, channels=2))
    np.testing.assert_array_equal(np.concatenate(blocks), x.astype(np.float32) / 32768.0)


# ----------------------------------------------------------------------------------------------- heads
def test_a_saved_head_scores_like_the_probe_at_test_time(trained, tmp_path):
    res, xte, head = trained
    head.save(tmp_path / "head")
    loaded = Head.load(tmp_path / "head")
    np.testing.assert_array_equal(loaded.probabilities(xte), res.test_scores)
    np.testing.assert_array_equal(loaded.score(xte), res.test_scores[:, 1])
    assert json.loads((tmp_path / "head" / "head.json").read_text())["positive"] == 1


def test_the_head_file_holds_no_pickled_objects(trained, tmp_path):
    trained[2].save(tmp_path / "head")
    with np.load(tmp_path / "head" / "head.npz", allow_pickle=False) as z:
        assert {"mean", "std", "layer0_w", "layer0_gamma", "layer0_running_var", "layer1_w"} <= set(z.files)
        assert all(z[k].dtype == np.float32 for k in z.files)


def test_a_head_trained_on_other_embeddings_is_refused(trained):
    other = audiorep.load("toy", pooling="max")
    with pytest.raises(HeadError, match="pooling"):
        Streamer(other, 1000, 500, head=trained[2])
    passt = audiorep.load("toy-passt", pooling="mean")
    with pytest.raises(HeadError, match="another model"):
        trained[2].check_embedder(passt)


def test_saving_a_head_into_a_folder_with_files_needs_force(trained, tmp_path):
    trained[2].save(tmp_path / "head")
    with pytest.raises(HeadError, match="--force"):
        trained[2].save(tmp_path / "head")
    trained[2].save(tmp_path / "head", overwrite=True)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(HeadError, match="other files"):
        trained[2].save(tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


# ------------------------------------------------------------------------------------------------- CLI

def test_the_task_runner_hands_back_the_selected_head_of_each_split(toy, tmp_path):
    root = tiny_fsdd(tmp_path / "fsdd")
    grid = probes.Grid("tiny", (probes.GridPoint(hidden_layers=0, seed=1),), probes.Schedule(max_epochs=3))
    heads = []
    T.run("fsdd", toy, root, EmbeddingCache(tmp_path / "cache"), grid=grid, max_folds=2, progress=False, heads=heads)
    assert len(heads) == 2 and heads[0]["split"] != heads[1]["split"]
    assert heads[0]["classes"] == ["0", "1", "2"] and heads[0]["head"]["params"]["layers"][0]["w"].shape == (8, 3)
    assert not np.array_equal(heads[0]["head"]["mean"], heads[1]["head"]["mean"])  # each split's own standardisation


@pytest.mark.slow
def test_probe_saves_its_head_and_stream_scores_a_file_with_it(tmp_path, capsys):
    root = tiny_fsdd(tmp_path / "fsdd")
    head_dir = tmp_path / "head"
    args = ["probe", "--model", "toy", "--task", "fsdd", "--data-root", str(root), "--grid", "linear", "--max-folds",
            "1", "--cache", str(tmp_path / "cache"), "--save-head", str(head_dir), "-q"]
    assert main(args) == 0
    head = Head.load(head_dir)
    assert head.classes == ["0", "1", "2"] and head.positive is None and head.model["name"] == "toy"
    assert main(args) == 2  # the folder now holds a head: refused before any work without --force
    assert "--force" in capsys.readouterr().err
    wav = tmp_path / "a.wav"
    sf.write(wav, np.concatenate([tone(300.0, 1.0, 8000), tone(900.0, 1.0, 8000)]), 8000)
    assert main(["stream", "--model", "toy", "--head", str(head_dir), str(wav), "--window-ms", "500",
                 "--hop-ms", "500", "--jsonl"]) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["time_ms"] for r in rows] == [500.0, 1000.0, 1500.0, 2000.0]
    assert set(rows[0]["score"]) == {"0", "1", "2"}
    assert "real-time factor" in captured.err
    expected = list(audiorep.load("toy").stream([sf.read(wav, dtype="float32")[0]], 500, 500, sample_rate=8000,
                                                head=head))
    assert [r["score"] for r in rows] == [dict(zip(head.classes, map(float, s.score))) for s in expected]


def test_stream_refuses_pcm_flags_for_a_file(tmp_path, capsys):
    wav = tmp_path / "a.wav"
    sf.write(wav, tone(300.0, 0.5, 16000), 16000)
    assert main(["stream", "--model", "toy", str(wav), "--rate", "8000"]) == 2
    assert "stdin" in capsys.readouterr().err


@pytest.mark.slow
def test_an_hour_streams_in_constant_memory(toy):
    """One hour of generated audio in 100 ms blocks, a 2 s window every 2 s: the peak RSS after the hour is that
    after its first minute (a buffer of the whole hour would be 230 MB)."""
    rate, block = 16000, 1600

    def blocks(seconds, seed):
        rng = np.random.default_rng(seed)
        for _ in range(seconds * rate // block):
            yield (0.1 * rng.standard_normal(block)).astype(np.float32)

    steps = sum(1 for _ in toy.stream(blocks(60, 0), window_ms=2000, hop_ms=2000))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    count = sum(1 for _ in toy.stream(blocks(3600, 1), window_ms=2000, hop_ms=2000))
    growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert steps == 30 and count == 1800
    assert growth_mb < 20, f"peak RSS grew {growth_mb:.1f} MiB over an hour of streaming"


def test_stream_names_a_missing_head_folder_in_one_line(tmp_path, capsys):
    wav = tmp_path / "a.wav"
    sf.write(wav, tone(300.0, 0.5, 16000), 16000)
    assert main(["stream", "--model", "toy", "--head", str(tmp_path / "none"), str(wav)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err and "--save-head" in err


def test_stream_names_an_unreadable_file(tmp_path, capsys):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    assert main(["stream", "--model", "toy", str(bad)]) == 2
    assert "cannot read it as audio" in capsys.readouterr().err
