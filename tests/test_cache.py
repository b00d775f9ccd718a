"""Embedding cache: computed once per key, resumable by shard, invalidated by any key part, memory-mapped."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import tone

from audiorep.audio.io import save_audio
from audiorep.data.sources import Record
from audiorep.downstream.cache import CacheError, EmbeddingCache

RATE = 8000


def _records(tmp_path, n=7):
    out = []
    for i in range(n):
        path = tmp_path / "audio" / f"clip{i}.wav"
        save_audio(path, tone(200.0 + 50 * i, seconds=0.1 + 0.02 * i, rate=RATE), RATE)
        out.append(Record(path=str(path), labels=(i % 2,), label_names=(str(i % 2),), split="train", fold=None,
                          group=f"g{i}", dataset="folder"))
    return out


class Counter:
    """f(clips) -> f32[B, 2] = (length, mean |x|); counts the clips it saw."""

    def __init__(self, fail_after: int | None = None):
        self.seen = 0
        self.fail_after = fail_after

    def __call__(self, clips):
        if self.fail_after is not None and self.seen >= self.fail_after:
            raise KeyboardInterrupt  # the run is killed
        self.seen += len(clips)
        return np.array([[len(c), np.abs(c).mean()] for c in clips], np.float32)


SPEC = {"model": "counter", "sample_rate": RATE, "checkpoint": "abc"}


def test_embeddings_follow_record_order(tmp_path):
    recs = _records(tmp_path)
    emb = EmbeddingCache(tmp_path / "c", shard_size=3).embed(Counter(), recs, spec=SPEC, progress=False)
    assert emb.shape == (7, 2) and emb.dtype == np.float32
    np.testing.assert_array_equal(emb[:, 0], [int(RATE * (0.1 + 0.02 * i)) for i in range(7)])


def test_second_call_reads_the_memory_mapped_file_without_computing(tmp_path):
    recs = _records(tmp_path)
    cache = EmbeddingCache(tmp_path / "c", shard_size=3)
    first = np.array(cache.embed(Counter(), recs, spec=SPEC, progress=False))
    again = Counter()
    emb = cache.embed(again, recs, spec=SPEC, progress=False)
    assert again.seen == 0
    assert isinstance(emb, np.memmap) and not emb.flags.writeable
    np.testing.assert_array_equal(emb, first)


def test_interrupted_run_resumes_at_the_first_missing_shard(tmp_path):
    recs = _records(tmp_path)
    cache = EmbeddingCache(tmp_path / "c", shard_size=3)
    with pytest.raises(KeyboardInterrupt):
        cache.embed(Counter(fail_after=3), recs, spec=SPEC, progress=False)
    (key_dir,) = (tmp_path / "c").iterdir()
    assert sorted(p.name for p in key_dir.glob("shard_*.npy")) == ["shard_00000.npy"]
    rest = Counter()
    emb = cache.embed(rest, recs, spec=SPEC, progress=False)
    assert rest.seen == 4  # shards 1 and 2 only
    assert emb.shape == (7, 2) and list(key_dir.glob("shard_*")) == []
    assert json.loads((key_dir / "meta.json").read_text())["status"] == "complete"


@pytest.mark.parametrize("change", ["checkpoint", "layer", "records", "crop", "file"])
def test_any_key_part_change_recomputes_in_a_new_directory(tmp_path, change):
    recs = _records(tmp_path)
    cache = EmbeddingCache(tmp_path / "c", shard_size=4)
    cache.embed(Counter(), recs, spec=SPEC, progress=False)
    spec, crop = dict(SPEC), None
    if change == "checkpoint":
        spec["checkpoint"] = "def"
    elif change == "layer":
        spec["layer"] = 3
    elif change == "records":
        recs = recs[:-1]
    elif change == "crop":
        crop = 0.05
    else:  # the audio file was replaced by a longer one
        save_audio(recs[0].path, tone(300.0, seconds=0.5, rate=RATE), RATE)
    again = Counter()
    cache.embed(again, recs, spec=spec, crop_s=crop, progress=False)
    assert again.seen == len(recs)
    assert len(list((tmp_path / "c").iterdir())) == 2


def test_windowed_records_are_cut_to_their_window(tmp_path):
    rec = _records(tmp_path, n=1)[0]
    windowed = Record(**{**rec.__dict__, "start_s": 0.02, "end_s": 0.07})
    emb = EmbeddingCache(tmp_path / "c").embed(Counter(), [windowed], spec=SPEC, progress=False)
    assert emb[0, 0] == pytest.approx(0.05 * RATE)


def test_embedder_like_objects_key_on_their_cache_spec(tmp_path):
    class Model:
        name, sample_rate = "m", RATE

        def __init__(self, ckpt):
            self.ckpt = ckpt

        def cache_spec(self):
            return {"model": self.name, "sample_rate": self.sample_rate, "checkpoint": self.ckpt}

        def scene(self, clips):
            return np.ones((len(clips), 3), np.float32) * (1.0 if self.ckpt == "a" else 2.0)

    recs = _records(tmp_path, n=2)
    cache = EmbeddingCache(tmp_path / "c")
    assert cache.embed(Model("a"), recs, progress=False)[0, 0] == 1.0
    assert cache.embed(Model("b"), recs, progress=False)[0, 0] == 2.0


def test_plain_function_without_spec_is_refused(tmp_path):
    with pytest.raises(CacheError, match="spec="):
        EmbeddingCache(tmp_path / "c").embed(Counter(), _records(tmp_path, n=1), progress=False)


def test_wrong_output_shape_is_reported(tmp_path):
    with pytest.raises(CacheError, match=r"f32\[B, D\]"):
        EmbeddingCache(tmp_path / "c").embed(lambda clips: np.zeros(3), _records(tmp_path, n=2), spec=SPEC,
                                             progress=False)


def test_a_second_caller_waits_for_the_first_and_reads_its_embeddings(tmp_path, monkeypatch):
    """The second caller arrives while the first holds the key's lock mid-computation: it waits, computes nothing,
    and reads the first one's file. Events order the two threads: the first caller's embedding function does not
    return until the second caller is about to block on the lock (or, if nothing blocks it, has finished)."""
    import threading
    import types

    from audiorep.downstream import cache as cache_module

    recs = _records(tmp_path)
    cache = EmbeddingCache(tmp_path / "c", shard_size=3)
    first_computing, second_blocked_or_done = threading.Event(), threading.Event()

    real = cache_module.fcntl

    def flock(fd, op):
        if threading.current_thread().name == "second" and op == real.LOCK_EX:  # the blocking wait for the lock
            second_blocked_or_done.set()
        return real.flock(fd, op)

    monkeypatch.setattr(cache_module, "fcntl", types.SimpleNamespace(
        flock=flock, LOCK_EX=real.LOCK_EX, LOCK_NB=real.LOCK_NB, LOCK_UN=real.LOCK_UN))

    class First(Counter):
        def __call__(self, clips):
            first_computing.set()
            assert second_blocked_or_done.wait(timeout=120), "the second caller neither blocked nor finished"
            return super().__call__(clips)

    fns, results, errors = [First(), Counter()], [None, None], []

    def run(i):
        try:
            if i == 1:
                assert first_computing.wait(timeout=120), "the first caller never started computing"
            results[i] = np.array(cache.embed(fns[i], recs, spec=SPEC, progress=False))
        except BaseException as e:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(e)
        finally:
            if i == 1:
                second_blocked_or_done.set()

    threads = [threading.Thread(target=run, args=(i,), name=name) for i, name in enumerate(("first", "second"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert [f.seen for f in fns] == [len(recs), 0]  # the first computed everything, the second only read
    np.testing.assert_array_equal(results[1], results[0])
