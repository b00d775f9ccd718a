"""Shared encoder layers: attention, blocks, patch embedding, T5 buckets, positional-embedding fitting."""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import erf

from audiorep.models.layers import (
    DropPath,
    MultiHeadAttention,
    PatchEmbed2d,
    TransformerBlock,
    crop_axis,
    fit_pos_embed,
    gelu,
    grouped_conv1d,
    interpolate_axes,
    layer_norm,
    real_time_patches,
    relative_position_buckets,
)

FIXTURES = Path(__file__).parent / "fixtures"


def _np_layer_norm(x, scale, bias, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * scale + bias


def _np_attention(x, att: MultiHeadAttention, bias=None):
    """Straight numpy multi-head attention from the module's weights (separate q/k/v layout)."""
    w = lambda lin: (np.asarray(lin.kernel[...]), np.asarray(lin.bias[...]))
    b, n, d = x.shape
    h, dh = att.num_heads, att.head_dim
    (wq, bq), (wk, bk), (wv, bv), (wo, bo) = w(att.q), w(att.k), w(att.v), w(att.proj)
    split = lambda t: t.reshape(b, n, h, dh).transpose(0, 2, 1, 3)
    q, k, v = split(x @ wq + bq), split(x @ wk + bk), split(x @ wv + bv)
    logits = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dh)
    if bias is not None:
        logits = logits + bias
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return (p @ v).transpose(0, 2, 1, 3).reshape(b, n, d) @ wo + bo


