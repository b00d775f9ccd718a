"""Song-level detection (SONICS): chunk windows, the embedding cache per window, mean / max / attention heads over a
song's chunks (masking), the duration table and per-generator scores, on a miniature SONICS layout."""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf
from test_sources_datasets import FAKE_HEADER, REAL_HEADER

from audiorep.data.sources import read_dataset
from audiorep.downstream import mil
from audiorep.downstream import tasks as T
from audiorep.downstream.cache import EmbeddingCache
from audiorep.downstream.probes import Schedule
from audiorep.downstream.tasks.songs import (
    Chunking,
    chunk_songs,
    generator_scores,
    parse_durations,
    run_songs,
    song_seconds,
)

RATE = 16000
CHUNKS = Chunking(2.0, 2.0, durations=(1.0, 2.0, 4.0, None))
# (generator, platform) of the fake songs, as SONICS' `algorithm` and `source` columns name them
GENERATORS = [("chirp-v3.5", "Suno"), ("udio-120s", "Udio")]


def song(seconds: float, fake: bool, seed: int) -> np.ndarray:
    """A 'song': a harmonic melody (notes of 0.5 s) over noise; fake songs carry a faint 5 kHz whine throughout."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = rng.choice([196.0, 220.0, 247.0, 262.0, 294.0], size=int(seconds * 2) + 1)[(t * 2).astype(int)]
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in (1, 2, 3)) * 0.2 + 0.02 * rng.standard_normal(t.size)
    if fake:
        x = x + 0.05 * np.sin(2 * np.pi * 5000.0 * t)
    return x.astype(np.float32)


def make_sonics(root: Path, n_train: int = 8, n_val: int = 4, n_test: int = 4, real_ext: str = ".wav",
                fake_ext: str = ".mp3", test_artist_seen: bool = False) -> Path:
    """The SONICS layout (real_songs.csv + real_songs/, fake_songs.csv + fake_songs/) with n real and n fake songs
    per split, of 4.5 to 9 s; real songs as wav (the official downloader's format), fake ones as mp3 (as
    distributed). The `duration` column lists 30 s more than the audio holds, so the official >= 30 s filter keeps
    every song while the audio stays short. Each artist sings in one split, unless `test_artist_seen` puts the first
    test artist in training too (as in the official split)."""
    real_rows, fake_rows, i = [REAL_HEADER], [FAKE_HEADER], 0
    for split, n in (("train", n_train), ("valid", n_val), ("test", n_test)):
        for k in range(n):
            seconds = 4.5 + (i * 0.7) % 4.5
            artist = f"Artist {split} {k // 2}"
            if test_artist_seen and split == "test" and k == 0:
                artist = "Artist train 0"
            name = f"real_{i}"
            sf.write(str(_mk(root / "real_songs" / f"{name}{real_ext}")), song(seconds, False, i), RATE)
            real_rows.append(f'{i},{name},"Song {i}",{artist},2001,"la la",x,{30 + seconds},yt{i},real,False,0,0,False,'
                             f'{split}\n')
            gen, src = GENERATORS[k % 2]
            name = f"fake_{i}_{src.lower()}_0"
            sf.write(str(_mk(root / "fake_songs" / f"{name}{fake_ext}")), song(seconds, True, 1000 + i), RATE)
            fake_rows.append(f"{i},{name},t,{30 + seconds},{gen},pop,{src},x,love,pop,happy,full fake,1,{split}\n")
            i += 1
    (root / "real_songs.csv").write_text("".join(real_rows))
    (root / "fake_songs.csv").write_text("".join(fake_rows))
    return root


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


class BandEmbedder:
    """Energy in 16 bands of 500 Hz (log): enough to hear the fake songs' whine; counts the clips it embeds."""

    name, sample_rate = "band-energy", RATE

    def __init__(self):
        self.clips = 0

    def cache_spec(self):
        return {"model": self.name, "sample_rate": self.sample_rate, "checkpoint": "fixed"}

    def scene(self, clips):
        self.clips += len(clips)
        spec = [np.abs(np.fft.rfft(c, n=2 * 8192))[:8192] ** 2 / len(c) for c in clips]
        return np.log(np.stack([s.reshape(16, 512).sum(1) for s in spec]) + 1e-6).astype(np.float32)


