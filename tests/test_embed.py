"""Embedder: batching, chunking, padding masks, resampling, layers/pooling and input checking (toy encoder)."""

import jax.numpy as jnp
import numpy as np
import pytest
import toy_encoder  # noqa: F401  (registers the 'toy' models)
from conftest import tone
from hypothesis import given, settings
from hypothesis import strategies as st

import audiorep
from audiorep.audio.io import AudioError, resample
from audiorep.downstream.embed import EmbedError


@pytest.fixture(scope="module")
def toy():
    return audiorep.load("toy", batch_size=4)


def _noise(n, seed=0, amp=0.1):
    return (amp * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def _rel(a, b):
    """Largest deviation relative to the reference's largest value."""
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


def test_scene_shapes_for_one_clip_and_a_batch(toy):
    assert toy.scene(_noise(16000)).shape == (toy.scene_embedding_size,)
    out = toy.scene(np.stack([_noise(16000, 1), _noise(16000, 2)]))
    assert out.shape == (2, toy.scene_embedding_size) and out.dtype == np.float32


def test_batch_equals_one_by_one(toy):
    batch = np.stack([_noise(12000, s) for s in range(5)])  # 5 clips, batch_size 4: a full and a partial batch
    together = toy.scene(batch)
    alone = np.stack([toy.scene(c) for c in batch])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)


def test_list_of_different_lengths_equals_one_by_one(toy):
    clips = [_noise(n, n) for n in (3000, 16000, 41000, 700)]
    together = toy.scene(clips)
    alone = np.stack([toy.scene(c) for c in clips])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)


