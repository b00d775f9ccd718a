"""Data augmentation for training and semi-supervised views: SpecAugment masks, mixup, gain, noise,
time shift and random crop.

Pure JAX functions with an explicit PRNG key as the first argument; every clip of a batch gets its own
draw, vectorised (no Python loop over the batch), and output shapes never depend on the draw, so a
training step that uses them compiles once. Waveform functions take f32[B, samples]; spectrogram
functions take time-major features f32[B, frames, mels] (what audiorep frontends return).
Used by audio/frontends.py (PaSST's training-time masks), pretrain/objectives.py and downstream/semisup.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _check_batch(x: jax.Array, ndim: int, what: str, layout: str) -> None:
    if x.ndim != ndim:
        raise ValueError(f"{what} takes {layout}, got shape {tuple(x.shape)}; add a batch axis with x[None].")


def _axis_mask(key: jax.Array, size: int, batch: int, max_width: int, num_masks: int) -> jax.Array:
    """Masks along one axis, torchaudio's `mask_along_axis` draw per clip and per mask.

    width = floor(U * max_width) (so 0 .. max_width - 1), start = floor(U' * (size - U * max_width)).
    -> bool[B, size], True where masked.
    """
    k_width, k_start = jax.random.split(key)
    raw = jax.random.uniform(k_width, (batch, num_masks)) * max_width
    start = jnp.floor(jax.random.uniform(k_start, (batch, num_masks)) * (size - raw))
    end = start + jnp.floor(raw)
    pos = jnp.arange(size, dtype=jnp.float32)[None, None, :]
    inside = (pos >= start[..., None]) & (pos < end[..., None])
    return inside.any(axis=1)


def freq_mask(key: jax.Array, feats: jax.Array, max_width: int, num_masks: int = 1, value: float = 0.0,
              shared: bool = False) -> jax.Array:
    """SpecAugment frequency masks: per clip, `num_masks` bands of 0..max_width-1 mel bins set to `value`.

    f32[B, frames, mels] -> same. Masks are drawn as torchaudio's FrequencyMasking (iid per clip);
    `shared=True` uses one draw for the whole batch (torchaudio on 3-D input, as official PaSST).
    """
    _check_batch(feats, 3, "freq_mask", "features f32[batch, frames, mels]")
    if max_width <= 0 or num_masks <= 0:
        return feats
    mask = _axis_mask(key, feats.shape[2], 1 if shared else feats.shape[0], max_width, num_masks)
    return jnp.where(mask[:, None, :], jnp.asarray(value, feats.dtype), feats)


def time_mask(key: jax.Array, feats: jax.Array, max_width: int, num_masks: int = 1, value: float = 0.0,
              shared: bool = False) -> jax.Array:
    """SpecAugment time masks: per clip, `num_masks` spans of 0..max_width-1 frames set to `value`.

    f32[B, frames, mels] -> same (torchaudio's TimeMasking draw, iid per clip; `shared=True`: one draw
    for the batch).
    """
    _check_batch(feats, 3, "time_mask", "features f32[batch, frames, mels]")
    if max_width <= 0 or num_masks <= 0:
        return feats
    mask = _axis_mask(key, feats.shape[1], 1 if shared else feats.shape[0], max_width, num_masks)
    return jnp.where(mask[:, :, None], jnp.asarray(value, feats.dtype), feats)


def spec_augment(key: jax.Array, feats: jax.Array, freq_width: int = 48, time_width: int = 192,
                 num_freq_masks: int = 1, num_time_masks: int = 1, value: float = 0.0) -> jax.Array:
    """Frequency then time masks (PaSST defaults 48 / 192).  f32[B, frames, mels] -> same."""
    k_freq, k_time = jax.random.split(key)
    feats = freq_mask(k_freq, feats, freq_width, num_freq_masks, value)
    return time_mask(k_time, feats, time_width, num_time_masks, value)


def mixup(key: jax.Array, x: jax.Array, y: jax.Array, alpha: float = 0.3,
          symmetric: bool = True) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Mixup with a random partner from the same batch.

    x f32[B, ...] (waveforms or features), y f32[B, classes] (one-hot or multi-hot) ->
    (lam * x + (1 - lam) * x[perm], the same mix of y, lam f32[B]). lam ~ Beta(alpha, alpha) per clip;
    `symmetric` takes max(lam, 1 - lam) as PaSST does, so each clip stays the dominant one.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"mixup: x has {x.shape[0]} clips but y has {y.shape[0]} label rows; pass matching batches.")
    if alpha <= 0:
        raise ValueError(f"mixup alpha must be positive, got {alpha} (0.3 is a common choice).")
    k_lam, k_perm = jax.random.split(key)
    b = x.shape[0]
    lam = jax.random.beta(k_lam, alpha, alpha, (b,))
    if symmetric:
        lam = jnp.maximum(lam, 1.0 - lam)
    perm = jax.random.permutation(k_perm, b)
    lx = lam.reshape((b,) + (1,) * (x.ndim - 1)).astype(x.dtype)
    ly = lam.reshape((b,) + (1,) * (y.ndim - 1)).astype(y.dtype)
    return lx * x + (1 - lx) * x[perm], ly * y + (1 - ly) * y[perm], lam


def random_gain(key: jax.Array, waves: jax.Array, min_db: float = -6.0, max_db: float = 6.0) -> jax.Array:
    """Scale each clip by a gain drawn uniformly in [min_db, max_db] dB.  f32[B, n] -> f32[B, n]."""
    _check_batch(waves, 2, "random_gain", "waveforms f32[batch, samples]")
    if min_db > max_db:
        raise ValueError(f"random_gain: min_db {min_db} > max_db {max_db}; swap them.")
    db = jax.random.uniform(key, (waves.shape[0], 1), minval=min_db, maxval=max_db)
    return waves * (10.0 ** (db / 20.0)).astype(waves.dtype)


def add_noise(key: jax.Array, waves: jax.Array, min_snr_db: float = 10.0, max_snr_db: float = 40.0) -> jax.Array:
    """Add white Gaussian noise at a per-clip SNR drawn uniformly in [min_snr_db, max_snr_db].

    f32[B, n] -> f32[B, n]. The SNR is relative to each clip's mean power (silent clips stay silent).
    """
    _check_batch(waves, 2, "add_noise", "waveforms f32[batch, samples]")
    if min_snr_db > max_snr_db:
        raise ValueError(f"add_noise: min_snr_db {min_snr_db} > max_snr_db {max_snr_db}; swap them.")
    k_snr, k_noise = jax.random.split(key)
    snr = jax.random.uniform(k_snr, (waves.shape[0], 1), minval=min_snr_db, maxval=max_snr_db)
    power = jnp.mean(waves * waves, axis=-1, keepdims=True)
    scale = jnp.sqrt(power / (10.0 ** (snr / 10.0)))
    return waves + scale * jax.random.normal(k_noise, waves.shape, waves.dtype)


def time_shift(key: jax.Array, waves: jax.Array, max_shift: int, roll: bool = True) -> jax.Array:
    """Shift each clip by an integer drawn uniformly in [-max_shift, max_shift] samples (or frames).

    x[B, n, ...] -> same shape. `roll=True` wraps around (PaSST's roll augmentation); `roll=False`
    fills the vacated samples with zeros.
    """
    if waves.ndim < 2:
        raise ValueError(f"time_shift takes a batch x[batch, time, ...], got shape {tuple(waves.shape)}.")
    b, n = waves.shape[:2]
    shift = jax.random.randint(key, (b, 1), -max_shift, max_shift + 1)
    src = jnp.arange(n)[None, :] - shift
    idx = jnp.mod(src, n)
    out = jnp.take_along_axis(waves, idx.reshape(idx.shape + (1,) * (waves.ndim - 2)), axis=1)
    if not roll:
        valid = ((src >= 0) & (src < n)).reshape((b, n) + (1,) * (waves.ndim - 2))
        out = jnp.where(valid, out, jnp.zeros((), waves.dtype))
    return out


def random_crop(key: jax.Array, waves: jax.Array, length: int, lengths: jax.Array | None = None) -> jax.Array:
    """Crop a window of `length` samples from each clip at a uniform random start.

    f32[B, n] -> f32[B, length]. `lengths` i32[B] (true lengths of zero-padded clips) keeps the
    window inside the real audio where it fits; clips shorter than `length` start at 0 (zero tail).
    """
    _check_batch(waves, 2, "random_crop", "waveforms f32[batch, samples]")
    b, n = waves.shape
    if length > n:
        raise ValueError(f"random_crop: length {length} exceeds the {n} samples given; pad the batch first "
                         "(audiorep.audio.io.pad_batch) or crop shorter.")
    valid = jnp.full((b,), n) if lengths is None else jnp.asarray(lengths)
    high = jnp.maximum(jnp.minimum(valid, n) - length, 0)
    start = jnp.floor(jax.random.uniform(key, (b,)) * (high + 1)).astype(jnp.int32)
    start = jnp.minimum(start, high)
    return jax.vmap(lambda w, s: jax.lax.dynamic_slice(w, (s,), (length,)))(waves, start)
