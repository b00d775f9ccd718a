"""BEATs encoder: the pieces that are easy to get subtly wrong, checked against direct transcriptions."""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from audiorep.models.beats import (
    BEATS_BASE,
    BEATS_TINY,
    PRESETS,
    BEATsConfig,
    BEATsEncoder,
    WeightNormConv1d,
)
from audiorep.models.convert.beats import encoder_from_checkpoint
from audiorep.models.convert.common import read_torch_zip
from audiorep.models.layers import relative_position_buckets

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def tiny():
    return BEATsEncoder(BEATS_TINY, rngs=nnx.Rngs(0))


def _fbank(rng, batch=2, frames=64, mels=128):
    return jnp.asarray(rng.standard_normal((batch, frames, mels)).astype(np.float32))


def test_tokens_are_time_major(tiny):
    """A patch that is unique in time slot t and frequency slot f lands at token t * F + f after patch embedding."""
    x = np.zeros((1, 64, 128), np.float32)
    x[0, 2 * 16:3 * 16, 5 * 16:6 * 16] = 1.0  # time patch 2, frequency patch 5
    emb = np.asarray(tiny.embed_patches(jnp.asarray(x)))[0]
    base = np.asarray(tiny.embed_patches(jnp.zeros((1, 64, 128))))[0]
    changed = np.nonzero(np.abs(emb - base).max(-1) > 1e-6)[0]
    assert changed.tolist() == [2 * 8 + 5]


def test_output_grid_and_token_count(tiny, rng):
    out = tiny(_fbank(rng, frames=70))
    assert out.grid == (8, 4) and out.time_major and out.cls is None
    assert out.tokens.shape == (2, 32, BEATS_TINY.encoder_embed_dim)
    assert tiny.grid_for(70) == (8, 4)


def test_frames_beyond_the_last_full_patch_are_ignored(tiny, rng):
    x = _fbank(rng, frames=64)
    longer = jnp.concatenate([x, 100.0 * jnp.ones((2, 15, 128))], axis=1)
    np.testing.assert_allclose(tiny(longer).tokens, tiny(x).tokens, atol=1e-6)


def test_hidden_states_are_layer_inputs_and_outputs(tiny, rng):
    out = tiny(_fbank(rng), return_hidden=True)
    assert len(out.hidden) == BEATS_TINY.encoder_layers + 1
    np.testing.assert_array_equal(out.hidden[-1], out.tokens)


def test_keep_with_every_index_equals_the_full_path(tiny, rng):
    x = _fbank(rng)
    keep = jnp.tile(jnp.arange(32)[None], (2, 1))
    np.testing.assert_allclose(tiny(x, keep=keep).tokens, tiny(x).tokens, atol=1e-5)


