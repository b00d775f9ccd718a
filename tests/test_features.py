"""Hand-crafted baselines (audio/features.py, FeatureBaseline): parity with the official ASVspoof front ends
and librosa, properties (frames vs length, silence floor, gain invariance, batch independence), and the
baselines as probe models."""

import dataclasses
import importlib.util
import math
import sys

import feature_reference as ref
import numpy as np
import pytest
import scipy.fft
from conftest import tiny_fsdd, tone
from hypothesis import given, settings
from hypothesis import strategies as st

from audiorep.audio import features as F
from audiorep.cli import main
from audiorep.downstream import tasks as T
from audiorep.downstream.cache import EmbeddingCache, source_spec
from audiorep.downstream.tasks.baseline import FeatureBaseline

# librosa: the [features] extra (also in [dev]): the MFCC reference and every CQCC test need it
needs_librosa = pytest.mark.skipif(importlib.util.find_spec("librosa") is None, reason="librosa not installed")

LFCC, MFCC, CQCC = F.PRESETS["lfcc"], F.PRESETS["mfcc"], F.PRESETS["cqcc"]
LFCC21, CQCC21 = F.PRESETS["lfcc-asvspoof2021"], F.PRESETS["cqcc-asvspoof2021"]


def voiced(n: int, seed: int = 0, rate: int = 16000) -> np.ndarray:
    """Noise plus two harmonics: a spectrum with peaks and valleys, well above the eps floor. f32[n]."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    x = 0.05 * rng.standard_normal(n) + 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 1870 * t)
    return x.astype(np.float32)


def one(x, cfg):
    feats, n = F.extract(x[None], None, cfg)
    return feats[0, : n[0]]


# ------------------------------------------------------------------------------------------ parity
@pytest.mark.parametrize("n", [16000, 16000 + 77, 4321, 300])
def test_lfcc_matches_the_asvspoof2019_matlab_front_end(n):
    want = ref.extract_lfcc(voiced(n), 16000, 20, 512, 20)
    got = one(voiced(n), LFCC)
    assert got.shape == want.shape == (want.shape[0], 60)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-4)


def test_lfcc_asvspoof2021_matches_the_2021_matlab_front_end():
    want = ref.lfcc_bp(voiced(24000 + 5, seed=1), 16000, 30, 1024, 70, 19, 0, 4000)
    got = one(voiced(24000 + 5, seed=1), LFCC21)
    assert got.shape == want.shape == (want.shape[0], 57)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-4)


@needs_librosa
@pytest.mark.parametrize("n", [16000, 12345])
def test_mfcc_matches_librosa_with_matched_settings(n):
    want = ref.mfcc_librosa(voiced(n, seed=2))
    got = one(voiced(n, seed=2), MFCC)
    assert got.shape == want.shape == (want.shape[0], 60)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-4)


@needs_librosa
@pytest.mark.parametrize("cfg, args", [(CQCC, {}), (CQCC21, dict(bins=12, fmax=4000.0, fmin=62.5))],
                         ids=["cqcc", "cqcc-asvspoof2021"])
def test_cqcc_matches_the_cqcc_m_steps_after_the_cqt(cfg, args):
    x = voiced(12000 + 33, seed=3)
    want = ref.cqcc(x, **args)
    got = one(x, cfg)
    assert got.shape == want.shape == (1 + len(x) // 128, 60)
    scale = np.abs(want).max(axis=0)  # c0 is a sum over ~8000 grid points: compare each column to its size
    np.testing.assert_allclose(got / scale, want / scale, atol=2e-4)


def test_cqcc_bins_are_the_toolboxs_bins():
    np.testing.assert_allclose(CQCC.bin_frequencies(), ref.cqt_bins(16000, 96, 15.625, 8000.0))
    assert len(CQCC.bin_frequencies()) == 863 and len(CQCC.uniform_grid()) == 8059


@needs_librosa
def test_a_tone_peaks_in_the_cqt_bin_of_its_frequency():
    logp = F.cqt_log_power(tone(1000.0, 1.0)[None], CQCC)[0]
    peak = CQCC.bin_frequencies()[np.argmax(logp[20:-20].mean(0))]
    assert abs(math.log2(peak / 1000.0)) <= 1 / 96


def test_dct_matrix_is_the_orthonormal_dct_ii():
    x = np.random.default_rng(0).standard_normal((3, 37))
    np.testing.assert_allclose(x @ F.dct_matrix(37, 11), scipy.fft.dct(x, type=2, norm="ortho")[:, :11], atol=1e-12)


# ------------------------------------------------------------------------------------------ properties
CEPSTRAL = st.sampled_from([LFCC, MFCC, LFCC21])


@settings(max_examples=25, deadline=None)
@given(cfg=CEPSTRAL, n=st.integers(1, 20000))
def test_cepstral_frames_follow_the_clip_length(cfg, n):
    feats, frames = F.extract(voiced(n)[None], None, cfg)
    overlap = cfg.frame_length - cfg.hop_length
    assert frames[0] == feats.shape[1] == max(1, math.ceil((n - overlap) / cfg.hop_length))
    assert feats.shape[2] == cfg.dim and np.isfinite(feats).all()


@needs_librosa
@settings(max_examples=6, deadline=None)
@given(n=st.integers(1, 12000))
def test_cqcc_frames_follow_the_clip_length(n):
    feats, frames = F.extract(voiced(n)[None], None, CQCC21)
    assert frames[0] == feats.shape[1] == 1 + n // 128 and feats.shape[2] == 60


@pytest.mark.parametrize("cfg", [LFCC, MFCC, LFCC21, pytest.param(CQCC, marks=needs_librosa),
                                 pytest.param(CQCC21, marks=needs_librosa)], ids=lambda c: c.kind)
def test_silence_gives_the_eps_floor_not_minus_infinity(cfg):
    feats = one(np.zeros(8000, np.float32), cfg)
    c = cfg.n_coeffs
    if isinstance(cfg, F.CqccConfig):
        floor, bands, tol = math.log(F.MATLAB_EPS), len(cfg.uniform_grid()), 1e-3
    else:
        floor, bands, tol = math.log10(F.MATLAB_EPS), cfg.n_filters, 1e-4
    assert np.isfinite(feats).all()
    np.testing.assert_allclose(feats[:, 0], math.sqrt(bands) * floor, rtol=1e-5)
    np.testing.assert_allclose(feats[:, 1:c], 0.0, atol=tol * math.sqrt(bands) * abs(floor))
    np.testing.assert_allclose(feats[:, c:], 0.0, atol=tol * math.sqrt(bands) * abs(floor))


@settings(max_examples=20, deadline=None)
@given(cfg=CEPSTRAL, seed=st.integers(0, 1000), log_gain=st.floats(-2.0, 2.0))
def test_gain_moves_only_c0_of_lfcc_and_mfcc(cfg, seed, log_gain):
    x = voiced(6000, seed)
    a, b = one(x, cfg), one((x * 10.0**log_gain).astype(np.float32), cfg)
    c = cfg.n_coeffs
    np.testing.assert_allclose(b[:, 0] - a[:, 0], math.sqrt(cfg.n_filters) * 2 * log_gain, atol=2e-3)
    np.testing.assert_allclose(b[:, 1:c], a[:, 1:c], atol=2e-3)
    np.testing.assert_allclose(b[:, c:], a[:, c:], atol=2e-3)


@needs_librosa
@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 1000), log_gain=st.floats(-2.0, 2.0))
def test_gain_moves_only_c0_of_cqcc(seed, log_gain):
    x = voiced(6000, seed)
    a, b = one(x, CQCC21), one((x * 10.0**log_gain).astype(np.float32), CQCC21)
    bands = len(CQCC21.uniform_grid())
    shift = math.sqrt(bands) * 2 * log_gain * math.log(10)
    np.testing.assert_allclose(b[:, 0] - a[:, 0], shift, atol=1e-3 * math.sqrt(bands))
    np.testing.assert_allclose(b[:, 1:], a[:, 1:], atol=1e-3 * math.sqrt(bands))


@pytest.mark.parametrize("cfg", [LFCC, MFCC, pytest.param(CQCC, marks=needs_librosa)], ids=lambda c: c.kind)
def test_a_clips_features_do_not_depend_on_its_batch(cfg):
    a, b = voiced(9000, 4), voiced(30000, 5)
    batch = np.zeros((2, len(b)), np.float32)
    batch[0, : len(a)], batch[1] = a, b
    feats, frames = F.extract(batch, [len(a), len(b)], cfg)
    alone = one(a, cfg)
    assert frames[0] == len(alone)
    np.testing.assert_allclose(feats[0, : frames[0]], alone, rtol=1e-5, atol=1e-4)


def test_empty_and_non_finite_clips_are_refused_with_the_fix():
    with pytest.raises(F.FeatureError, match="empty clips have no features"):
        F.extract(np.zeros((2, 100), np.float32), [100, 0], LFCC)
    with pytest.raises(F.FeatureError, match="NaN or inf"):
        F.extract(np.full((1, 100), np.nan, np.float32), None, LFCC)


def test_an_impossible_configuration_names_the_option():
    with pytest.raises(F.FeatureError, match="n_fft 256 is shorter than frame_length 320"):
        dataclasses.replace(LFCC, n_fft=256)
    with pytest.raises(F.FeatureError, match="no hand-crafted feature 'plp'"):
        F.get_config("plp")


# ------------------------------------------------------------------------------------------ baselines
def test_baseline_pools_each_clips_own_frames_whatever_the_batching():
    clips = [voiced(n, i) for i, n in enumerate((16000, 3000, 24000, 200, 8000))]
    model = FeatureBaseline("lfcc", batch_size=2)
    emb = model.scene(clips)
    want = np.stack([np.concatenate([one(c, LFCC).mean(0), one(c, LFCC).std(0)]) for c in clips])
    assert emb.shape == (5, 120) == (5, model.scene_embedding_size)
    np.testing.assert_allclose(emb, want, rtol=1e-5, atol=1e-5)


def test_baseline_delta_pooling_adds_the_delta_spread_of_each_value():
    clips = [voiced(8000, 1), voiced(5000, 2)]
    emb = FeatureBaseline("mfcc", pooling="mean+std+delta").scene(clips)
    for e, c in zip(emb, clips):
        f = one(c, MFCC).astype(np.float64)
        np.testing.assert_allclose(e[120:], ((f[2:] - f[:-2]) / 2).std(0), rtol=1e-5, atol=1e-5)


@needs_librosa
def test_resolve_model_builds_the_feature_baselines_and_refuses_encoder_options():
    model = T.resolve_model("cqcc", pooling="mean+std+delta", layer="last", batch_size=4, frequency=None)
    assert isinstance(model, FeatureBaseline) and model.scene_embedding_size == 180 and model.batch_size == 4
    assert T.resolve_model("lfcc-asvspoof2021").scene_embedding_size == 2 * 57
    with pytest.raises(T.TaskError, match="drop --layer"):
        T.resolve_model("lfcc", layer=3)
    with pytest.raises(T.TaskError, match="pool with"):
        T.resolve_model("mfcc", pooling="max")


@needs_librosa
def test_the_cache_key_holds_the_feature_configuration(tmp_path):
    lfcc, lfcc21, cqcc = (FeatureBaseline(n) for n in ("lfcc", "lfcc-asvspoof2021", "cqcc"))
    assert source_spec(lfcc)["features"] == LFCC.to_dict()
    assert source_spec(cqcc)["librosa"] == F.librosa_version()
    cache = EmbeddingCache(tmp_path)
    assert cache.key(source_spec(lfcc), [])[0] != cache.key(source_spec(lfcc21), [])[0]


def test_without_librosa_cqcc_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "librosa", None)  # `import librosa` now raises ImportError
    with pytest.raises(F.FeatureError, match=r"pip install 'audiorep\[features\]'"):
        FeatureBaseline("cqcc").cache_spec()
    assert FeatureBaseline("lfcc").scene([voiced(4000)]).shape == (1, 120)  # numpy/scipy only



def test_lfcc_probes_a_task_through_the_cache_like_any_model(tmp_path):
    root = tiny_fsdd(tmp_path / "fsdd")
    model = T.resolve_model("lfcc")
    res = T.run("fsdd", model, root, EmbeddingCache(tmp_path / "cache"), probe="knn", max_folds=1,
                progress=False)
    assert res.model == "lfcc" and res.extra["embedding_dim"] == 120 and res.mean == 1.0
    (meta,) = (tmp_path / "cache").rglob("meta.json")
    assert '"n_filters": 20' in meta.read_text()


def test_probe_command_takes_a_feature_baseline_as_model(tmp_path, capsys):
    root = tiny_fsdd(tmp_path / "fsdd")
    args = ["probe", "--model", "mfcc", "--task", "fsdd", "--data-root", str(root), "--probe", "knn", "--max-folds",
            "1", "--cache", str(tmp_path / "cache"), "-q"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "mfcc on fsdd" in out and "embedding dim 120" in out
    assert main([*args, "--layer", "2"]) == 2
    assert "has no layers; drop --layer" in capsys.readouterr().err