def test_attention_matches_plain_numpy_softmax_attention_with_bias(rng):
    att = MultiHeadAttention(16, 4, fused_qkv=False, rngs=nnx.Rngs(0))
    x = rng.standard_normal((2, 5, 16)).astype(np.float32)
    bias = rng.standard_normal((4, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(att(jnp.asarray(x), bias=jnp.asarray(bias)), _np_attention(x, att, bias),
                               atol=1e-5)


def test_fused_attention_path_matches_numpy_attention(rng, monkeypatch):
    """The jax.nn.dot_product_attention path (cuDNN on GPUs; 'xla' runs the same code on CPU) computes the same
    attention as the einsum path, and masks / biases keep using the einsum path."""
    monkeypatch.setenv("AUDIOREP_ATTENTION", "xla")
    att = MultiHeadAttention(16, 4, fused_qkv=False, rngs=nnx.Rngs(0))
    x = rng.standard_normal((2, 5, 16)).astype(np.float32)
    np.testing.assert_allclose(att(jnp.asarray(x)), _np_attention(x, att), atol=1e-5)
    calls = []
    monkeypatch.setattr(jax.nn, "dot_product_attention", lambda *a, **k: calls.append(1))
    att(jnp.asarray(x), key_mask=jnp.ones((2, 5), bool))
    assert not calls
    with pytest.raises(AttributeError):  # the patched fused call (returns None) is taken without a mask
        att(jnp.asarray(x))
    assert calls
    monkeypatch.setenv("AUDIOREP_ATTENTION", "flash")
    with pytest.raises(ValueError, match="AUDIOREP_ATTENTION"):
        att(jnp.asarray(x))


def test_attention_bias_hook_receives_unscaled_per_head_queries(rng):
    att = MultiHeadAttention(16, 4, fused_qkv=False, rngs=nnx.Rngs(0))
    x = jnp.asarray(rng.standard_normal((2, 5, 16)).astype(np.float32))
    seen = {}

    def hook(q):
        seen["q"] = q
        return jnp.zeros(())

    att(x, bias_fn=hook)
    expected = (x @ att.q.kernel[...] + att.q.bias[...]).reshape(2, 5, 4, 4).transpose(0, 2, 1, 3)
    np.testing.assert_allclose(seen["q"], expected, atol=1e-6)


def test_fused_qkv_splits_as_q_then_k_then_v(rng):
    fused = MultiHeadAttention(8, 2, fused_qkv=True, rngs=nnx.Rngs(0))
    sep = MultiHeadAttention(8, 2, fused_qkv=False, rngs=nnx.Rngs(1))
    kern, b = fused.qkv.kernel[...], fused.qkv.bias[...]
    for i, lin in enumerate((sep.q, sep.k, sep.v)):
        lin.kernel[...] = kern[:, 8 * i:8 * (i + 1)]
        lin.bias[...] = b[8 * i:8 * (i + 1)]
    sep.proj.kernel[...], sep.proj.bias[...] = fused.proj.kernel[...], fused.proj.bias[...]
    x = jnp.asarray(rng.standard_normal((1, 3, 8)).astype(np.float32))
    np.testing.assert_allclose(fused(x), sep(x), atol=1e-6)


def test_key_mask_removes_masked_keys_from_attention(rng):
    att = MultiHeadAttention(8, 2, rngs=nnx.Rngs(0))
    x = jnp.asarray(rng.standard_normal((1, 4, 8)).astype(np.float32))
    masked = att(x, key_mask=jnp.array([[True, True, False, False]]))
    x_changed = x.at[:, 2:].set(100.0)
    again = att(x_changed, key_mask=jnp.array([[True, True, False, False]]))
    np.testing.assert_allclose(masked[:, :2], again[:, :2], atol=1e-5)


def test_a_row_whose_keys_are_all_masked_stays_finite(rng):
    """Batch filler rows are all padding: masked attention gives them finite values (no NaN from an empty softmax),
    and a bias on the logits does not change that."""
    att = MultiHeadAttention(8, 2, rngs=nnx.Rngs(0))
    x = jnp.asarray(rng.standard_normal((2, 4, 8)).astype(np.float32))
    mask = jnp.array([[False] * 4, [True, True, False, False]])
    out = att(x, key_mask=mask, bias=jnp.asarray(rng.standard_normal((1, 2, 4, 4)).astype(np.float32)))
    assert np.isfinite(np.asarray(out)).all()
    assert np.isfinite(np.asarray(att(x, key_mask=mask))).all()


@pytest.mark.parametrize("kernel,stride", [(16, 16), (16, 10), (2, 2)])
def test_a_time_patch_is_real_when_none_of_its_frames_is_padded(kernel, stride):
    frames, count = 120, (120 - kernel) // stride + 1
    for first_padded in (0, 37, 60, 119):
        pad = np.arange(frames)[None, :] >= first_padded
        real = np.asarray(real_time_patches(jnp.asarray(pad), kernel, stride, count))[0]
        want = np.arange(count) * stride + kernel <= first_padded  # the patch ends before the padding starts
        np.testing.assert_array_equal(real, want)
    with pytest.raises(ValueError, match="need"):
        real_time_patches(jnp.zeros((1, frames), bool), kernel, stride, count + 1)


def test_post_ln_block_scales_residual_before_each_norm(rng):
    blk = TransformerBlock(16, 4, 32, pre_norm=False, residual_scale=2.5, eps=1e-5, fused_qkv=False,
                           rngs=nnx.Rngs(0))
    x = rng.standard_normal((2, 3, 16)).astype(np.float32)
    ln = lambda t, m: _np_layer_norm(t, np.asarray(m.scale[...]), np.asarray(m.bias[...]), 1e-5)
    h = ln(2.5 * x + _np_attention(x, blk.attn), blk.norm1)
    f1, f2 = blk.mlp.fc1, blk.mlp.fc2
    u = h @ np.asarray(f1.kernel[...]) + np.asarray(f1.bias[...])
    u = 0.5 * u * (1 + erf(u / np.sqrt(2)))
    expected = ln(2.5 * h + u @ np.asarray(f2.kernel[...]) + np.asarray(f2.bias[...]), blk.norm2)
    np.testing.assert_allclose(blk(jnp.asarray(x)), expected, atol=2e-5)


def test_pre_ln_block_adds_branches_to_the_unnormalised_stream(rng):
    blk = TransformerBlock(16, 4, 32, pre_norm=True, fused_qkv=False, rngs=nnx.Rngs(0))
    blk.norm1.scale[...] = jnp.full((16,), 0.5)
    x = rng.standard_normal((1, 3, 16)).astype(np.float32)
    ln = lambda t, m: _np_layer_norm(t, np.asarray(m.scale[...]), np.asarray(m.bias[...]), 1e-6)
    h = x + _np_attention(ln(x, blk.norm1), blk.attn)
    f1, f2 = blk.mlp.fc1, blk.mlp.fc2
    u = ln(h, blk.norm2) @ np.asarray(f1.kernel[...]) + np.asarray(f1.bias[...])
    u = 0.5 * u * (1 + erf(u / np.sqrt(2)))
    expected = h + u @ np.asarray(f2.kernel[...]) + np.asarray(f2.bias[...])
    np.testing.assert_allclose(blk(jnp.asarray(x)), expected, atol=2e-5)


def test_gelu_is_the_exact_erf_form():
    x = np.linspace(-4, 4, 101).astype(np.float32)
    np.testing.assert_allclose(gelu(jnp.asarray(x)), 0.5 * x * (1 + erf(x / np.sqrt(2))), atol=1e-6)


def test_patch_embedding_drops_incomplete_trailing_patches():
    pe = PatchEmbed2d(4, (16, 16), rngs=nnx.Rngs(0))
    assert pe(jnp.zeros((1, 40, 32))).shape == (1, 2, 2, 4)
    assert pe.grid(40, 32) == (2, 2)


def test_patch_embedding_with_stride_gives_overlapping_grid():
    pe = PatchEmbed2d(4, (16, 16), (10, 10), rngs=nnx.Rngs(0))
    assert pe(jnp.zeros((1, 128, 100))).shape == (1, 12, 9, 4)


def test_patch_embedding_rejects_input_smaller_than_a_patch():
    pe = PatchEmbed2d(4, (16, 16), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="smaller than one 16x16 patch"):
        pe(jnp.zeros((1, 10, 128)))


@pytest.mark.parametrize("groups,kernel", [(2, 4), (3, 5)])
def test_grouped_conv1d_value_and_gradients_equal_xla_convolution(groups, kernel):
    x = jax.random.normal(jax.random.key(0), (2, 9, 6 * groups))
    w = jax.random.normal(jax.random.key(1), (6 * groups, 6, kernel))

    def xla(x, w):
        return jax.lax.conv_general_dilated(x, w, (1,), [(kernel // 2, kernel // 2)],
                                            dimension_numbers=("NWC", "OIW", "NWC"), feature_group_count=groups)

    np.testing.assert_allclose(grouped_conv1d(x, w, groups, kernel // 2), xla(x, w), rtol=1e-6, atol=1e-6)
    want = jax.grad(lambda x, w: jnp.sum(jnp.sin(xla(x, w))), argnums=(0, 1))(x, w)
    got = jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.sin(grouped_conv1d(x, w, groups, kernel // 2))),
                           argnums=(0, 1)))(x, w)
    for g, e in zip(got, want, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)


def test_drop_path_is_identity_when_deterministic_and_drops_whole_examples_in_training():
    dp = DropPath(0.5, rngs=nnx.Rngs(dropout=0))
    x = jnp.ones((64, 3, 2))
    np.testing.assert_array_equal(dp(x), x)
    y = np.asarray(dp(x, deterministic=False))
    per_example = y.reshape(64, -1)
    assert set(np.unique(per_example)) <= {0.0, 2.0}
    assert (per_example.min(1) == per_example.max(1)).all()


def _t5_bucket_reference(rel: int, num_buckets: int, max_distance: int) -> int:
    """Scalar transcription of the T5 / BEATs bidirectional bucket formula."""
    half = num_buckets // 2
    bucket = half if rel > 0 else 0
    rel = abs(rel)
    max_exact = half // 2
    if rel < max_exact:
        return bucket + rel
    large = max_exact + int(np.float32(np.log(np.float32(rel) / np.float32(max_exact)))
                            / np.float32(math.log(max_distance / max_exact)) * np.float32(half - max_exact))
    return bucket + min(large, half - 1)


def test_t5_buckets_known_values_for_released_beats_settings():
    rel = np.array([0, -1, 1, -79, 79, 80, -80, 700, 800, 5000, -5000])
    got = relative_position_buckets(rel, 320, 800)
    assert got.tolist() == [0, 1, 161, 79, 239, 240, 80, 315, 319, 319, 159]


def test_t5_buckets_match_scalar_formula_numpy_and_jax():
    rel = np.arange(-1200, 1201)
    ref = np.array([_t5_bucket_reference(int(r), 320, 800) for r in rel])
    np.testing.assert_array_equal(relative_position_buckets(rel, 320, 800), ref)
    np.testing.assert_array_equal(np.asarray(relative_position_buckets(jnp.asarray(rel), 320, 800)), ref)


def test_t5_buckets_unidirectional_uses_only_past_offsets():
    got = relative_position_buckets(np.array([3, 0, -3]), 32, 128, bidirectional=False)
    assert got.tolist() == [0, 0, 3]


def test_interpolation_matches_torch_bilinear_align_corners_false():
    ref = np.load(FIXTURES / "interp_reference.npz")
    x = jnp.asarray(ref["x"])
    np.testing.assert_allclose(interpolate_axes(x, {2: 8, 3: 20}), ref["up"], atol=1e-5)
    np.testing.assert_allclose(interpolate_axes(x, {2: 5, 3: 7}), ref["down"], atol=1e-5)


def test_crop_center_follows_the_ast_rule():
    x = jnp.arange(10)
    np.testing.assert_array_equal(crop_axis(x, 0, 4, align="center"), [3, 4, 5, 6])
    np.testing.assert_array_equal(crop_axis(x, 0, 4), [0, 1, 2, 3])
    np.testing.assert_array_equal(crop_axis(x, 0, 4, offset=5), [5, 6, 7, 8])


def test_fit_pos_embed_crops_shrinking_axes_and_interpolates_growing_ones():
    pe = jnp.asarray(np.random.default_rng(0).standard_normal((1, 8, 10, 3)).astype(np.float32))
    out = fit_pos_embed(pe, (6, 15))
    assert out.shape == (1, 6, 15, 3)
    np.testing.assert_allclose(out, interpolate_axes(pe[:, 1:7], {2: 15}), atol=1e-6)


def test_crop_to_a_larger_size_errors_with_the_fix():
    with pytest.raises(ValueError, match="interpolate_axes"):
        crop_axis(jnp.zeros(4), 0, 5)


def test_blocks_are_jittable_through_nnx_split_merge(rng):
    blk = TransformerBlock(8, 2, 16, rngs=nnx.Rngs(0))
    graph, state = nnx.split(blk)
    f = jax.jit(lambda s, x: nnx.merge(graph, s)(x))
    x = jnp.asarray(rng.standard_normal((1, 3, 8)).astype(np.float32))
    np.testing.assert_allclose(f(state, x), blk(x), atol=1e-6)


@given(st.integers(-5000, 5000), st.sampled_from([(32, 128), (320, 800), (320, 1280)]))
def test_t5_buckets_are_in_range_and_mirror_between_directions(rel, setting):
    nb, md = setting
    b = int(relative_position_buckets(np.array(rel), nb, md))
    assert 0 <= b < nb
    if rel > 0:
        assert b == nb // 2 + int(relative_position_buckets(np.array(-rel), nb, md))
    else:
        assert b < nb // 2


@given(st.integers(0, 4000))
def test_t5_buckets_never_decrease_with_distance(d):
    a, b = relative_position_buckets(np.array([-d, -(d + 1)]), 320, 800)
    assert a <= b


def test_block_layer_norms_stay_exact_for_inputs_with_a_large_mean(rng):
    """Two-pass variance (as torch): the one-pass E[x^2] - E[x]^2 loses ~0.4 at mean 1000 in float32."""
    blk = TransformerBlock(256, 4, 32, rngs=nnx.Rngs(0))
    x = (1000.0 + rng.standard_normal((2, 3, 256))).astype(np.float32)
    ref = _np_layer_norm(x.astype(np.float64), 1.0, 0.0, 1e-6)
    np.testing.assert_allclose(blk.norm1(jnp.asarray(x)), ref, atol=1e-3)


def _np_layer_norm_objective(x, scale, bias, w, eps=1e-6):
    return float((_np_layer_norm(x, scale, bias, eps) * w).sum())


@settings(deadline=None, max_examples=30)
@given(st.floats(-100.0, 100.0), st.floats(0.1, 30.0), st.integers(0, 2**16))
def test_layer_norm_gradient_matches_float64_finite_differences(mean, spread, seed):
    """The closed-form gradient (x, scale and bias) against central differences of a float64 numpy LayerNorm,
    along random directions: d/dh sum(w * LN(x + h v)) at h = 0 == <grad, v>."""
    rng = np.random.default_rng(seed)
    x = (mean + spread * rng.standard_normal((3, 2, 16))).astype(np.float32).astype(np.float64)
    scale, bias, w = rng.standard_normal(16) + 1, rng.standard_normal(16), rng.standard_normal((3, 2, 16))
    gx, gs, gb = jax.grad(lambda *a: jnp.sum(layer_norm(*a, 1e-6) * w), argnums=(0, 1, 2))(
        *(jnp.asarray(a, jnp.float32) for a in (x, scale, bias)))
    for arg, grad in ((0, gx), (1, gs), (2, gb)):
        args = [x, scale, bias]
        v = rng.standard_normal(args[arg].shape)
        h = 1e-5 * (spread if arg == 0 else 1.0)  # the LayerNorm varies on the scale of x's spread
        plus, minus = list(args), list(args)
        plus[arg], minus[arg] = args[arg] + h * v, args[arg] - h * v
        numeric = (_np_layer_norm_objective(*plus, w) - _np_layer_norm_objective(*minus, w)) / (2 * h)
        analytic = float((np.asarray(grad, np.float64) * v).sum())
        assert analytic == pytest.approx(numeric, rel=1e-3, abs=1e-3 * (1 + abs(numeric)))


def test_layer_norm_keeps_bfloat16_inputs_in_bfloat16_and_its_gradients_too(rng):
    x = jnp.asarray(rng.standard_normal((4, 32)), jnp.bfloat16)
    scale, bias = jnp.ones(32, jnp.bfloat16), jnp.zeros(32, jnp.float32)
    y = layer_norm(x, scale, bias, 1e-6)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y, np.float32), _np_layer_norm(np.asarray(x, np.float32), 1, 0, 1e-6),
                               atol=2e-2)
    gx, gs, gb = jax.grad(lambda *a: jnp.sum(layer_norm(*a, 1e-6).astype(jnp.float32) ** 2),
                          argnums=(0, 1, 2))(x, scale, bias)
    assert (gx.dtype, gs.dtype, gb.dtype) == (jnp.bfloat16, jnp.bfloat16, jnp.float32)
