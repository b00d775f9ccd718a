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


# ------------------------------------------------------------------------------- teacher tokenizer (iteration 2+)
def test_spherical_kmeans_finds_planted_directions_and_uses_every_code():
    from audiorep.tokenizers import spherical_kmeans

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 16))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.integers(0, 6, 600)
    x = (centres[labels] + 0.05 * rng.normal(size=(600, 16))) * rng.uniform(0.5, 3.0, (600, 1))  # any length
    c = spherical_kmeans(x.astype(np.float32), 6, iters=20, seed=1)
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1.0, rtol=1e-5)
    assert np.all((centres @ c.T).max(axis=1) > 0.99)  # every planted direction has its centroid
    again = spherical_kmeans(x.astype(np.float32), 6, iters=20, seed=1)
    np.testing.assert_array_equal(c, again)
    many = spherical_kmeans(x.astype(np.float32), 40, iters=10, seed=0)  # more codes than clusters: none left empty
    assert len(np.unique(np.argmax(x @ many.T, axis=1))) == 40
    with pytest.raises(ValueError, match="at least k=700 vectors"):
        spherical_kmeans(x.astype(np.float32), 700)


def test_teacher_codes_are_the_nearest_centroid_of_the_teachers_outputs_in_context():
    import jax
    from flax import nnx

    from audiorep.models.ast import ASTConfig, ASTEncoder
    from audiorep.tokenizers import TeacherTokenizer

    teacher = ASTEncoder(ASTConfig.preset("ssast-patch-tiny").replace(patch=(16, 4), stride=(16, 4),
                                                                      pretrain_heads=False), rngs=nnx.Rngs(0))
    feats = jax.random.normal(jax.random.key(0), (3, 64, 128))
    tok = TeacherTokenizer.fit(teacher, [feats[:2], feats[2:]], codebook_size=16, iters=5, seed=0)
    assert tok.centroids.shape == (16, teacher.cfg.dim) and tok.codebook_size == 16
    out = np.asarray(teacher(feats).tokens, np.float64)
    out /= np.linalg.norm(out, axis=-1, keepdims=True)
    expect = np.argmax(out @ tok.centroids.T.astype(np.float64), axis=-1)
    codes = np.asarray(tok(feats))
    assert codes.shape == (3, 128) and codes.dtype == np.int32
    assert np.mean(codes == expect) > 0.99  # float32 vs float64 ties aside
    # what is coded is a patch in its context: change the last time column only, and the other columns' move too
    other = feats.at[:, 60:].set(0.0)
    before, after = (np.asarray(tok.embed(f)).reshape(3, 8, 16, -1)[:, :, :15] for f in (feats, other))
    assert np.abs(after - before).max() > 1e-3
    first = TeacherTokenizer(teacher, tok.centroids, layer=0)  # layer 0: the patch embeddings, no context
    emb0 = np.asarray(teacher(feats, return_hidden=True).hidden[0], np.float64)
    emb0 /= np.linalg.norm(emb0, axis=-1, keepdims=True)
    assert np.mean(np.asarray(first(feats)) == np.argmax(emb0 @ tok.centroids.T, axis=-1)) > 0.99
    with pytest.raises(ValueError, match="teacher_layer=3: -1 .* 1..2"):
        TeacherTokenizer(teacher, tok.centroids, layer=3)
