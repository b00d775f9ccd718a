"""The random-projection tokenizer: nearest cosine code, scale-free, fixed by its seed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiorep.tokenizers import RandomProjectionTokenizer

SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _brute_force_codes(tok: RandomProjectionTokenizer, x: np.ndarray) -> np.ndarray:
    """Nearest codeword by L2 distance between unit vectors, one vector at a time, float64."""
    p, c = tok.projection.astype(np.float64), tok.codebook.astype(np.float64)
    out = []
    for v in x.reshape(-1, x.shape[-1]).astype(np.float64):
        z = v @ p
        z = z / np.linalg.norm(z)
        out.append(int(np.argmin(np.sum((c - z) ** 2, axis=1))))
    return np.asarray(out).reshape(x.shape[:-1])


def test_codes_are_the_nearest_unit_codeword_of_the_normalised_projection():
    tok = RandomProjectionTokenizer(in_dim=24, codebook_size=64, code_dim=8, seed=3)
    x = np.random.default_rng(0).normal(size=(3, 5, 24)).astype(np.float32)
    codes = np.asarray(tok(x))
    assert codes.shape == (3, 5) and codes.dtype == np.int32
    np.testing.assert_array_equal(codes, _brute_force_codes(tok, x))
    np.testing.assert_allclose(np.linalg.norm(tok.codebook, axis=1), 1.0, rtol=1e-6)
    assert tok.projection.shape == (24, 8) and tok.codebook.shape == (64, 8)


@SETTINGS
@given(scale=st.floats(1e-3, 1e3), seed=st.integers(0, 2**31 - 1))
def test_codes_do_not_depend_on_the_scale_of_a_patch(scale, seed):
    tok = RandomProjectionTokenizer(in_dim=16, codebook_size=32, code_dim=4)
    x = np.random.default_rng(seed).normal(size=(8, 16)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(tok(x * np.float32(scale))), np.asarray(tok(x)))


def test_the_seed_fixes_the_tokenizer_and_a_config_dict_rebuilds_it():
    x = np.random.default_rng(1).normal(size=(200, 16)).astype(np.float32)
    a = RandomProjectionTokenizer(in_dim=16, codebook_size=128, seed=0)
    again = RandomProjectionTokenizer.from_dict(a.to_dict())
    np.testing.assert_array_equal(np.asarray(again(x)), np.asarray(a(x)))
    other = RandomProjectionTokenizer(in_dim=16, codebook_size=128, seed=1)
    assert np.mean(np.asarray(other(x)) != np.asarray(a(x))) > 0.5
    assert len(np.unique(np.asarray(a(x)))) > 40  # random data spreads over the codebook


def test_wrong_sizes_are_named():
    tok = RandomProjectionTokenizer(in_dim=64)
    with pytest.raises(ValueError, match="codes vectors of 64 values.*in_dim=256"):
        tok(np.zeros((2, 256), np.float32))
    with pytest.raises(ValueError, match="code_dim=0"):
        RandomProjectionTokenizer(in_dim=64, code_dim=0)
    with pytest.raises(ValueError, match="at least 2 codes"):
        RandomProjectionTokenizer(in_dim=64, codebook_size=1)
