"""grain pipelines: exact replay from saved state, disjoint shards, deterministic crops, eval chunking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from audiorep.audio.io import load_audio, save_audio
from audiorep.data import pipeline as pl
from audiorep.data.sources import DatasetIndex, Record, read_dataset

RATE = 8000
CLASSES = ("hum", "hiss", "tick")


def write_clips(root: Path, per_class: int = 4) -> Path:
    rng = np.random.default_rng(7)
    for c, name in enumerate(CLASSES):
        for i in range(per_class):
            n = 1200 + 450 * i + 100 * c  # 0.15 - 0.35 s, all different
            save_audio(root / name / f"{i}.wav", rng.uniform(-0.5, 0.5, n).astype(np.float32), RATE)
    return root


@pytest.fixture
def index(tmp_path) -> DatasetIndex:
    return read_dataset("folder", write_clips(tmp_path / "clips"))


@pytest.fixture
def source(index) -> pl.RecordSource:
    return pl.records_source(index, RATE)


ONE = pl.Shard(0, 1)


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def train(source, **kw):
    args = dict(clip_samples=1000, batch_size=4, seed=3, shard=ONE)
    return pl.train_dataset(source, **(args | kw))


# ------------------------------------------------------------------------------------------ train
def test_train_batches_have_the_documented_shapes_and_dtypes(source):
    batch = next(iter(train(source)))
    assert batch["audio"].shape == (4, 1000) and batch["audio"].dtype == np.float32
    assert batch["mask"].shape == (4, 1000) and batch["mask"].dtype == np.bool_
    assert batch["label"].shape == (4,) and batch["label"].dtype == np.int32
    assert batch["index"].shape == (4,) and batch["index"].dtype == np.int64


def test_labels_follow_the_records(source, index):
    for batch in take(iter(train(source)), 6):
        for i, label in zip(batch["index"], batch["label"]):
            assert label == index.records[i].labels[0]


def test_restored_iterator_replays_the_same_batches(source):
    ds = train(source)
    it = iter(ds)
    take(it, 2)
    state = it.get_state()
    expected = take(it, 5)  # crosses the epoch boundary (3 batches per epoch)
    fresh = iter(ds)
    fresh.set_state(state)
    assert_same_batches(take(fresh, 5), expected)


@pytest.mark.slow
def test_worker_processes_give_the_same_batches_and_replay_from_state(source):
    # One test for both properties: every spawned worker pays seconds of imports on a 2-core CI machine.
    ds = train(source, worker_count=2)
    it = iter(ds)
    first = take(it, 2)
    state = it.get_state()
    expected = take(it, 4)
    it.close()
    assert_same_batches(first + expected, take(iter(train(source)), 6))
    fresh = iter(ds)
    fresh.set_state(state)
    got = take(fresh, 4)
    fresh.close()
    assert_same_batches(got, expected)


def test_steps_per_epoch_counts_the_batches_of_one_epoch(source):
    for shard, batch in ((ONE, 4), (ONE, 5), (pl.Shard(1, 2), 4)):
        batches = list(pl.train_dataset(source, clip_samples=10, batch_size=batch, seed=0, num_epochs=1, shard=shard))
        assert pl.steps_per_epoch(source, batch, shard) == len(batches)


def test_each_epoch_is_a_new_permutation_of_the_records(source):
    ds = train(source, batch_size=1, num_epochs=2)
    order = [int(b["index"][0]) for b in ds]
    first, second = order[:12], order[12:]
    assert sorted(first) == sorted(second) == list(range(12))
    assert first != second


def test_crop_depends_only_on_seed_epoch_and_record(source):
    shuffled = {int(b["index"][0]): b["audio"][0] for b in train(source, batch_size=1, num_epochs=1)}
    in_order = {int(b["index"][0]): b["audio"][0] for b in train(source, batch_size=1, num_epochs=1, shuffle=False)}
    other_seed = {int(b["index"][0]): b["audio"][0] for b in train(source, batch_size=1, num_epochs=1, seed=4)}
    for i in range(12):
        np.testing.assert_array_equal(shuffled[i], in_order[i])
    assert any(not np.array_equal(shuffled[i], other_seed[i]) for i in range(12))


def test_crop_is_a_window_of_the_decoded_clip(source, index):
    batch = next(iter(train(source, batch_size=12, num_epochs=1)))
    for row, i in enumerate(batch["index"]):
        clip, _ = load_audio(index.records[i].path)
        windows = np.lib.stride_tricks.sliding_window_view(clip, 1000)
        assert np.any(np.all(windows == batch["audio"][row], axis=1))
        assert batch["mask"][row].all()


def test_short_clips_are_zero_padded_and_masked(source, index):
    batch = next(iter(train(source, clip_samples=4000, batch_size=12, num_epochs=1)))
    for row, i in enumerate(batch["index"]):
        clip, _ = load_audio(index.records[i].path)
        np.testing.assert_array_equal(batch["audio"][row, :clip.size], clip)
        assert batch["mask"][row].sum() == clip.size
        assert not batch["audio"][row, clip.size:].any()


def test_two_processes_get_disjoint_equal_training_shards(source):
    seen = []
    for p in range(2):
        ds = pl.train_dataset(source, clip_samples=500, batch_size=1, seed=0, num_epochs=1, shard=pl.Shard(p, 2))
        seen.append([int(b["index"][0]) for b in ds])
    assert len(seen[0]) == len(seen[1]) == 6
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(12))


def test_uneven_training_shards_drop_the_remainder_to_stay_in_lockstep(source):
    sizes = [len(list(pl.train_dataset(source, clip_samples=500, batch_size=1, seed=0, num_epochs=1,
                                       shard=pl.Shard(p, 5)))) for p in range(5)]
    assert sizes == [2] * 5


def test_multilabel_records_become_multi_hot(tmp_path):
    save_audio(tmp_path / "a.wav", np.full(800, 0.1, np.float32), RATE)
    records = [Record(str(tmp_path / "a.wav"), (0, 2), ("x", "z"), "train", None, None, "audioset"),
               Record(str(tmp_path / "a.wav"), (), (), "train", None, None, "audioset")]
    index = DatasetIndex("audioset", records, ("x", "y", "z"), multilabel=True)
    batch = next(iter(pl.train_dataset(pl.records_source(index, RATE), clip_samples=400, batch_size=2, seed=0,
                                       shuffle=False, shard=ONE)))
    assert batch["label"].dtype == np.float32
    np.testing.assert_array_equal(batch["label"], [[1, 0, 1], [0, 0, 0]])


def test_record_windows_are_cut_from_the_file(tmp_path):
    wave = np.linspace(-0.5, 0.5, RATE).astype(np.float32)
    save_audio(tmp_path / "a.wav", wave, RATE)
    rec = Record(str(tmp_path / "a.wav"), (0,), ("x",), "", None, None, "folder", start_s=0.25, end_s=0.5)
    src = pl.records_source([rec], RATE, classes=("x",))
    batch = next(iter(pl.eval_dataset(src, chunk_samples=RATE, batch_size=1, shard=ONE)))
    clip, _ = load_audio(tmp_path / "a.wav")
    np.testing.assert_array_equal(batch["audio"][0, batch["mask"][0]], clip[2000:4000])


def test_too_few_records_for_the_shards_is_a_clear_error(source):
    with pytest.raises(pl.PipelineError, match="cannot feed 20 processes"):
        pl.train_dataset(source, clip_samples=10, batch_size=1, seed=0, shard=pl.Shard(0, 20))


def test_bad_arguments_are_clear_errors(source):
    with pytest.raises(pl.PipelineError, match="seed must be in"):
        train(source, seed=-1)
    with pytest.raises(pl.PipelineError, match="batch_size must be an integer >= 1"):
        train(source, batch_size=0)
    with pytest.raises(pl.PipelineError, match="needs 0 <= index < count"):
        pl.Shard(2, 2)
    with pytest.raises(pl.PipelineError, match="needs classes"):
        pl.records_source([], RATE)


def test_bad_load_options_are_clear_errors_for_train_and_eval(source):
    with pytest.raises(pl.PipelineError, match="prefetch must be an integer >= 1"):
        train(source, prefetch=0)
    with pytest.raises(pl.PipelineError, match="worker_count must be an integer >= 0"):
        pl.eval_dataset(source, chunk_samples=1000, batch_size=2, shard=ONE, worker_count=-1)
    with pytest.raises(TypeError, match="workers"):
        pl.eval_dataset(source, chunk_samples=1000, batch_size=2, shard=ONE, workers=2)


def test_default_shard_is_the_jax_process(source):
    assert pl.Shard.from_jax() == pl.Shard(0, 1)
    assert len(list(pl.train_dataset(source, clip_samples=10, batch_size=1, seed=0, num_epochs=1))) == 12


# ------------------------------------------------------------------------------------------ eval
def collect_chunks(ds):
    """clip index -> list of (chunk, offset, audio[mask]) over every real row."""
    clips: dict[int, list] = {}
    for batch in ds:
        for row in range(batch["index"].shape[0]):
            i = int(batch["index"][row])
            if i >= 0:
                clips.setdefault(i, []).append((int(batch["chunk"][row]), int(batch["offset"][row]),
                                                batch["audio"][row][batch["mask"][row]]))
    return clips


@pytest.mark.parametrize("hop", [700, 1000])
def test_eval_chunks_cover_each_clip_exactly(source, index, hop):
    clips = collect_chunks(pl.eval_dataset(source, chunk_samples=1000, hop_samples=hop, batch_size=5, shard=ONE))
    assert sorted(clips) == list(range(12))
    for i, chunks in clips.items():
        clip, _ = load_audio(index.records[i].path)
        assert [c for c, _, _ in chunks] == list(range(pl.num_chunks(clip.size, 1000, hop)))
        rebuilt = np.full(clip.size, np.nan, np.float32)
        for _, offset, piece in chunks:
            assert offset % hop == 0 and piece.size == min(1000, clip.size - offset)
            rebuilt[offset:offset + piece.size] = piece
        np.testing.assert_array_equal(rebuilt, clip)


def test_eval_last_batch_is_padded_with_index_minus_one(source):
    batches = list(pl.eval_dataset(source, chunk_samples=4000, batch_size=5, shard=ONE))  # 12 clips, 1 chunk each
    assert [b["audio"].shape for b in batches] == [(5, 4000)] * 3
    last = batches[-1]
    assert last["index"].tolist()[2:] == [-1, -1, -1] and last["label"].tolist()[2:] == [-1, -1, -1]
    assert not last["mask"][2:].any()


def test_two_processes_get_disjoint_eval_shards_covering_every_clip(source):
    shards = [set(collect_chunks(pl.eval_dataset(source, chunk_samples=1000, batch_size=3, shard=pl.Shard(p, 2))))
              for p in range(2)]
    assert not shards[0] & shards[1]
    assert shards[0] | shards[1] == set(range(12))


def test_eval_iterator_state_replays_mid_clip(source):
    ds = pl.eval_dataset(source, chunk_samples=600, hop_samples=300, batch_size=3, shard=ONE)
    it = iter(ds)
    take(it, 2)
    state = it.get_state()
    expected = take(it, 4)
    fresh = iter(ds)
    fresh.set_state(state)
    assert_same_batches(take(fresh, 4), expected)


@given(st.integers(1, 10_000), st.integers(1, 2_000), st.integers(1, 2_000))
def test_num_chunks_is_the_fewest_that_cover_the_clip(n, chunk, hop):
    hop = min(hop, chunk)  # hop > chunk would leave gaps by design
    k = pl.num_chunks(n, chunk, hop)
    assert (k - 1) * hop + chunk >= n
    assert k == 1 or (k - 2) * hop + chunk < n


@given(st.integers(1, 200_000), st.sampled_from([8000, 16000, 22050, 32000, 44100, 48000]),
       st.sampled_from([8000, 16000, 32000, 44100]))
def test_resampled_length_matches_soxr(n, orig, target):
    from audiorep.audio.io import resample

    assert pl.resampled_length(n, orig, target) == resample(np.zeros(n, np.float32), orig, target).size


def test_record_lengths_match_the_decoded_clips(index):
    src = pl.records_source(index, 22050)  # resampled from 8 kHz
    expected = [src.decode(src[i])[0].size for i in range(len(src))]
    assert src.lengths().tolist() == expected


def test_eval_steps_gives_every_process_the_same_number_of_batches(source, index):
    steps = pl.eval_steps(source, chunk_samples=1000, hop_samples=700, batch_size=3, process_count=2)
    seen = set()
    for p in range(2):
        batches = list(pl.eval_dataset(source, chunk_samples=1000, hop_samples=700, batch_size=3,
                                       shard=pl.Shard(p, 2), num_batches=steps))
        assert len(batches) == steps
        seen |= {int(i) for b in batches for i in b["index"] if i >= 0}
    assert seen == set(range(12))
    natural = [len(list(pl.eval_dataset(source, chunk_samples=1000, hop_samples=700, batch_size=3,
                                        shard=pl.Shard(p, 2)))) for p in range(2)]
    assert max(natural) == steps


def test_padding_batches_are_empty_and_replay_from_state(source):
    ds = pl.eval_dataset(source, chunk_samples=4000, batch_size=4, shard=ONE, num_batches=5)  # 3 real batches
    it = iter(ds)
    take(it, 2)
    state = it.get_state()
    rest = list(it)
    assert len(rest) == 3 and (rest[-1]["index"] == -1).all() and not rest[-1]["mask"].any()
    assert rest[-1]["audio"].shape == (4, 4000) and (rest[-1]["label"] == -1).all()
    fresh = iter(ds)
    fresh.set_state(state)
    assert_same_batches(list(fresh), rest)


def test_too_small_num_batches_is_a_clear_error(source):
    with pytest.raises(pl.PipelineError, match="more than num_batches=2"):
        list(pl.eval_dataset(source, chunk_samples=4000, batch_size=4, shard=ONE, num_batches=2))


# ------------------------------------------------------------------------------------------ TFDS -> pipeline
def test_tfds_build_feeds_the_pipeline_with_the_reader_labels(tmp_path, index):
    from audiorep.data.tfds import prepare

    prepare("folder", index.root, tmp_path / "tfds", sample_rate=RATE)
    src = pl.tfds_source(tmp_path / "tfds", "train")
    assert (src.classes, src.sample_rate, len(src)) == (index.classes, RATE, 12)
    for batch in take(iter(train(src)), 3):
        for row, i in enumerate(batch["index"]):
            assert batch["label"][row] == index.records[i].labels[0]
    evaluated = collect_chunks(pl.eval_dataset(src, chunk_samples=4000, batch_size=4, shard=ONE))
    for i, chunks in evaluated.items():
        np.testing.assert_array_equal(chunks[0][2], load_audio(index.records[i].path)[0])


def test_tfds_source_resamples_on_the_fly(tmp_path, index):
    from audiorep.data.tfds import prepare

    prepare("folder", index.root, tmp_path / "tfds", sample_rate=RATE)
    src = pl.tfds_source(tmp_path / "tfds", "train", sample_rate=16000)
    clips = collect_chunks(pl.eval_dataset(src, chunk_samples=16000, batch_size=4, shard=ONE))
    assert clips[0][0][2].size == 2 * load_audio(index.records[0].path)[0].size


def test_tfds_lengths_come_from_the_build_without_reading_audio(tmp_path, index):
    from audiorep.data.tfds import prepare

    prepare("folder", index.root, tmp_path / "tfds", sample_rate=RATE)
    for rate in (RATE, 16000):
        src = pl.tfds_source(tmp_path / "tfds", "train", sample_rate=rate)
        assert src.lengths().tolist() == [src.decode(src[i])[0].size for i in range(len(src))]


@pytest.mark.slow
def test_tfds_source_works_in_worker_processes(tmp_path, index):
    from audiorep.data.tfds import prepare

    prepare("folder", index.root, tmp_path / "tfds", sample_rate=RATE)
    src = pl.tfds_source(tmp_path / "tfds", "train")
    it = iter(train(src, worker_count=1))
    got = take(it, 2)
    it.close()
    assert_same_batches(got, take(iter(train(src)), 2))


# ------------------------------------------------------------------------------------------ orbax
def test_iterator_state_round_trips_through_an_orbax_checkpoint(tmp_path, source):
    import orbax.checkpoint as ocp

    ds = train(source)
    it = iter(ds)
    take(it, 2)
    params = {"w": np.arange(3.0)}
    with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
        mngr.save(7, args=ocp.args.Composite(state=ocp.args.StandardSave(params),
                                             **{pl.CHECKPOINT_ITEM: pl.save_args(it)}))
        expected = take(it, 3)  # moves on while the save may still be running: the state saved is the old one
        mngr.wait_until_finished()
    fresh = iter(ds)
    with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
        restored = mngr.restore(7, args=ocp.args.Composite(state=ocp.args.StandardRestore(params),
                                                           **{pl.CHECKPOINT_ITEM: pl.restore_args(fresh)}))
    np.testing.assert_array_equal(restored["state"]["w"], params["w"])
    assert_same_batches(take(restored[pl.CHECKPOINT_ITEM], 3), expected)


# ------------------------------------------------------------------------------------------ real audio
def test_real_recordings_go_through_a_tfds_build_into_batches(fsdd_dir, tmp_path):
    from audiorep.data.tfds import prepare

    subset = tmp_path / "fsdd"
    subset.mkdir()
    for f in sorted(fsdd_dir.glob("*_jackson_*.wav"))[:4] + sorted(fsdd_dir.glob("*_theo_*.wav"))[:4]:
        (subset / f.name).symlink_to(f)
    options = {"label_regex": r"^(\d)_", "group_regex": r"^\d_([a-z]+)_"}
    index = read_dataset("folder", subset, **options)
    prepare("folder", subset, tmp_path / "tfds", sample_rate=16000, options=options)
    src = pl.tfds_source(tmp_path / "tfds", "train")
    clips = collect_chunks(pl.eval_dataset(src, chunk_samples=16000, batch_size=4, shard=ONE))
    assert sorted(clips) == list(range(8))
    for i, rec in enumerate(index.records):
        expected, _ = load_audio(rec.path, 16000)  # 8 kHz originals, resampled once at build time
        got = np.concatenate([piece for _, _, piece in clips[i]])
        assert got.size == expected.size and np.max(np.abs(got - expected)) <= 1.0 / 32768 + 1e-7


# ------------------------------------------------------------------------------------------ corpus mixes
def test_balance_by_folder_repeats_the_smaller_folders_up_to_the_largest(tmp_path):
    rng = np.random.default_rng(0)
    for folder, n in (("speech", 9), ("synthetic/tones", 2), ("synthetic/noise", 1), ("tiny", 4)):
        for i in range(n):
            save_audio(tmp_path / folder / f"{i}.wav", rng.uniform(-0.5, 0.5, 900).astype(np.float32), RATE)
    index = read_dataset("folder", tmp_path, labels="none")
    mixed = pl.balance_by_folder(index.records, tmp_path)
    top = [Path(r.path).relative_to(tmp_path).parts[0] for r in mixed]
    assert {t: top.count(t) for t in set(top)} == {"speech": 9, "synthetic": 9, "tiny": 8}  # x1, x3, x2
    assert {r.path for r in mixed} == {r.path for r in index.records}
    with pytest.raises(pl.PipelineError, match="not under the data root"):
        pl.balance_by_folder(index.records, tmp_path / "speech")