def test_a_clip_embeds_the_same_in_every_bucket_and_beside_any_neighbour(toy):
    """The toy encoder mixes all tokens, as attention does: the padding mask keeps padded patches out of the mix, so
    a clip padded to the whole window, or batched with a longer clip, embeds as it does unpadded."""
    clip = _noise(4000)
    fine = audiorep.load("toy", bucket_patches=1)  # no padding: 4000 samples fill 5 patches exactly
    coarse = audiorep.load("toy", bucket_patches=toy.window_patches)  # always padded to the full window
    assert fine.plan([len(clip)]).bucket.tolist() == [5] and coarse.plan([len(clip)]).bucket.tolist() == [16]
    ref = fine.scene(clip)
    assert _rel(coarse.scene(clip), ref) <= 1e-5
    assert _rel(toy.scene([_noise(30000, 1), clip])[1], ref) <= 1e-5
    assert _rel(coarse.timestamps(clip)[0], fine.timestamps(clip)[0]) <= 1e-5
    ts, _ = coarse.timestamps(clip)
    np.testing.assert_allclose(coarse.scene(clip), ts.mean(0), rtol=1e-5, atol=1e-6)  # pooled over valid patches


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 400_000), bucket=st.sampled_from([1, 3, 16]))
def test_chunks_hold_exactly_the_patches_the_clips_frames_fill(toy, n, bucket):
    """The plan's property: as many patches as the clip's own frames fill (one at least), one chunk when they fit
    the window, chunks P patch strides apart, every valid patch inside the clip's frames, buckets that hold them."""
    m = audiorep.load("toy", bucket_patches=bucket) if bucket != toy.bucket_patches else toy
    plan = m.plan([n])
    p, frames = m.window_patches, m.frontend.num_frames(n)
    patches = max(1, (frames - m.kernel) // m.stride + 1) if frames >= m.kernel else 1
    assert plan.n_patches.tolist() == [patches] and plan.valid.sum() == patches
    assert len(plan.valid) == -(-patches // p) and np.all(plan.valid[:-1] == p)
    np.testing.assert_array_equal(plan.start, np.arange(len(plan.valid)) * p * m.patch_hop)
    if frames >= m.kernel:  # the last frame of every chunk's last valid patch is a frame of the clip
        hop = m.frontend.hop_samples
        assert np.all(plan.start // hop + (plan.valid - 1) * m.stride + m.kernel <= frames)
    assert np.all((plan.bucket >= plan.valid) & (plan.bucket <= p))
    assert np.all((plan.bucket % m.bucket_patches == 0) | (plan.bucket == p))


def test_long_audio_equals_manual_chunking_and_token_weighted_pooling(toy):
    p, hop = toy.window_patches, toy.patch_hop
    clip = _noise(toy.chunk_samples(p) + 2 * p * hop, seed=7)  # three chunks
    n = len(toy.timestamp_times(len(clip)))
    starts = [0, p * hop, 2 * p * hop]
    counts = [p, p, n - 2 * p]
    pieces = []
    for start, count in zip(starts, counts):
        seg = clip[start: start + toy.chunk_samples(count)]
        seq, _ = toy.timestamps(np.pad(seg, (0, toy.chunk_samples(count) - len(seg))))
        pieces.append(seq[:count])
    manual = np.concatenate(pieces)
    seq, _ = toy.timestamps(clip)
    np.testing.assert_allclose(seq, manual, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(toy.scene(clip), manual.mean(0), rtol=1e-5, atol=1e-6)


def test_max_pooling_over_chunks_is_the_max_of_the_chunk_maxima():
    m = audiorep.load("toy", pooling="max")
    p, hop = m.window_patches, m.patch_hop
    clip = _noise(m.chunk_samples(p) + p * hop, seed=3)  # two chunks
    n = len(m.timestamp_times(len(clip)))
    first = m.scene(clip[: m.chunk_samples(p)])
    rest = clip[p * hop: p * hop + m.chunk_samples(n - p)]
    second = m.scene(np.pad(rest, (0, m.chunk_samples(n - p) - len(rest))))
    np.testing.assert_allclose(m.scene(clip), np.maximum(first, second), rtol=1e-5, atol=1e-6)


def test_mean_plus_max_concatenates_both(toy):
    both = audiorep.load("toy", pooling="mean+max")
    mean, mx = audiorep.load("toy", pooling="mean"), audiorep.load("toy", pooling="max")
    clip = _noise(20000, 5)
    np.testing.assert_allclose(both.scene(clip), np.concatenate([mean.scene(clip), mx.scene(clip)]), rtol=1e-5)
    assert both.scene_embedding_size == 2 * mean.scene_embedding_size


@pytest.mark.parametrize("chunks", [1, 3])
def test_mean_plus_std_is_the_statistics_of_the_clips_patches(chunks):
    """Statistics pooling over a clip of one or several chunks (padded last chunk): mean and population std of
    exactly the clip's patch embeddings, merged across chunks."""
    m = audiorep.load("toy", pooling="mean+std", batch_size=4)
    p, hop = m.window_patches, m.patch_hop
    clip = _noise(m.chunk_samples(p) + (chunks - 1) * p * hop - 5 * hop, seed=11)
    seq, _ = m.timestamps(clip)
    emb = m.scene(clip)
    assert m.scene_embedding_size == 2 * seq.shape[1] == emb.shape[0]
    np.testing.assert_allclose(emb, np.concatenate([seq.mean(0), seq.std(0)]), rtol=1e-4, atol=1e-5)
    assert np.all(emb[seq.shape[1]:] > 0)


def test_delta_pooling_adds_the_spread_of_the_centred_difference_across_chunk_boundaries():
    """'mean+std+delta' = mean, std and the std of (x[t+1] - x[t-1]) / 2 over the clip's timestamp embeddings, the
    differences that straddle chunk boundaries included; clips of one or two patches get a zero delta part."""
    m = audiorep.load("toy", pooling="mean+std+delta", batch_size=4)
    p, hop = m.window_patches, m.patch_hop
    clips = [_noise(m.chunk_samples(p) + 2 * p * hop - 3 * hop, seed=3),  # three chunks
             _noise(m.chunk_samples(2), seed=4), _noise(m.chunk_samples(1), seed=5), _noise(9000, seed=6)]
    seqs, _ = m.timestamps(clips)
    emb = m.scene(clips)
    d = m.timestamp_embedding_size
    assert m.scene_embedding_size == 3 * d == emb.shape[1]
    for e, seq in zip(emb, seqs):
        seq = np.asarray(seq, np.float64)
        delta = (seq[2:] - seq[:-2]) / 2
        want = delta.std(0) if len(seq) >= 3 else np.zeros(d)
        np.testing.assert_allclose(e, np.concatenate([seq.mean(0), seq.std(0), want]), rtol=1e-4, atol=1e-5)
    assert len(seqs[0]) > 2 * p and np.all(emb[0, 2 * d:] > 0) and np.all(emb[1:3, 2 * d:] == 0)
    np.testing.assert_allclose(emb, np.stack([m.scene(c) for c in clips]), rtol=1e-5, atol=1e-6)


def test_frequency_stack_keeps_each_band_and_averages_back_to_the_mean_mode():
    stack = audiorep.load("toy", frequency="stack", pooling="mean+std")
    mean = audiorep.load("toy")
    clip = _noise(20000, 4)
    ts_stack, times = stack.timestamps(clip)
    ts_mean, _ = mean.timestamps(clip)
    rows = mean.bundle.encoder.grid_for(64)[0]
    assert ts_stack.shape == (ts_mean.shape[0], rows * ts_mean.shape[1]) == (len(times), stack.timestamp_embedding_size)
    np.testing.assert_allclose(ts_stack.reshape(len(times), rows, -1).mean(1), ts_mean, rtol=1e-5, atol=1e-6)
    assert not np.allclose(ts_stack[:, : ts_mean.shape[1]], ts_mean)  # the first band alone is not the average
    np.testing.assert_allclose(stack.scene(clip), np.concatenate([ts_stack.mean(0), ts_stack.std(0)]), rtol=1e-4,
                               atol=1e-5)
    assert stack.scene_embedding_size == 2 * rows * mean.scene_embedding_size
    with pytest.raises(EmbedError, match="frequency"):
        audiorep.load("toy", frequency="sum")


def test_cls_pooling_uses_the_special_tokens():
    m = audiorep.load("toy", pooling="cls")
    assert m.scene(_noise(8000)).shape == (m.scene_embedding_size,)
    with pytest.raises(EmbedError, match="final cls token"):
        audiorep.load("toy", pooling="cls", layer=0)


def test_layer_choice_index_list_and_all():
    d = audiorep.load("toy").timestamp_embedding_size
    assert audiorep.load("toy", layer=0).scene_embedding_size == d
    assert audiorep.load("toy", layer=[0, -1]).scene_embedding_size == 2 * d
    every = audiorep.load("toy", layer="all")
    assert every.scene_embedding_size == 3 * d  # patch embeddings + 2 blocks
    clip = _noise(9000)
    np.testing.assert_allclose(every.scene(clip)[-d:], audiorep.load("toy", layer=-1).scene(clip), rtol=1e-5)
    with pytest.raises(EmbedError, match="layer 5 does not exist"):
        audiorep.load("toy", layer=5)


def test_resampling_path_matches_resampling_first(toy):
    clip8k = tone(440, 1.0, 8000)
    via_rate = toy.scene(clip8k, sample_rate=8000)
    np.testing.assert_allclose(via_rate, toy.scene(resample(clip8k, 8000, 16000)), rtol=1e-5, atol=1e-6)
    seq, times = toy.timestamps(clip8k, sample_rate=8000)
    assert times[-1] <= 1000.0 and len(seq) == len(times)


def test_jax_arrays_are_accepted(toy):
    clip = _noise(8000)
    np.testing.assert_allclose(toy.scene(jnp.asarray(clip)), toy.scene(clip), rtol=1e-6)


def test_timestamps_are_regular_centred_and_one_per_patch_of_the_clip(toy):
    for n in (700, 16000, 17120, 31680, 100_000):
        _, times = toy.timestamps(_noise(n))
        assert times[-1] <= 1000 * n / 16000
        frames = toy.frontend.num_frames(n)  # the patches the clip's frames fill, as the official conv counts them
        assert len(times) == max(1, (frames - toy.kernel) // toy.stride + 1 if frames >= toy.kernel else 1)
        if len(times) > 1:
            np.testing.assert_allclose(np.diff(times), toy.time_resolution_ms, atol=1e-3)


def test_timestamps_of_a_batch_and_a_list(toy):
    seq, times = toy.timestamps(np.stack([_noise(16000, 1), _noise(16000, 2)]))
    assert seq.shape[:2] == times.shape and seq.shape[2] == toy.timestamp_embedding_size
    seqs, times = toy.timestamps([_noise(5000), _noise(16000)])
    assert [len(s) for s in seqs] == [len(t) for t in times] and len(seqs[0]) < len(seqs[1])


@pytest.mark.parametrize("bad,match", [
    (np.zeros(0, np.float32), "0 samples"),
    (np.zeros((2, 0), np.float32), "0 samples"),
    (np.zeros((0, 100), np.float32), "empty batch"),
    (np.array([0.0, np.nan, 0.1], np.float32), "NaN/Inf"),
    (np.zeros((2, 2, 100), np.float32), "3 dims.*mean\\(axis=1\\)"),
    (np.float32(0.5), "0 dims"),
    (np.zeros(100, np.int16), "integer samples.*32768"),
    ("clip.wav", "load_audio"),
    ([], "empty list"),
    ([np.zeros(100, np.float32), np.zeros((2, 100), np.float32)], r"audio\[1\] has shape"),
])
def test_bad_input_is_refused_clearly(toy, bad, match):
    with pytest.raises(AudioError, match=match):
        toy.scene(bad)


@pytest.mark.parametrize("rate", ["16k", None.__class__, 16.5, float("nan"), 16])
def test_sample_rate_that_is_not_a_rate_is_refused(toy, rate):
    with pytest.raises(AudioError, match="sample_rate"):
        toy.scene(_noise(1000), sample_rate=rate)


def test_bad_options_are_refused():
    with pytest.raises(EmbedError, match="pooling 'median'"):
        audiorep.load("toy", pooling="median")
    with pytest.raises(EmbedError, match="batch_size"):
        audiorep.load("toy", batch_size=0)
    with pytest.raises(EmbedError, match="layer 'first'"):
        audiorep.load("toy", layer="first")
    with pytest.raises(EmbedError, match="window_seconds"):
        audiorep.load("toy", window_seconds=60)


def test_registered_model_dir_path_loads_its_weights(tmp_path, toy):
    from audiorep.models.model_dir import save_model_dir

    b = toy.bundle
    save_model_dir(tmp_path / "m", family=b.family, encoder=b.encoder, encoder_config=b.encoder_config,
                   frontend=b.frontend)
    clip = _noise(12000)
    np.testing.assert_array_equal(audiorep.load(str(tmp_path / "m")).scene(clip), toy.scene(clip))


def test_list_models_names_the_tiny_variants():
    assert {"beats-tiny", "ssast-patch-tiny", "ssast-frame-tiny", "passt-s-tiny"} <= set(audiorep.list_models())


MULTI_DEVICE_SCRIPT = """
import jax, numpy as np
import toy_encoder
import audiorep
assert len(jax.local_devices()) == 4
rng = np.random.default_rng(0)
clips = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (3000, 16000, 41000, 700, 9000)]
many = audiorep.load("toy", batch_size=6)
one = audiorep.load("toy", batch_size=6, devices=jax.local_devices()[:1])
assert many.batch_size == 8 and len(many._state["embed"]["kernel"][...].sharding.device_set) == 4
np.testing.assert_allclose(many.scene(clips), one.scene(clips), rtol=1e-5, atol=1e-6)
a, b = many.timestamps(clips), one.timestamps(clips)
for x, y in zip(a[0], b[0]):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
print("ok")
"""


@pytest.mark.slow
def test_batches_are_split_across_local_devices(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    res = subprocess.run([sys.executable, "-c", MULTI_DEVICE_SCRIPT], cwd=Path(__file__).parent, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-3000:]
