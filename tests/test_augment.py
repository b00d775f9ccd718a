"""Augmentations: SpecAugment masks, mixup, gain, noise, shift, crop — per-clip draws, fixed shapes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audiorep.audio import augment


def feats(b=6, t=50, f=20, seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(1.0, 2.0, (b, t, f)).astype(np.float32))


def masked_runs(mask_1d: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of the True runs."""
    runs, start = [], None
    for i, m in enumerate(list(mask_1d) + [False]):
        if m and start is None:
            start = i
        if not m and start is not None:
            runs.append((start, i - start))
            start = None
    return runs


@settings(max_examples=20, deadline=None)
@given(width=st.integers(1, 15), seed=st.integers(0, 2 ** 16))
def test_freq_mask_blanks_one_band_narrower_than_max_width_per_clip(width, seed):
    x = feats()
    out = np.asarray(augment.freq_mask(jax.random.key(seed), x, width))
    changed = np.asarray(out != np.asarray(x))  # inputs are in [1, 2], so masked = changed
    for clip in changed:
        bins = clip.all(axis=0)
        assert (clip.any(axis=0) == bins).all()  # whole columns only
        runs = masked_runs(bins)
        assert len(runs) <= 1 and all(n < width for _, n in runs)
    assert (out[changed] == 0).all()


@settings(max_examples=20, deadline=None)
@given(width=st.integers(1, 40), seed=st.integers(0, 2 ** 16))
def test_time_mask_blanks_one_span_narrower_than_max_width_per_clip(width, seed):
    x = feats()
    out = np.asarray(augment.time_mask(jax.random.key(seed), x, width, value=-3.0))
    changed = np.asarray(out != np.asarray(x))
    for clip in changed:
        frames = clip.all(axis=1)
        assert (clip.any(axis=1) == frames).all()
        runs = masked_runs(frames)
        assert len(runs) <= 1 and all(n < width for _, n in runs)
    assert (out[changed] == -3.0).all()


def test_masks_are_drawn_independently_per_clip_and_cover_all_widths():
    x = jnp.ones((256, 10, 30))
    out = np.asarray(augment.freq_mask(jax.random.key(0), x, 8))
    widths = (out == 0).all(axis=1).sum(axis=1)
    assert set(widths.tolist()) == set(range(8))  # floor(U * 8): 0..7
    starts = [masked_runs(c)[0][0] for c in (out == 0).all(axis=1) if c.any()]
    assert len(set(starts)) > 10


def test_several_masks_per_clip():
    out = np.asarray(augment.time_mask(jax.random.key(3), jnp.ones((64, 200, 4)), 10, num_masks=3))
    spans = [len(masked_runs((c == 0).all(axis=1))) for c in out]
    assert max(spans) == 3


def test_spec_augment_is_reproducible_and_jits_once_for_every_key():
    x = feats()
    f = jax.jit(lambda k, v: augment.spec_augment(k, v, 5, 10))
    a, b = f(jax.random.key(1), x), f(jax.random.key(1), x)
    np.testing.assert_array_equal(a, b)
    f(jax.random.key(2), x)
    assert f._cache_size() == 1


def test_mixup_mixes_inputs_and_labels_with_the_same_weight():
    b = 8
    x = jnp.arange(b, dtype=jnp.float32)[:, None] * jnp.ones((b, 5))
    y = jax.nn.one_hot(jnp.arange(b), b)
    xm, ym, lam = augment.mixup(jax.random.key(0), x, y, alpha=0.4)
    lam, ym, xm = np.asarray(lam), np.asarray(ym), np.asarray(xm)
    assert ((lam >= 0.5) & (lam <= 1.0)).all()
    np.testing.assert_allclose(ym.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(xm[:, 0], ym @ np.arange(b), atol=1e-5)  # x value = label-weighted clip index
    np.testing.assert_allclose(ym[np.arange(b), np.arange(b)] >= lam - 1e-6, True)


def test_mixup_rejects_mismatched_batches():
    with pytest.raises(ValueError, match="matching batches"):
        augment.mixup(jax.random.key(0), jnp.ones((4, 3)), jnp.ones((5, 2)))


def test_random_gain_scales_each_clip_within_the_db_range():
    x = jnp.ones((50, 100)) * 0.1
    out = np.asarray(augment.random_gain(jax.random.key(0), x, -6.0, 3.0))
    gain_db = 20 * np.log10(out / 0.1)
    assert np.allclose(gain_db, gain_db[:, :1], atol=1e-4)  # one gain per clip
    assert gain_db.min() >= -6.0 - 1e-4 and gain_db.max() <= 3.0 + 1e-4 and gain_db[:, 0].std() > 1.0


def test_add_noise_hits_the_drawn_snr_and_keeps_silence_silent():
    t = np.arange(16000) / 16000
    x = jnp.asarray(np.stack([0.5 * np.sin(2 * np.pi * 440 * t), np.zeros_like(t)]).astype(np.float32))
    out = np.asarray(augment.add_noise(jax.random.key(0), x, 20.0, 20.0))
    noise = out[0] - np.asarray(x[0])
    snr = 10 * np.log10(np.mean(np.asarray(x[0]) ** 2) / np.mean(noise ** 2))
    assert abs(snr - 20.0) < 0.3
    assert (out[1] == 0).all()


def test_time_shift_rolls_or_zero_fills_within_max_shift():
    x = jnp.tile(jnp.arange(1, 21, dtype=jnp.float32), (16, 1))
    rolled = np.asarray(augment.time_shift(jax.random.key(0), x, 5))
    filled = np.asarray(augment.time_shift(jax.random.key(0), x, 5, roll=False))
    base = np.arange(1, 21)
    for r, f in zip(rolled, filled):
        shift = int((np.argmax(r == 1)) % 20)
        shift = shift - 20 if shift > 10 else shift
        assert abs(shift) <= 5
        np.testing.assert_array_equal(r, np.roll(base, shift))
        expect = np.roll(base, shift)
        if shift > 0:
            expect[:shift] = 0
        elif shift < 0:
            expect[shift:] = 0
        np.testing.assert_array_equal(f, expect)


def test_random_crop_takes_a_window_of_real_audio():
    x = jnp.tile(jnp.arange(100, dtype=jnp.float32), (32, 1))
    lengths = jnp.asarray([100] * 16 + [40] * 15 + [10])
    out = np.asarray(augment.random_crop(jax.random.key(0), x, 30, lengths))
    assert out.shape == (32, 30)
    assert (np.diff(out, axis=1) == 1).all()  # contiguous
    assert out[:16, -1].max() <= 99 and out[16:31, -1].max() <= 39 and out[31, 0] == 0
    assert len(set(out[:16, 0].tolist())) > 5


def test_random_crop_longer_than_the_batch_is_a_clear_error():
    with pytest.raises(ValueError, match="pad the batch first"):
        augment.random_crop(jax.random.key(0), jnp.ones((2, 10)), 20)


def test_shared_masks_are_one_draw_for_the_batch():
    out = np.asarray(augment.time_mask(jax.random.key(0), jnp.ones((16, 50, 4)), 20, shared=True))
    assert (out == out[:1]).all() and (out == 0).any()
