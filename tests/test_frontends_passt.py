"""PaSST mel frontend against an independent numpy/scipy reference and the official torch recipe (fixture)."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest
import scipy.signal

from audiorep.audio.frontends import PASST_MEL, FrontendError, PasstMel, PasstMelConfig, passt_mel, passt_mel_edges
from audiorep.audio.io import load_audio

FIXTURE = Path(__file__).parent / "fixtures" / "passt_mel_reference.npz"
TOL = 1e-3


def kaldi_mel_matrix(num_bins: int, n_fft: int, sr: float, fmin: float, fmax: float) -> np.ndarray:
    """Kaldi mel banks written out bin by bin, float64, as in Kaldi's MelBanks constructor.  -> [bins, n_fft//2+1]."""
    def mel(f):
        return 1127.0 * np.log(1.0 + f / 700.0)

    lo, hi = mel(fmin), mel(fmax)
    delta = (hi - lo) / (num_bins + 1)
    out = np.zeros((num_bins, n_fft // 2 + 1))  # the Nyquist column stays zero (PaSST's one-column pad)
    for b in range(num_bins):
        left, centre, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
        for k in range(n_fft // 2):
            m = mel(k * sr / n_fft)
            if left < m < right:
                out[b, k] = (m - left) / (centre - left) if m <= centre else (right - m) / (right - centre)
    return out


def reference_passt(x: np.ndarray, fmin: float = 0.0, fmax: float = 15000.0, cfg: PasstMelConfig = PASST_MEL):
    """The official recipe, step by step, with scipy's STFT.  f32[n] -> f64[frames, mels], normalised."""
    x = x.astype(np.float64)
    x = np.convolve(x, [1.0, -cfg.preemphasis], mode="valid")  # conv1d kernel [-0.97, 1]: x[t] - 0.97 x[t-1]
    half = cfg.n_fft // 2
    padded = np.pad(x, half, mode="reflect")  # torch.stft(center=True) reflect padding
    hann = scipy.signal.get_window("hann", cfg.win_length, fftbins=False)  # symmetric = periodic=False
    side = (cfg.n_fft - cfg.win_length) // 2
    window = np.pad(hann, (side, cfg.n_fft - cfg.win_length - side))  # torch centres win_length in n_fft
    _, _, z = scipy.signal.stft(padded, nperseg=cfg.n_fft, noverlap=cfg.n_fft - cfg.hop_length, window=window,
                                boundary=None, padded=False, detrend=False, return_onesided=True, scaling="spectrum")
    z = z * window.sum()  # undo scipy's "spectrum" scaling: plain DFT of the windowed frame
    power = np.abs(z) ** 2  # [freq, frames]
    mel = kaldi_mel_matrix(cfg.num_mel_bins, cfg.n_fft, cfg.sample_rate, fmin, fmax) @ power
    return ((np.log(mel + 1e-5) + 4.5) / 5.0).T


def clip(seconds: float = 0.7, rate: int = 32000, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * (200 + 3000 * t) * t) + 0.1 * np.sin(2 * np.pi * 9000 * t)
    return (x + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def test_matches_numpy_scipy_reference_on_generated_audio():
    x = clip()
    ours = np.asarray(PasstMel()(x[None]))[0]
    ref = reference_passt(x)
    assert ours.shape == ref.shape == (PASST_MEL.num_frames(x.size), 128)
    assert np.abs(ours - ref).max() <= TOL


def test_matches_numpy_scipy_reference_on_real_recordings(fsdd_dir):
    clips = [load_audio(fsdd_dir / f, sample_rate=32000)[0] for f in ("1_theo_3.wav", "6_lucas_20.wav")]
    n = min(c.size for c in clips)
    batch = np.stack([c[:n] for c in clips])
    ours = np.asarray(PasstMel()(batch))
    for i in range(len(clips)):
        assert np.abs(ours[i] - reference_passt(batch[i])).max() <= TOL


def test_matches_official_torch_recipe_fixture():
    ref = np.load(FIXTURE, allow_pickle=False)
    ours = np.asarray(PasstMel()(ref["wave"][None]))[0]
    assert ours.shape == ref["eval_mel"].shape
    assert np.abs(ours - ref["eval_mel"]).max() <= TOL


def test_jittered_edges_match_official_torch_recipe_fixture():
    ref = np.load(FIXTURE, allow_pickle=False)
    fmin, fmax = (float(v) for v in ref["jitter_edges"])
    cfg = PASST_MEL.replace(fmin=fmin, fmax=fmax)
    ours = np.asarray(PasstMel(cfg)(ref["wave"][None]))[0]
    assert np.abs(ours - ref["jitter_mel"]).max() <= TOL


def test_ten_seconds_give_1000_frames():
    out = PasstMel()(np.zeros((1, 320000), np.float32) + clip(10.0)[None])
    assert out.shape == (1, 1000, 128)


def test_training_edges_stay_in_passt_ranges_and_differ_per_clip():
    fmin, fmax = passt_mel_edges(jax.random.key(0), 256)
    fmin, fmax = np.asarray(fmin), np.asarray(fmax)
    assert fmin.min() >= 0 and fmin.max() <= 9 and np.all(fmin == np.round(fmin))
    assert fmax.min() >= 15000 - 999 and fmax.max() <= 15000 + 1000
    assert len(np.unique(fmax)) > 100


def test_training_output_equals_the_reference_at_the_drawn_edges():
    cfg = PASST_MEL.replace(freqm=0, timem=0)
    x = np.stack([clip(seed=1), clip(seed=1), clip(seed=2)])
    key = jax.random.key(42)
    out = np.asarray(PasstMel(cfg)(x, key=key, train=True))
    k_edges = jax.random.split(key, 3)[0]
    fmin, fmax = (np.asarray(v) for v in passt_mel_edges(k_edges, 3, cfg))
    for i in range(3):
        assert np.abs(out[i] - reference_passt(x[i], float(fmin[i]), float(fmax[i]))).max() <= TOL
    assert not np.allclose(out[0], out[1])  # same audio, own draw per clip


def test_training_masks_write_zero_log_mel_before_normalising():
    cfg = PASST_MEL.replace(freqm=30, timem=20)
    x = np.stack([clip(seed=i) for i in range(4)])
    out = np.asarray(PasstMel(cfg)(x, key=jax.random.key(1), train=True))
    at_masked_value = np.isclose(out, (0.0 + 4.5) / 5.0, rtol=0, atol=1e-6)
    masked_cols = np.all(at_masked_value, axis=1)  # [B, mels] fully masked bins
    masked_rows = np.all(at_masked_value, axis=2)  # [B, frames]
    assert masked_cols.any() and masked_rows.any()
    assert masked_cols.sum(axis=1).max() < 30 and masked_rows.sum(axis=1).max() < 20


def test_eval_ignores_key_and_training_is_reproducible():
    x = clip()[None]
    fe = PasstMel()
    np.testing.assert_array_equal(fe(x), fe(x, key=jax.random.key(5)))
    a = fe(x, key=jax.random.key(5), train=True)
    np.testing.assert_array_equal(a, fe(x, key=jax.random.key(5), train=True))
    assert not np.array_equal(a, fe(x, key=jax.random.key(6), train=True))


def test_training_without_a_key_is_a_clear_error():
    with pytest.raises(FrontendError, match="needs key"):
        PasstMel()(clip()[None], train=True)
    with pytest.raises(FrontendError, match="PRNG key"):
        passt_mel(clip()[None], train=True)


def test_default_fmax_is_nyquist_minus_half_the_jitter_range():
    assert PASST_MEL.fmax_hz == 15000.0 and PASST_MEL.replace(fmax_aug_range=1000).fmax_hz == 15500.0


def test_shared_augment_draws_once_for_the_batch_as_official_passt():
    cfg = PASST_MEL.replace(shared_augment=True, freqm=30, timem=20)
    x = np.stack([clip(seed=4)] * 3)
    out = np.asarray(PasstMel(cfg)(x, key=jax.random.key(2), train=True))
    np.testing.assert_allclose(out[1], out[0], atol=1e-6)
    np.testing.assert_allclose(out[2], out[0], atol=1e-6)
    assert not np.allclose(out[0], np.asarray(PasstMel(cfg)(x[:1]))[0], atol=1e-3)