TINY = mil.make_head_grid("linear", max_epochs=30, batch_size=8)  # one shape: one compile per duration


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_sonics(tmp_path_factory.mktemp("sonics"))


@pytest.fixture(scope="module")
def report(corpus, tmp_path_factory):
    cache = EmbeddingCache(tmp_path_factory.mktemp("cache"))
    return run_songs("sonics", BandEmbedder(), corpus, cache, chunking=CHUNKS, grid=TINY, progress=False)


# ------------------------------------------------------------------------------------------ the head
def test_mean_max_and_attention_pooling_on_a_hand_checked_song():
    x = jnp.array([[[1.0, 2.0], [3.0, 0.0], [50.0, -50.0]]])  # the third slot is padding
    mask = jnp.array([[True, True, False]])
    attn = {"v": jnp.eye(2), "c": jnp.zeros(2), "w": jnp.array([1.0, 0.0])}
    mean, top, att = (np.asarray(mil.pool_chunks(attn, x, mask, p))[0] for p in range(3))
    np.testing.assert_allclose(mean, [2.0, 1.0])
    np.testing.assert_allclose(top, [3.0, 2.0])
    s = np.tanh([1.0, 3.0])  # w . tanh(V h + c) per valid chunk
    a = np.exp(s) / np.exp(s).sum()
    np.testing.assert_allclose(att, a[0] * np.array([1.0, 2.0]) + a[1] * np.array([3.0, 0.0]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(mil.attention_weights(attn, x, mask))[0], [a[0], a[1], 0.0], rtol=1e-6)


@pytest.mark.parametrize("pooling", mil.POOLINGS)
def test_padding_never_changes_a_songs_score(pooling):
    rng = np.random.default_rng(3)
    params = mil.init_head(mil.HeadPoint(pooling=pooling, hidden_layers=1, hidden_dim=8, seed=4), 6, 2, 16)
    chunks = rng.standard_normal((3, 6)).astype(np.float32)
    scores = []
    for slots, fill in ((3, 0.0), (4, 1e4), (16, np.nan), (16, -np.inf)):
        x = np.full((1, slots, 6), fill, np.float32)
        x[0, :3] = chunks
        mask = np.arange(slots)[None] < 3
        scores.append(np.asarray(mil.head_logits(params, jnp.asarray(x), jnp.asarray(mask),
                                                 mil.POOLINGS.index(pooling))))
    for s in scores[1:]:
        np.testing.assert_allclose(s, scores[0], rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(scores[0]))


def test_padding_slots_and_padded_songs_do_not_change_predictions_of_a_trained_head():
    rng = np.random.default_rng(0)
    table = rng.standard_normal((40, 5)).astype(np.float32)
    rows = [list(range(i * 4, i * 4 + 1 + i % 4)) for i in range(10)]
    y = np.array([i % 2 for i in range(10)])
    grid = mil.HeadGrid("mlp", tuple(mil.HeadPoint(pooling=p, hidden_layers=1, hidden_dim=8, seed=i)
                                     for i, p in enumerate(mil.POOLINGS)), Schedule(6, 3, 2, 4))
    run = mil.train_heads(table, mil.Bags.from_lists(rows, y), mil.Bags.from_lists(rows, y), grid)
    for i in range(len(grid.points)):
        a = mil.predict_heads(run, i, table, mil.Bags.from_lists(rows, y))
        b = mil.predict_heads(run, i, table, mil.Bags.from_lists(rows, y, slots=32), batch=3)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_head_trained_in_the_grid_equals_the_same_head_trained_alone():
    rng = np.random.default_rng(1)
    table = rng.standard_normal((60, 4)).astype(np.float32)
    y = np.array([i % 2 for i in range(20)])
    table[np.arange(0, 60, 3), 0] += 2.0 * np.repeat(y, 1)  # the first chunk of a positive song stands out
    rows = [[3 * i, 3 * i + 1, 3 * i + 2] for i in range(20)]
    train, val = mil.Bags.from_lists(rows[:14], y[:14]), mil.Bags.from_lists(rows[14:], y[14:])
    sched = Schedule(max_epochs=12, check_every=3, patience=2, batch_size=4)
    grid = mil.HeadGrid("g", tuple(mil.HeadPoint(pooling=p, lr=3e-3, seed=7 + i) for i, p in enumerate(mil.POOLINGS)),
                        sched)
    both = mil.train_heads(table, train, val, grid)
    alone = mil.train_heads(table, train, val, mil.HeadGrid("one", (grid.points[2],), sched))
    assert both.val_scores[2] == alone.val_scores[0] and both.best_epochs[2] == alone.best_epochs[0]
    for a, b in zip(jax.tree.leaves(both.params[2]), jax.tree.leaves(alone.params[0])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_head_grid_has_every_configuration_with_each_pooling():
    grid = mil.make_head_grid("full", seed=2, repeats=2)
    assert grid.configs == 24 and len(grid.points) == 48
    assert {p.pooling for p in grid.points} == set(mil.POOLINGS)
    assert len({p.seed for p in grid.points}) == 48
    with pytest.raises(mil.ProbeError, match="poolings"):
        mil.make_head_grid("fast", poolings=("median",))


# ------------------------------------------------------------------------------------------ chunking
def test_chunk_windows_have_full_length_and_cover_the_whole_song():
    c = Chunking(10.0, 10.0)
    assert c.song_windows(35.0) == [(0.0, 10.0), (10.0, 20.0), (20.0, 30.0), (25.0, None)]
    assert c.song_windows(30.0) == [(0.0, 10.0), (10.0, 20.0), (20.0, 30.0)]
    assert Chunking(10.0, 5.0).song_windows(22.0) == [(0.0, 10.0), (5.0, 15.0), (10.0, 20.0), (12.0, None)]
    assert c.song_windows(8.0) == [(0.0, None)]


def test_a_duration_is_the_first_n_seconds_of_the_song():
    c = Chunking(10.0, 10.0)
    assert c.windows(35.0, 5.0) == [(0.0, 5.0)]
    assert c.windows(35.0, 10.0) == [(0.0, 10.0)]
    assert c.windows(35.0, 30.0) == [(0.0, 10.0), (10.0, 20.0), (20.0, 30.0)]
    assert c.windows(35.0, None) == c.song_windows(35.0)
    assert c.windows(25.0, 30.0) == c.song_windows(25.0)  # a song shorter than the duration: all of it
    whole = Chunking(0.0)
    assert whole.windows(35.0, 30.0) == [(0.0, 30.0)] and whole.windows(35.0, None) == [(0.0, None)]


def test_chunk_table_shares_windows_between_durations(corpus):
    idx = read_dataset("sonics", corpus)
    songs = idx.records[:2]
    table = chunk_songs(songs, [9.0, 5.0], CHUNKS)
    first = table.rows[2.0][0][0]
    assert table.rows[4.0][0][0] == first and table.rows[None][0][0] == first  # [0, 2) is embedded once
    assert [(r.start_s, r.end_s) for r in (table.records[i] for i in table.rows[None][0])] == [
        (0.0, 2.0), (2.0, 4.0), (4.0, 6.0), (6.0, 8.0), (7.0, None)]
    assert [name for name, _ in table.families] == ["first 1s", "song"]


def test_the_chunks_of_a_song_decode_its_file_once(corpus, tmp_path, monkeypatch):
    import audiorep.downstream.cache as C

    decoded = []
    real = C.load_audio
    monkeypatch.setattr(C, "load_audio", lambda path, **kw: decoded.append(path) or real(path, **kw))
    songs = read_dataset("sonics", corpus).records[:2]
    assert [round(song_seconds(r), 2) for r in songs] == [4.5, 5.2]
    table = chunk_songs(songs, [song_seconds(r) for r in songs], Chunking(2.0, 1.0, durations=(None,)))
    emb = EmbeddingCache(tmp_path / "cache").embed(BandEmbedder(), table.records, progress=False)
    assert len(table.records) == 9 and emb.shape == (9, 16)  # starts 0, 1, 2 + tail 2.5; 0, 1, 2, 3 + tail 3.2
    assert sorted(decoded) == sorted(r.path for r in songs)  # 9 windows, 2 decodes
    whole = [C.load_clip(r, RATE) for r in table.records[:2]]
    np.testing.assert_array_equal(whole[1], C.load_clips(table.records[:2], RATE)[1])


def test_bad_chunking_names_the_flag():
    with pytest.raises(T.TaskError, match="--hop-seconds"):
        Chunking(5.0, 10.0)
    with pytest.raises(T.TaskError, match="--durations"):
        parse_durations("5,ten,whole")
    assert parse_durations("5, 10s,30,whole") == (5.0, 10.0, 30.0, None)


# ------------------------------------------------------------------------------------------ the task
def test_reader_finds_real_songs_as_wav_and_fake_songs_as_mp3(corpus):
    idx = read_dataset("sonics", corpus)
    assert idx.complete and len(idx) == 32
    assert {Path(r.path).suffix for r in idx.records if r.labels == (0,)} == {".wav"}
    assert {Path(r.path).suffix for r in idx.records if r.labels == (1,)} == {".mp3"}
    fake = next(r for r in idx.records if r.labels == (1,))
    assert fake.info["algorithm"] in {g for g, _ in GENERATORS} and fake.info["source"] in {"Suno", "Udio"}


def test_duration_table_has_a_row_per_duration_and_pooling(report):
    assert [r.task for r in report.results] == ["sonics_1s", "sonics_2s", "sonics_4s", "sonics"]
    assert [(row["duration"], row["pooling"]) for row in report.table] == [
        (d, p) for d in ("1s", "2s", "4s", "whole") for p in mil.POOLINGS]
    assert all(set(row) >= {"f1", "sensitivity", "specificity", "roc_auc", "eer", "val_f1"} for row in report.table)
    for res in report.results:
        assert res.metric == "f1" and res.probe == "song-head" and res.mean == res.scores["f1"]
        assert sum(row["selected"] for row in report.table if res.task.endswith(row["duration"])
                   or (res.task == "sonics" and row["duration"] == "whole")) == 1
        assert res.extra["sizes"] == [{"train": 16, "validation": 8, "test": 8}]
    whole = report.primary
    assert whole.task == "sonics" and whole.scores["roc_auc"] > 0.9 and whole.mean > 0.8


def test_chunks_per_song_follow_the_duration(report):
    per = [r.extra["songs"]["chunks_per_song"]["test"] for r in report.results]
    assert per[:3] == [1.0, 1.0, 2.0] and per[3] > 2.0  # 1 s and 2 s: one window; 4 s: two chunks; whole: all
    assert report.results[0].extra["songs"]["chunk_s"] == 2.0 and report.results[0].extra["songs"]["hop_s"] == 2.0


def test_per_generator_scores_use_that_generators_fakes_against_all_real_songs():
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    fake_p = np.array([0.1, 0.6, 0.2, 0.9, 0.4, 0.7, 0.15])
    probs = np.stack([1 - fake_p, fake_p], 1)
    gens = ["", "", "", "a", "a", "b", "b"]
    out = generator_scores(y, probs, gens)
    assert out["a"]["n"] == 2 and out["a"]["sensitivity"] == 0.5 and out["b"]["sensitivity"] == 0.5
    # a: fakes 0.9, 0.4 against reals 0.1, 0.6, 0.2 -> 5 of 6 pairs ordered; b: 0.7, 0.15 -> 4 of 6
    assert out["a"]["roc_auc"] == pytest.approx(5 / 6) and out["b"]["roc_auc"] == pytest.approx(4 / 6)


def test_per_generator_and_per_group_results_cover_the_test_songs(report):
    res = report.primary
    gens = res.extra["per_generator"]
    assert set(gens) == {g for g, _ in GENERATORS} and sum(g["n"] for g in gens.values()) == 4
    groups = res.extra["groups"]
    assert groups["generator"]["metric"] == "sensitivity" and groups["generator"]["counts"] == {
        "chirp-v3.5": 2, "udio-120s": 2}
    assert groups["platform"]["counts"] == {"Suno": 2, "Udio": 2}
    assert "artist" not in groups and "fake_type" not in groups  # one value only: nothing to compare


def test_official_split_may_share_artists_and_reports_them_seen(tmp_path):
    root = make_sonics(tmp_path / "s", test_artist_seen=True)
    spec = T.get_task("sonics")
    (split,) = spec.splits(spec.read(root))
    assert {r.group for r in split.train} & {r.group for r in split.test} == {"artist:Artist train 0"}
    res = run_songs("sonics", BandEmbedder(), root, EmbeddingCache(tmp_path / "c"),
                    chunking=Chunking(0.0, durations=(None,)), grid=TINY, progress=False)
    artist = res.primary.extra["groups"]["artist"]
    assert artist["metric"] == "specificity" and artist["counts"] == {"seen": 1, "unseen": 3}


def test_chunk_embeddings_are_cached_and_another_hop_recomputes(corpus, tmp_path):
    cache, emb = EmbeddingCache(tmp_path / "cache"), BandEmbedder()
    chunking = Chunking(2.0, 2.0, durations=(1.0, None))
    run_songs("sonics", emb, corpus, cache, chunking=chunking, grid=TINY, progress=False)
    first = emb.clips
    run_songs("sonics", emb, corpus, cache, chunking=chunking, grid=TINY, progress=False)
    assert first > 32 and emb.clips == first  # the rerun embeds nothing
    run_songs("sonics", emb, corpus, cache, chunking=Chunking(2.0, 1.0, durations=(1.0, None)), grid=TINY,
              progress=False)
    assert emb.clips > 2 * first - 32  # a new hop: new song chunks (the [0, 1) windows are reused)


def test_run_refuses_a_cross_domain_protocol_for_the_song_task(corpus, tmp_path):
    with pytest.raises(T.TaskError, match="--protocol cross-source does not apply"):
        T.run("sonics", BandEmbedder(), corpus, EmbeddingCache(tmp_path / "c"), protocol="cross-source")


def test_run_of_the_song_task_returns_the_whole_song_row(corpus, tmp_path):
    res = T.run("sonics", BandEmbedder(), corpus, EmbeddingCache(tmp_path / "c"), grid=TINY, progress=False)
    assert res.task == "sonics" and res.metric == "f1" and math.isfinite(res.mean)
    assert res.extra["songs"]["duration"] == "whole" and res.extra["songs"]["chunk_s"] == 10.0


# ------------------------------------------------------------------------------------------ the command
def test_probe_command_prints_the_duration_table_and_appends_a_row_per_duration(corpus, tmp_path, capsys):
    from audiorep.cli import main
    from audiorep.downstream.leaderboard import read_results

    store = tmp_path / "results.jsonl"
    rc = main(["probe", "--model", "logmel", "--task", "sonics", "--data-root", str(corpus), "--chunk-seconds", "2",
               "--hop-seconds", "2", "--durations", "1,whole", "--grid", "linear",
               "--cache", str(tmp_path / "cache"), "--results", str(store), "-q"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "per generator" in out and "chirp-v3.5" in out and "udio-120s" in out
    assert all(p in out for p in mil.POOLINGS) and "whole" in out and "1s" in out
    rows = read_results(store)
    assert [r.task for r in rows] == ["sonics_1s", "sonics"] and {r.model for r in rows} == {"logmel-beats"}
    assert rows[1].extra["songs"]["chunk_s"] == 2.0 and set(rows[1].extra["poolings"]) == set(mil.POOLINGS)


def test_song_flags_are_checked_before_any_work(corpus, tmp_path, capsys):
    from audiorep.cli import main

    rc = main(["probe", "--model", "logmel", "--task", "sonics", "--data-root", str(corpus), "--chunk-seconds", "2",
               "--hop-seconds", "5", "--cache", str(tmp_path / "cache"), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "--hop-seconds" in err and len(err.strip().splitlines()) == 1
    rc = main(["probe", "--model", "logmel", "--task", "sonics", "--data-root", str(corpus), "--probe", "knn",
               "--cache", str(tmp_path / "cache"), "-q"])
    assert rc == 2 and "--probe knn does not apply" in capsys.readouterr().err
    rc = main(["probe", "--model", "logmel", "--task", "fsdd", "--data-root", str(corpus), "--durations", "5",
               "--cache", str(tmp_path / "cache"), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "--durations applies to song tasks" in err
    assert not (tmp_path / "cache").exists()
