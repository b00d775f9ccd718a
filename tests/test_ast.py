"""SSAST/AST encoder: token order, positional-embedding fitting, masking, keep, heads, configs.

Parity with the official PyTorch forward pass is in test_ast_parity.py (needs the converter).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jit_forward import run

from audiorep.models.ast import PRESETS, ASTConfig, ASTEncoder, unfold_patches

CFG = ASTConfig(dim=16, depth=1, num_heads=2, patch=(8, 8), num_mel_bins=32, num_frames=48, pos_grid=(4, 6),
                pred_dim=64)


@pytest.fixture(scope="module")
def model() -> ASTEncoder:
    return ASTEncoder(CFG, rngs=nnx.Rngs(0))


def _fresh(cfg: ASTConfig = CFG) -> ASTEncoder:
    return ASTEncoder(cfg, rngs=nnx.Rngs(1))


def _zero_patch_embed(m: ASTEncoder) -> None:
    m.patch_embed.proj.kernel[...] = jnp.zeros_like(m.patch_embed.proj.kernel[...])
    m.patch_embed.proj.bias[...] = jnp.zeros_like(m.patch_embed.proj.bias[...])


def _grid_pos_embed(m: ASTEncoder, values: np.ndarray) -> None:
    """Set channel 0 of the patch positional embeddings to values[f, t], everything else 0."""
    pe = np.zeros(m.pos_embed[...].shape, np.float32)
    pe[0, CFG.num_special:, 0] = values.reshape(-1)
    m.pos_embed[...] = jnp.asarray(pe)


def test_tokens_are_frequency_major():
    m = _fresh()
    m.pos_embed[...] = jnp.zeros_like(m.pos_embed[...])
    m.patch_embed.proj.bias[...] = jnp.zeros_like(m.patch_embed.proj.bias[...])
    feats = np.zeros((1, 48, 32), np.float32)
    feats[0, 3 * 8 + 1, 2 * 8 + 5] = 1.0  # frame in time patch 3, mel in frequency patch 2
    out = run(m, jnp.asarray(feats), return_hidden=True)
    assert out.grid == (4, 6) and out.time_major is False
    energy = np.abs(np.asarray(out.hidden[0][0])).sum(-1)
    assert np.flatnonzero(energy).tolist() == [2 * 6 + 3]


@pytest.mark.parametrize(("frames", "stride", "grid"), [(50, None, (4, 6)), (26, None, (4, 3)),
                                                        (48, (8, 4), (4, 11))])
def test_grid_matches_conv_arithmetic(frames, stride, grid):
    cfg = CFG.replace(stride=stride)
    assert cfg.grid_for(frames) == grid
    out = run(ASTEncoder(cfg, rngs=nnx.Rngs(0)), jnp.zeros((1, frames, 32)))
    assert out.grid == grid and out.tokens.shape == (1, grid[0] * grid[1], 16)


def test_shorter_input_takes_the_centre_of_the_time_embeddings():
    m = _fresh()
    _zero_patch_embed(m)
    values = np.arange(24, dtype=np.float32).reshape(4, 6) * 10.0
    _grid_pos_embed(m, values)
    out = run(m, jnp.zeros((1, 26, 32)), return_hidden=True)  # 3 time patches of 6: centre = columns 2..4
    got = np.asarray(out.hidden[0][0, :, 0]).reshape(4, 3)
    np.testing.assert_array_equal(got, values[:, 2:5])


def test_longer_input_interpolates_time_embeddings_like_torch_bilinear():
    m = _fresh()
    _zero_patch_embed(m)
    values = np.tile(np.arange(6, dtype=np.float32), (4, 1))  # linear in t: value = t
    _grid_pos_embed(m, values)
    out = run(m, jnp.zeros((1, 80, 32)), return_hidden=True)  # 10 time patches
    got = np.asarray(out.hidden[0][0, :, 0]).reshape(4, 10)
    src = np.clip((np.arange(10) + 0.5) * 6 / 10 - 0.5, 0, 5)  # align_corners=False source positions
    np.testing.assert_allclose(got, np.tile(src, (4, 1)), atol=1e-6)


def test_overlapping_stride_interpolates_both_axes():
    m = ASTEncoder(CFG.replace(stride=(4, 4)), rngs=nnx.Rngs(0))
    _zero_patch_embed(m)
    f, t = np.meshgrid(np.arange(4.0), np.arange(6.0), indexing="ij")
    _grid_pos_embed(m, (f * 100 + t).astype(np.float32))
    out = run(m, jnp.zeros((1, 48, 32)), return_hidden=True)  # 7 x 11 grid
    got = np.asarray(out.hidden[0][0, :, 0]).reshape(7, 11)
    sf = np.clip((np.arange(7) + 0.5) * 4 / 7 - 0.5, 0, 3)
    st = np.clip((np.arange(11) + 0.5) * 6 / 11 - 0.5, 0, 5)
    np.testing.assert_allclose(got, sf[:, None] * 100 + st[None, :], atol=1e-4)


def test_same_grid_uses_the_stored_embeddings_unchanged(model):
    pe = model.patch_pos_embed((4, 6))
    np.testing.assert_array_equal(np.asarray(pe), np.asarray(model.pos_embed[...][0, 2:]))


def test_mask_swaps_patch_embeddings_for_mask_embed(model):
    feats = jax.random.normal(jax.random.key(0), (2, 48, 32))
    mask = np.zeros((2, 24), bool)
    mask[0, [1, 5]] = True
    mask[1, [0, 23]] = True
    plain = run(model, feats, return_hidden=True).hidden[0]
    masked = run(model, feats, mask=jnp.asarray(mask), return_hidden=True).hidden[0]
    pos = np.asarray(model.pos_embed[...][0, 2:])
    expect = np.where(mask[..., None], np.asarray(model.mask_embed[...])[0] + pos, np.asarray(plain))
    np.testing.assert_allclose(np.asarray(masked), expect, atol=1e-6)


def test_mask_changes_only_through_masked_patches(model):
    feats = jax.random.normal(jax.random.key(1), (1, 48, 32))
    mask = jnp.zeros((1, 24), bool).at[0, 7].set(True)  # patch f=1, t=1 -> mels 8..15, frames 8..15
    other = feats.at[0, 8:16, 8:16].add(5.0)
    a, b = run(model, feats, mask=mask), run(model, other, mask=mask)
    np.testing.assert_allclose(np.asarray(a.tokens), np.asarray(b.tokens), atol=1e-6)


def test_mask_without_mask_embedding_is_a_clear_error():
    m = ASTEncoder(CFG.replace(mask_embed=False, pretrain_heads=False), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="mask embedding"):
        run(m, jnp.zeros((1, 48, 32)), mask=jnp.zeros((1, 24), bool))


def test_mask_of_the_wrong_shape_names_the_grid(model):
    with pytest.raises(ValueError, match=r"bool\[1, 24\].*4x6"):
        run(model, jnp.zeros((1, 48, 32)), mask=jnp.zeros((1, 20), bool))


def test_keep_gathers_kept_patches_after_positional_embedding(model):
    feats = jax.random.normal(jax.random.key(2), (2, 48, 32))
    keep = jnp.asarray([[0, 3, 9, 17], [2, 4, 6, 23]], jnp.int32)
    out = run(model, feats, keep=keep, return_hidden=True)
    full = run(model, feats, return_hidden=True)
    assert out.tokens.shape == (2, 4, 16)
    np.testing.assert_array_equal(np.asarray(out.keep), np.asarray(keep))
    expect = np.take_along_axis(np.asarray(full.hidden[0]), np.asarray(keep)[..., None], axis=1)
    np.testing.assert_allclose(np.asarray(out.hidden[0]), expect, atol=1e-6)


def test_dropped_patches_do_not_influence_kept_tokens(model):
    feats = jax.random.normal(jax.random.key(3), (1, 48, 32))
    keep = jnp.asarray([[0, 1, 2, 3, 4, 5]], jnp.int32)  # the first frequency row only
    other = feats.at[0, :, 8:].add(3.0)  # changes every other frequency row
    np.testing.assert_allclose(np.asarray(run(model, feats, keep=keep).tokens),
                               np.asarray(run(model, other, keep=keep).tokens), atol=1e-6)


def test_hidden_states_are_block_inputs_and_outputs_before_the_final_norm(model):
    out = run(model, jax.random.normal(jax.random.key(4), (1, 48, 32)), return_hidden=True)
    assert len(out.hidden) == CFG.depth + 1
    assert run(model, jnp.zeros((1, 48, 32))).hidden is None
    last = out.hidden[-1]
    normed = (last - last.mean(-1, keepdims=True)) / jnp.sqrt(last.var(-1, keepdims=True) + CFG.eps)
    normed = normed * model.norm.scale[...] + model.norm.bias[...]
    np.testing.assert_allclose(np.asarray(out.tokens), np.asarray(normed), atol=1e-5)


def test_unfold_patches_follow_torch_unfold_order():
    feats = np.random.default_rng(0).normal(size=(2, 20, 12)).astype(np.float32)
    got = np.asarray(unfold_patches(jnp.asarray(feats), (4, 3), (4, 2)))
    img = feats.transpose(0, 2, 1)  # (B, mels, frames)
    nf, nt = (12 - 4) // 4 + 1, (20 - 3) // 2 + 1
    expect = np.stack([img[:, f * 4: f * 4 + 4, t * 2: t * 2 + 3].reshape(2, -1)
                       for f in range(nf) for t in range(nt)], axis=1)
    np.testing.assert_array_equal(got, expect)


def test_pretext_heads_are_linear_relu_linear_to_the_raw_patch_size(model):
    tokens = np.asarray(run(model, jax.random.normal(jax.random.key(8), (1, 48, 32))).tokens, np.float64)
    for head in (model.cpredlayer, model.gpredlayer):
        w1, b1 = np.asarray(head.fc1.kernel[...], np.float64), np.asarray(head.fc1.bias[...], np.float64)
        w2, b2 = np.asarray(head.fc2.kernel[...], np.float64), np.asarray(head.fc2.bias[...], np.float64)
        expect = np.maximum(tokens @ w1 + b1, 0.0) @ w2 + b2
        assert expect.shape == (1, 24, 64)  # 4 x 6 patches of 8 x 8 values
        np.testing.assert_allclose(np.asarray(head(jnp.asarray(tokens, jnp.float32))), expect, rtol=1e-4, atol=1e-5)


def test_raw_patches_are_the_frequency_major_8x8_blocks_of_the_features(model):
    feats = np.random.default_rng(3).normal(size=(1, 48, 32)).astype(np.float32)  # frames x mels
    got = np.asarray(model.patches(jnp.asarray(feats)))
    assert got.shape == (1, 24, 64)
    for f in range(4):
        for t in range(6):  # each patch: its mels x frames block, mel-major as torch's nn.Unfold of (mels, frames)
            block = feats[0, t * 8: t * 8 + 8, f * 8: f * 8 + 8].T
            np.testing.assert_array_equal(got[0, f * 6 + t], block.reshape(-1))


def test_logits_pool_tokens_or_special_tokens():
    m = ASTEncoder(CFG.replace(num_classes=5), rngs=nnx.Rngs(0))
    m.mlp_head.linear.kernel[...] = jax.random.normal(jax.random.key(0), (16, 5))
    out = run(m, jax.random.normal(jax.random.key(5), (2, 48, 32)))
    mean, cls = m.logits(out, "mean"), m.logits(out, "cls")
    assert mean.shape == cls.shape == (2, 5)
    np.testing.assert_allclose(np.asarray(mean), np.asarray(m.mlp_head(out.tokens.mean(1))), atol=1e-6)
    assert not np.allclose(np.asarray(mean), np.asarray(cls))


def test_logits_without_head_is_a_clear_error(model):
    with pytest.raises(ValueError, match="num_classes"):
        model.logits(run(model, jnp.zeros((1, 48, 32))))


def test_wrong_number_of_mel_bins_is_a_clear_error(model):
    with pytest.raises(ValueError, match="expects 32 mel bins"):
        run(model, jnp.zeros((1, 48, 40)))


def test_input_shorter_than_one_patch_is_a_clear_error(model):
    with pytest.raises(ValueError, match="shorter than one patch"):
        run(model, jnp.zeros((1, 5, 32)))


def test_config_round_trips_through_json():
    cfg = CFG.replace(stride=(4, 6), num_classes=3)
    again = ASTConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


def test_unknown_config_field_is_named():
    with pytest.raises(ValueError, match="unknown ASTConfig fields.*'heads'"):
        ASTConfig.from_dict({**CFG.to_dict(), "heads": 3})


def test_prediction_heads_must_match_the_patch_size():
    with pytest.raises(ValueError, match="Set pred_dim=64"):
        ASTConfig(dim=32, depth=1, num_heads=4, patch=(16, 4), pretrain_heads=True)
    assert ASTConfig(dim=32, depth=1, num_heads=4, patch=(16, 4), pretrain_heads=True, pred_dim=64).pred_dim == 64


def test_official_presets_have_the_papers_patch_grids():
    patch, frame = PRESETS["ssast-patch"], PRESETS["ssast-frame"]
    assert patch.grid_for(1024) == (8, 64) and patch.num_patches == 512
    assert frame.grid_for(1024) == (1, 512) and frame.num_patches == 512
    assert (patch.dim, patch.depth, patch.num_heads, patch.num_special) == (768, 12, 12, 2)


def test_preset_by_name_and_an_unknown_name_lists_the_presets():
    assert ASTConfig.preset("ssast-frame") is PRESETS["ssast-frame"]
    with pytest.raises(ValueError, match=r"unknown SSAST preset 'ssast-huge'; choose one of \['ssast-frame'"):
        ASTConfig.preset("ssast-huge")


@pytest.mark.parametrize("name", ["ssast-patch-tiny", "ssast-frame-tiny"])
def test_tiny_presets_encode_128_bin_features(name):
    cfg = PRESETS[name]
    model = nnx.eval_shape(lambda: ASTEncoder(cfg, rngs=nnx.Rngs(0)))  # shapes only: no init, no compile
    graph, state = nnx.split(model)
    out = jax.eval_shape(lambda s, x: nnx.merge(graph, s)(x), state, jax.ShapeDtypeStruct((1, 64, 128), jnp.float32))
    f, t = cfg.grid_for(64)
    assert out.grid == (f, t) and out.tokens.shape == (1, f * t, cfg.dim) and out.cls.shape == (1, 2, cfg.dim)


def test_training_mode_applies_dropout_only_when_configured():
    m = ASTEncoder(CFG.replace(drop=0.5, depth=0), rngs=nnx.Rngs(0))  # no blocks: only the embedding dropout
    x = jax.random.normal(jax.random.key(6), (1, 48, 32))
    a, b = m(x, deterministic=False).tokens, m(x, deterministic=False).tokens
    assert not np.allclose(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(run(m, x).tokens), np.asarray(run(m, x).tokens))


def test_window_frames_gives_an_input_the_first_time_columns_of_the_window():
    m = _fresh()
    stored = np.asarray(m.pos_embed[...][0, CFG.num_special:]).reshape(4, 6, CFG.dim)
    pe = np.asarray(m.patch_pos_embed((4, 3), window=(4, 6))).reshape(4, 3, CFG.dim)
    np.testing.assert_array_equal(pe, stored[:, :3])
    centre = np.asarray(m.patch_pos_embed((4, 3))).reshape(4, 3, CFG.dim)
    np.testing.assert_array_equal(centre, stored[:, 2:5])  # SSAST's own rule for a lone short input


def test_padded_batch_gives_each_clip_its_own_tokens_and_cls(model):
    """A 3-patch clip padded (with other values) to the 6-patch window and masked, beside a full-window clip:
    its real tokens and its cls/dist tokens are those it has alone, since padded patches are never attended to
    and positions are the window start's either way."""
    rng = np.random.default_rng(0)
    short = rng.standard_normal((1, 29, 32)).astype(np.float32)  # 3 time patches (5 trailing frames dropped)
    long = rng.standard_normal((1, 48, 32)).astype(np.float32)
    batch = np.concatenate([np.pad(short, ((0, 0), (0, 19), (0, 0)), constant_values=5.0), long])
    pad = np.zeros((2, 48), bool)
    pad[0, 29:] = True
    out = model(jnp.asarray(batch), padding_mask=jnp.asarray(pad), window_frames=48)
    alone = model(jnp.asarray(short), window_frames=48)
    valid = np.asarray(out.valid)
    assert valid[0].sum() == 4 * 3 and valid[1].all()
    np.testing.assert_allclose(np.asarray(out.tokens[0])[valid[0]], alone.tokens[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.cls[0], alone.cls[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.tokens[1], model(jnp.asarray(long)).tokens[0], rtol=1e-5, atol=1e-5)
    unmasked = model(jnp.asarray(batch), window_frames=48)
    assert not np.allclose(unmasked.cls[0], alone.cls[0], atol=1e-3)  # without the mask the padding leaks in
