"""Property tests for the frontends: frame counting, batch == per clip, zero-padding behaviour."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiorep.audio.frontends import PASST_MEL, FbankConfig
from audiorep.audio.frontends import kaldi_fbank as _kaldi_fbank
from audiorep.audio.frontends import passt_mel as _passt_mel

knf = pytest.importorskip("kaldi_native_fbank")

# jitted once per (shape, config): far cheaper than op-by-op dispatch for many examples
kaldi_fbank = jax.jit(_kaldi_fbank, static_argnames=("cfg",))
passt_mel = jax.jit(_passt_mel, static_argnames=("cfg",))

SETTINGS = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# a few framings (shapes drive jit compiles, so keep the space small); 8 kHz keeps frames short
FRAMINGS = st.sampled_from([(25.0, 10.0), (20.0, 20.0), (32.0, 12.5), (10.0, 25.0)])


def knf_num_frames(cfg: FbankConfig, n: int) -> int:
    opts = knf.FbankOptions()
    f = opts.frame_opts
    f.samp_freq, f.frame_length_ms, f.frame_shift_ms = cfg.sample_rate, cfg.frame_length_ms, cfg.frame_shift_ms
    f.snip_edges, f.dither = cfg.snip_edges, 0.0
    opts.mel_opts.num_bins = cfg.num_mel_bins
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(cfg.sample_rate, np.zeros(n, np.float32).tolist())
    fb.input_finished()
    return fb.num_frames_ready


@SETTINGS
@given(framing=FRAMINGS, snip=st.booleans(), n=st.integers(260, 2400))
def test_frame_count_matches_kaldi_and_the_output(framing, snip, n):
    length, shift = framing
    cfg = FbankConfig(sample_rate=8000, num_mel_bins=10, frame_length_ms=length, frame_shift_ms=shift, snip_edges=snip)
    out = jax.eval_shape(lambda w: _kaldi_fbank(w, cfg), jax.ShapeDtypeStruct((2, n), jnp.float32))  # traced only
    assert out.shape == (2, cfg.num_frames(n), 10)
    assert cfg.num_frames(n) == knf_num_frames(cfg, n)


@SETTINGS
@given(snip=st.booleans(), seed=st.integers(0, 2 ** 16), energy=st.booleans())
def test_batch_equals_one_clip_at_a_time(snip, seed, energy):
    cfg = FbankConfig(sample_rate=8000, num_mel_bins=12, snip_edges=snip, use_energy=energy)
    x = np.random.default_rng(seed).standard_normal((3, 1200)).astype(np.float32) * [[1.0], [0.01], [30.0]]
    batch = np.asarray(kaldi_fbank(x, cfg=cfg))
    for i in range(3):
        np.testing.assert_allclose(batch[i], np.asarray(kaldi_fbank(x[i:i + 1], cfg=cfg))[0], atol=1e-4)


@SETTINGS
@given(n=st.sampled_from([400, 999, 1601]), extra=st.sampled_from([1, 159, 800]), seed=st.integers(0, 2 ** 16))
def test_zero_padding_leaves_frames_inside_the_clip_unchanged(n, extra, seed):
    cfg = FbankConfig(sample_rate=8000, num_mel_bins=10)
    x = np.random.default_rng(seed).standard_normal(n).astype(np.float32)
    padded = np.concatenate([x, np.zeros(extra, np.float32)])
    a = np.asarray(kaldi_fbank(x[None], cfg=cfg))[0]
    b = np.asarray(kaldi_fbank(padded[None], cfg=cfg))[0]
    assert b.shape[0] == cfg.num_frames(n + extra) >= a.shape[0]
    np.testing.assert_allclose(b[: a.shape[0]], a, atol=1e-4)


@SETTINGS
@given(n=st.sampled_from([2000, 2001, 4321]), seed=st.integers(0, 2 ** 16))
def test_passt_frames_and_batch_equals_one_clip(n, seed):
    cfg = PASST_MEL.replace(sample_rate=8000, num_mel_bins=16, win_length=200, hop_length=80, n_fft=256,
                            fmax=3500.0)
    x = np.random.default_rng(seed).standard_normal((2, n)).astype(np.float32)
    out = np.asarray(passt_mel(x, cfg=cfg))
    assert out.shape == (2, 1 + (n - 1) // 80, 16) and out.shape[1] == cfg.num_frames(n)
    np.testing.assert_allclose(out[1], np.asarray(passt_mel(x[1:], cfg=cfg))[0], atol=1e-4)


@SETTINGS
@given(n=st.sampled_from([2000, 3333]), extra=st.sampled_from([200, 999]), seed=st.integers(0, 2 ** 16))
def test_passt_zero_padding_changes_only_the_frames_near_the_end(n, extra, seed):
    """Centred frames reach n_fft/2 past their centre; frames whose reach stays inside the clip are unchanged."""
    cfg = PASST_MEL.replace(sample_rate=8000, num_mel_bins=16, win_length=200, hop_length=80, n_fft=256,
                            fmax=3500.0)
    x = np.random.default_rng(seed).standard_normal(n).astype(np.float32)
    padded = np.concatenate([x, np.zeros(extra, np.float32)])
    a = np.asarray(passt_mel(x[None], cfg=cfg))[0]
    b = np.asarray(passt_mel(padded[None], cfg=cfg))[0]
    inside = [i for i in range(a.shape[0]) if i * 80 + 100 < n - 1]  # window half 100 < n_fft half
    np.testing.assert_allclose(b[inside], a[inside], atol=1e-4)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 7), min_size=1, max_size=5), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_delta_std_equals_each_sequence_on_its_own(counts, dim, seed):
    """Segmented delta statistics of concatenated sequences == the centred difference's std of each alone."""
    from audiorep.downstream.embed import delta_std

    x = np.random.default_rng(seed).normal(size=(sum(counts), dim)).astype(np.float32)
    got = delta_std(x, np.array(counts))
    starts = np.cumsum([0] + counts[:-1])
    for row, (s, n) in zip(got, zip(starts, counts)):
        seq = x[s:s + n].astype(np.float64)
        want = ((seq[2:] - seq[:-2]) / 2).std(0) if n >= 3 else np.zeros(dim)
        np.testing.assert_allclose(row, want, rtol=1e-5, atol=1e-6)
    assert got.shape == (len(counts), dim) and got.dtype == np.float32