def test_keep_returns_only_kept_tokens_and_records_them(tiny, rng):
    keep = jnp.array([[0, 3, 17, 30], [1, 2, 8, 31]])
    out = tiny(_fbank(rng), keep=keep)
    assert out.tokens.shape == (2, 4, BEATS_TINY.encoder_embed_dim)
    np.testing.assert_array_equal(out.keep, keep)
    np.testing.assert_array_equal(out.token_time_index(), keep // 8)


def test_dropped_patches_do_not_leak_into_kept_tokens(tiny, rng):
    x = np.asarray(_fbank(rng, batch=1))
    keep = jnp.array([[0, 1, 2, 3, 4, 5, 6, 7]])  # the first time patch only
    changed = x.copy()
    changed[:, 16:] = 50.0  # every other patch
    np.testing.assert_allclose(tiny(jnp.asarray(changed), keep=keep).tokens, tiny(jnp.asarray(x), keep=keep).tokens,
                               atol=1e-5)


def test_keep_uses_true_distances_for_relative_positions(tiny):
    keep = jnp.array([[0, 9, 20]])
    got = np.asarray(tiny.position_bias(32, keep))[0]  # [H, K, K]
    table = np.asarray(tiny.relative_attention_bias[...])
    for i, qi in enumerate([0, 9, 20]):
        for j, kj in enumerate([0, 9, 20]):
            bucket = relative_position_buckets(np.array(kj - qi), BEATS_TINY.num_buckets, BEATS_TINY.max_distance)
            np.testing.assert_allclose(got[:, i, j], table[int(bucket)])


def test_mask_is_rejected_with_the_keep_alternative(tiny, rng):
    with pytest.raises(ValueError, match="no mask embedding.*keep"):
        tiny(_fbank(rng), mask=jnp.zeros((2, 32), bool))


def test_wrong_mel_count_error_says_what_is_expected(tiny):
    with pytest.raises(ValueError, match="128 mel bins"):
        tiny(jnp.zeros((1, 64, 80)))


def test_missing_batch_axis_error(tiny):
    with pytest.raises(ValueError, match="add a batch axis"):
        tiny(jnp.zeros((64, 128)))


def test_full_position_bias_is_the_embedding_of_key_minus_query_buckets(tiny):
    got = np.asarray(tiny.position_bias(20))[0]
    table = np.asarray(tiny.relative_attention_bias[...])
    q, k = 3, 17
    bucket = relative_position_buckets(np.array(k - q), BEATS_TINY.num_buckets, BEATS_TINY.max_distance)
    np.testing.assert_allclose(got[:, q, k], table[int(bucket)])
    assert int(bucket) >= BEATS_TINY.num_buckets // 2  # key after query: the upper half


def test_gated_bias_matches_the_official_formula(tiny, rng):
    layer = tiny.layers[0]
    layer.grep_a[...] = jnp.asarray(rng.uniform(0.5, 1.5, BEATS_TINY.encoder_attention_heads).astype(np.float32))
    q = rng.standard_normal((2, 4, 5, BEATS_TINY.head_dim)).astype(np.float32)
    w, b = np.asarray(layer.grep_linear.kernel[...]), np.asarray(layer.grep_linear.bias[...])
    proj = (q @ w + b).reshape(2, 4, 5, 2, 4).sum(-1)
    sig = 1 / (1 + np.exp(-proj))
    a, bb = sig[..., 0:1], sig[..., 1:2]
    expected = a * (bb * np.asarray(layer.grep_a[...])[None, :, None, None] - 1.0) + 2.0
    np.testing.assert_allclose(layer.gate(jnp.asarray(q)), expected, atol=1e-6)


def test_weight_norm_reconstruction_norms_over_out_and_in_channels(rng):
    conv = WeightNormConv1d(8, 4, 2, rngs=nnx.Rngs(0))
    v = rng.standard_normal((8, 4, 4)).astype(np.float32)
    g = rng.uniform(0.5, 2.0, (1, 1, 4)).astype(np.float32)
    conv.weight_v[...], conv.weight_g[...] = jnp.asarray(v), jnp.asarray(g)
    w = np.asarray(conv.weight())
    for k in range(4):
        np.testing.assert_allclose(w[:, :, k], g[0, 0, k] * v[:, :, k] / np.linalg.norm(v[:, :, k]), rtol=1e-5)


def test_weight_norm_init_starts_at_the_plain_weight():
    conv = WeightNormConv1d(8, 4, 2, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(conv.weight(), conv.weight_v[...], rtol=1e-5)


def test_pos_conv_output_length_and_same_pad_drop_last_frame(rng):
    conv = WeightNormConv1d(8, 4, 2, rngs=nnx.Rngs(0))
    x = rng.standard_normal((1, 10, 8)).astype(np.float32)
    y = np.asarray(conv(jnp.asarray(x)))
    assert y.shape == (1, 10, 8)
    # frame t sees inputs t-2 .. t+1 (padding 2 each side, kernel 4, last output frame dropped)
    w = np.asarray(conv.weight())
    t = 5
    pre = np.zeros(8)
    for o in range(8):
        grp = o // 4
        for k in range(4):
            pre[o] += w[o, :, k] @ x[0, t - 2 + k, grp * 4:(grp + 1) * 4]
    pre += np.asarray(conv.bias[...])
    from scipy.special import erf
    np.testing.assert_allclose(y[0, t], 0.5 * pre * (1 + erf(pre / np.sqrt(2))), atol=1e-5)


def test_deep_norm_constants_follow_the_paper():
    assert BEATS_BASE.deep_norm_alpha == pytest.approx(math.pow(24, 0.25))
    assert BEATS_BASE.deep_norm_beta == pytest.approx(math.pow(96, -0.25))
    assert BEATsConfig(deep_norm=False).deep_norm_alpha == 1.0


def test_deep_norm_scales_the_residual_in_every_layer(tiny):
    assert all(layer.residual_scale == pytest.approx(BEATS_TINY.deep_norm_alpha) for layer in tiny.layers)
    assert BEATS_TINY.deep_norm_alpha == pytest.approx(math.pow(4, 0.25))


@pytest.mark.slow
def test_layer_wise_gradient_decay_scales_gradients_not_values(rng):
    cfg = BEATsConfig.from_dict({**BEATS_TINY.to_dict(), "encoder_layers": 1, "layer_wise_gradient_decay_ratio": 0.5})
    plain = BEATsConfig.from_dict({**cfg.to_dict(), "layer_wise_gradient_decay_ratio": 1.0})
    x = _fbank(rng, batch=1, frames=32)
    a, b = BEATsEncoder(cfg, rngs=nnx.Rngs(1)), BEATsEncoder(plain, rngs=nnx.Rngs(1))
    np.testing.assert_allclose(a(x).tokens, b(x).tokens, atol=1e-6)
    grad = lambda m: nnx.grad(lambda m: m(x).tokens.sum())(m)["patch_embedding"]["proj"]["kernel"][...]
    np.testing.assert_allclose(grad(a), 0.5 * grad(b), rtol=1e-4, atol=1e-7)


def test_base_preset_has_the_released_parameter_count():
    model = nnx.eval_shape(lambda: BEATsEncoder(BEATS_BASE, rngs=nnx.Rngs(0)))
    n = sum(math.prod(p.shape) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert n == 90_311_792  # official: 90.3 M (the shared relative-position table counted once)


def test_config_round_trips_through_dict():
    assert BEATsConfig.from_dict(BEATS_TINY.to_dict()) == BEATS_TINY


def test_config_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown BEATsConfig fields \\['bogus'\\]"):
        BEATsConfig.from_dict({**BEATS_TINY.to_dict(), "bogus": 1})


def test_official_cfg_fills_class_defaults_and_ignores_unused_fields_with_a_warning():
    with pytest.warns(UserWarning, match="label_smoothing"):
        cfg = BEATsConfig.from_official({"input_patch_size": 16, "label_smoothing": 0.1})
    assert cfg.max_distance == 1280 and not cfg.deep_norm and not cfg.relative_position_embedding


def test_released_cfg_gives_the_base_preset():
    released = {k: v for k, v in BEATS_BASE.to_dict().items() if k != "num_mel_bins"}
    assert BEATsConfig.from_official(released) == BEATS_BASE


def test_unsupported_activation_is_a_clear_error():
    with pytest.raises(ValueError, match="only 'gelu'"):
        BEATsConfig(activation_fn="relu")


def test_presets_include_registry_names():
    assert PRESETS["beats"] is BEATS_BASE and PRESETS["beats-tiny"] is BEATS_TINY


def test_pre_ln_variant_runs_and_applies_the_final_norm(rng):
    cfg = BEATsConfig.from_dict({**BEATS_TINY.to_dict(), "layer_norm_first": True, "deep_norm": False})
    out = BEATsEncoder(cfg, rngs=nnx.Rngs(0))(_fbank(rng, frames=32), return_hidden=True)
    tok = np.asarray(out.tokens)
    np.testing.assert_allclose(tok.mean(-1), 0.0, atol=1e-5)  # LayerNorm at the end (default scale/bias)
    assert not np.allclose(out.hidden[-1], out.tokens)


def test_training_mode_uses_dropout_and_jits(rng):
    cfg = BEATsConfig.from_dict({**BEATS_TINY.to_dict(), "dropout": 0.5, "encoder_layerdrop": 0.5})
    model = BEATsEncoder(cfg, rngs=nnx.Rngs(0, dropout=1))
    x = _fbank(rng, frames=32)
    step = nnx.jit(lambda m, x: m(x, deterministic=False).tokens)
    a, b = step(model, x), step(model, x)
    assert a.shape == (2, 16, 64) and not np.allclose(a, b)
    np.testing.assert_allclose(model(x).tokens, model(x).tokens)


def test_classify_without_a_predictor_explains_why(tiny, rng):
    with pytest.raises(ValueError, match="no predictor head"):
        tiny.classify(_fbank(rng))


def test_keep_out_of_range_or_repeated_is_a_clear_error(tiny, rng):
    x = _fbank(rng)
    with pytest.raises(ValueError, match="must lie in \\[0, 32\\)"):
        tiny(x, keep=jnp.array([[0, 32], [1, 2]]))
    with pytest.raises(ValueError, match="repeated"):
        tiny(x, keep=jnp.array([[0, 0], [1, 2]]))


def test_padded_batch_gives_the_same_real_tokens_as_each_clip_alone(tiny, rng):
    short = _fbank(rng, batch=1, frames=40)  # 2 time patches (8 frames dropped)
    long = _fbank(rng, batch=1, frames=64)  # 4 time patches
    batch = jnp.concatenate([jnp.pad(short, ((0, 0), (0, 24), (0, 0)), constant_values=3.0), long])
    pad = np.zeros((2, 64), bool)
    pad[0, 40:] = True
    out = tiny(batch, padding_mask=jnp.asarray(pad))
    valid = np.asarray(tiny.token_valid(jnp.asarray(pad)))
    assert valid[0].sum() == 16 and valid[1].all()
    np.testing.assert_allclose(out.tokens[0, :16], tiny(short).tokens[0], atol=1e-5)
    np.testing.assert_allclose(out.tokens[1], tiny(long).tokens[0], atol=1e-5)


def test_padding_mask_shape_must_match_the_frames(tiny, rng):
    with pytest.raises(ValueError, match="padding_mask must be bool\\[B, frames\\]"):
        tiny(_fbank(rng), padding_mask=jnp.zeros((2, 10), bool))


def _official_token_padding(frame_padding: np.ndarray, n_tokens: int) -> np.ndarray:
    """microsoft/unilm BEATs `forward_padding_mask` (frames -> tokens), transcribed: cut the mask to a multiple of
    the token count, group consecutive entries, a token is padded when its whole group is."""
    extra = frame_padding.shape[1] % n_tokens
    if extra:
        frame_padding = frame_padding[:, :-extra]
    return frame_padding.reshape(len(frame_padding), n_tokens, -1).all(-1)


@pytest.mark.parametrize("frames", [64, 165, 256])
def test_padding_from_a_patch_boundary_masks_the_tokens_the_official_mapping_masks(tiny, frames):
    """Every chunk the Embedder builds is padded from a patch boundary: there both rules agree."""
    t = frames // 16
    for real_patches in range(1, t + 1):
        pad = np.arange(frames)[None, :] >= 16 * real_patches
        ours = ~np.asarray(tiny.token_valid(jnp.asarray(pad)))
        np.testing.assert_array_equal(ours, _official_token_padding(pad, 8 * t))


def test_padding_inside_a_patch_drops_the_whole_patch_as_the_unpadded_clip_has_none(tiny):
    """Padding from frame 40 (inside time patch 2): the unpadded clip's conv drops that patch; the official
    proportional mapping would keep its first four frequency rows."""
    pad = np.arange(64)[None, :] >= 40
    real = np.asarray(tiny.token_valid(jnp.asarray(pad)))[0]
    np.testing.assert_array_equal(real, np.arange(32) < 16)
    assert (~_official_token_padding(pad, 32))[0].sum() == 20


@pytest.mark.slow
def test_padded_batch_matches_the_official_reference_of_each_unpadded_clip():
    """The official-layout fixture (tests/fixtures/make_beats_fixture.py: an independent PyTorch forward of the
    official code on two unpadded 165-frame inputs) is the reference. Here each input is padded to 256 frames
    with other values and masked, one from inside its 11th patch (frame 165), one from a patch boundary
    (frame 160): their real tokens are the reference's."""
    enc, _ = encoder_from_checkpoint(read_torch_zip(FIXTURES / "beats_tiny.pt"))
    ref = np.load(FIXTURES / "beats_tiny_ref.npz")["beats_tiny/tokens"]  # f32[2, 80, 32]: 10 patches x 8 rows
    t, f, b = np.arange(165)[None, :, None], np.arange(128)[None, None, :], np.arange(2)[:, None, None]
    fbank = (np.sin(0.37 * t + 0.11 * f * (b + 1)) + 0.5 * np.cos(0.05 * t * f / 7.0 + b) - 0.2).astype(np.float32)
    x = np.full((2, 256, 128), 3.0, np.float32)
    x[:, :165] = fbank
    x[1, 160:] = -7.0
    pad = np.zeros((2, 256), bool)
    pad[0, 165:], pad[1, 160:] = True, True
    out = enc(jnp.asarray(x), padding_mask=jnp.asarray(pad))
    valid = np.asarray(out.valid)
    assert valid.sum(1).tolist() == [80, 80] and valid[:, :80].all()
    got = np.asarray(out.tokens)[:, :80]
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()
    unmasked = np.asarray(enc(jnp.asarray(x)).tokens)[:, :80]
    assert np.abs(unmasked - ref).max() > 1e-2 * np.abs(ref).max()  # the padding does reach them unmasked
