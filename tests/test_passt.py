"""PaSST encoder: token order, separable positional embeddings, time-embedding crop, patchout, head.

Parity with the official PyTorch forward pass is in test_passt_parity.py (needs the converter).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jit_forward import run

from audiorep.models.passt import PRESETS, PaSSTConfig, PaSSTEncoder, patchout_keep

# 32 mel bins, patch 8, stride 6 -> 5 frequency rows; 62 frames -> 10 time columns.
CFG = PaSSTConfig(dim=16, depth=1, num_heads=2, patch=(8, 8), stride=(6, 6), num_mel_bins=32, num_frames=62,
                  pos_grid=(5, 10), num_classes=3)


@pytest.fixture(scope="module")
def model() -> PaSSTEncoder:
    return PaSSTEncoder(CFG, rngs=nnx.Rngs(0))


def _marked_pos(m: PaSSTEncoder) -> tuple[np.ndarray, np.ndarray]:
    """Zero the patch conv; channel 0 of the freq / time embeddings = 100 f / t. Returns (freq, time) values."""
    m.patch_embed.proj.kernel[...] = jnp.zeros_like(m.patch_embed.proj.kernel[...])
    m.patch_embed.proj.bias[...] = jnp.zeros_like(m.patch_embed.proj.bias[...])
    fv, tv = np.arange(5, dtype=np.float32) * 100, np.arange(10, dtype=np.float32)
    fpe = np.zeros((1, 16, 5, 1), np.float32)
    fpe[0, 0, :, 0] = fv
    tpe = np.zeros((1, 16, 1, 10), np.float32)
    tpe[0, 0, 0, :] = tv
    m.freq_new_pos_embed[...] = jnp.asarray(fpe)
    m.time_new_pos_embed[...] = jnp.asarray(tpe)
    return fv, tv


def test_tokens_are_frequency_major():
    m = PaSSTEncoder(CFG, rngs=nnx.Rngs(1))
    m.patch_embed.proj.bias[...] = jnp.zeros_like(m.patch_embed.proj.bias[...])
    for name in ("freq_new_pos_embed", "time_new_pos_embed"):
        getattr(m, name)[...] = jnp.zeros_like(getattr(m, name)[...])
    feats = np.zeros((1, 62, 32), np.float32)
    feats[0, 7 * 6 + 2, 3 * 6 + 2] = 1.0  # inside time column 7 only (overlaps: 42..49 vs 36..43, 48..55)
    out = run(m, feats, return_hidden=True)
    assert out.grid == (5, 10) and out.time_major is False
    energy = np.abs(np.asarray(out.hidden[0][0])).sum(-1)
    assert np.flatnonzero(energy).tolist() == [3 * 10 + 7]


def test_frequency_and_time_embeddings_add_per_axis():
    m = PaSSTEncoder(CFG, rngs=nnx.Rngs(1))
    fv, tv = _marked_pos(m)
    out = run(m, np.zeros((1, 62, 32), np.float32), return_hidden=True)
    got = np.asarray(out.hidden[0][0, :, 0]).reshape(5, 10)
    np.testing.assert_array_equal(got, fv[:, None] + tv[None, :])


def test_shorter_input_takes_the_first_time_embeddings_in_eval():
    m = PaSSTEncoder(CFG, rngs=nnx.Rngs(1))
    fv, tv = _marked_pos(m)
    out = run(m, np.zeros((1, 38, 32), np.float32), return_hidden=True)  # 6 columns
    assert out.grid == (5, 6)
    np.testing.assert_array_equal(np.asarray(out.hidden[0][0, :, 0]).reshape(5, 6), fv[:, None] + tv[None, :6])


def test_time_offset_selects_a_window_of_time_embeddings():
    m = PaSSTEncoder(CFG, rngs=nnx.Rngs(1))
    fv, tv = _marked_pos(m)
    out = run(m, np.zeros((1, 38, 32), np.float32), time_offset=3, return_hidden=True)
    np.testing.assert_array_equal(np.asarray(out.hidden[0][0, :, 0]).reshape(5, 6), fv[:, None] + tv[None, 3:9])


def test_training_draws_random_time_offsets_within_the_grid():
    m = PaSSTEncoder(CFG, rngs=nnx.Rngs(2))
    _marked_pos(m)
    train = nnx.jit(lambda m, x: m(x, deterministic=False, return_hidden=True).hidden[0][0, 0, 0])
    offsets = {int(round(float(train(m, jnp.zeros((1, 38, 32)))))) for _ in range(12)}
    assert offsets <= set(range(0, 5)) and len(offsets) > 1


def test_longer_input_is_cut_to_the_time_embeddings(model):
    feats = jax.random.normal(jax.random.key(0), (1, 80, 32))  # 13 columns -> cut to 10
    long, cut = run(model, feats), run(model, feats[:, :62])
    assert long.grid == (5, 10) and model.grid_for(80) == (5, 10)
    np.testing.assert_allclose(np.asarray(long.tokens), np.asarray(cut.tokens), atol=1e-6)


def test_keep_gathers_after_positional_embedding(model):
    feats = jax.random.normal(jax.random.key(1), (2, 62, 32))
    keep = jnp.asarray([[0, 11, 12, 49], [5, 6, 7, 8]], jnp.int32)
    out, full = run(model, feats, keep=keep, return_hidden=True), run(model, feats, return_hidden=True)
    assert out.tokens.shape == (2, 4, 16)
    np.testing.assert_array_equal(np.asarray(out.keep), np.asarray(keep))
    expect = np.take_along_axis(np.asarray(full.hidden[0]), np.asarray(keep)[..., None], axis=1)
    np.testing.assert_allclose(np.asarray(out.hidden[0]), expect, atol=1e-6)


def test_structured_patchout_keeps_whole_rows_and_columns():
    keep = np.asarray(patchout_keep(jax.random.key(3), (5, 10), 3, drop_t=4, drop_f=2))
    assert keep.shape == (3, (5 - 2) * (10 - 4))
    assert (keep == keep[0]).all()  # one draw per batch, as the official model
    rows, cols = np.unique(keep[0] // 10), np.unique(keep[0] % 10)
    assert len(rows) == 3 and len(cols) == 6
    np.testing.assert_array_equal(keep[0], (rows[:, None] * 10 + cols[None, :]).reshape(-1))


def test_unstructured_patchout_drops_exactly_u_tokens():
    keep = np.asarray(patchout_keep(jax.random.key(4), (5, 10), 2, drop_u=13))
    assert keep.shape == (2, 37)
    assert (keep == keep[0]).all()  # one draw per batch, as the official model
    assert (np.diff(keep[0]) > 0).all() and keep.min() >= 0 and keep.max() < 50


def _drop_rates(keeps: np.ndarray, n: int) -> np.ndarray:
    """Fraction of the draws (i32[draws, K] kept indices) that drop each of the n grid tokens."""
    kept = np.zeros((len(keeps), n), bool)
    kept[np.arange(len(keeps))[:, None], keeps] = True
    return 1 - kept.mean(0)


def test_patchout_drops_every_time_column_frequency_row_and_token_equally_often():
    keys = jax.random.split(jax.random.key(7), 2000)

    def draws(grid, **drops):
        return np.asarray(jax.vmap(lambda k: patchout_keep(k, grid, 1, **drops)[0])(keys))

    # a cell survives when its row (3 of 5 kept) and its column (6 of 10 kept) do
    cells = _drop_rates(draws((5, 10), drop_t=4, drop_f=2), 50)
    np.testing.assert_allclose(cells, 1 - 0.6 * 0.6, atol=0.05)
    np.testing.assert_allclose(_drop_rates(draws((1, 10), drop_t=4), 10), 0.4, atol=0.05)  # each column
    np.testing.assert_allclose(_drop_rates(draws((5, 1), drop_f=2), 5), 0.4, atol=0.05)  # each row
    np.testing.assert_allclose(_drop_rates(draws((5, 10), drop_u=13), 50), 13 / 50, atol=0.05)  # each token


def test_model_patchout_uses_its_recipe():
    m = PaSSTEncoder(CFG.replace(s_patchout_t=3, s_patchout_f=1, u_patchout=2), rngs=nnx.Rngs(0))
    keep = np.asarray(m.patchout_keep(jax.random.key(5), (5, 10), 2))
    assert keep.shape == (2, 4 * 7 - 2) and (keep == keep[0]).all() and (np.diff(keep[0]) > 0).all()
    # 2 single tokens dropped from a 4 x 7 subgrid cannot empty a row or a column: all 4 rows, 7 columns remain
    rows, cols = np.unique(keep[0] // 10), np.unique(keep[0] % 10)
    assert len(rows) == 4 and len(cols) == 7
    assert set(keep[0].tolist()) < set((rows[:, None] * 10 + cols[None, :]).ravel().tolist())


def test_patchout_that_drops_everything_is_refused():
    with pytest.raises(ValueError, match="cannot drop 10 of 10 time columns"):
        patchout_keep(jax.random.key(0), (5, 10), 1, drop_t=10)


def test_dropped_patches_do_not_influence_kept_tokens(model):
    feats = jax.random.normal(jax.random.key(6), (1, 62, 32))
    keep = jnp.arange(10, dtype=jnp.int32)[None]  # frequency row 0 = mels 0..7
    other = feats.at[0, :, 8:].add(2.0)
    np.testing.assert_allclose(np.asarray(run(model, feats, keep=keep).tokens),
                               np.asarray(run(model, other, keep=keep).tokens), atol=1e-6)


def test_mask_is_refused_with_a_pointer_to_keep(model):
    with pytest.raises(ValueError, match="no mask embedding.*keep"):
        model(jnp.zeros((1, 62, 32)), mask=jnp.zeros((1, 50), bool))


def test_logits_use_the_mean_of_cls_and_dist(model):
    model.head.linear.kernel[...] = jax.random.normal(jax.random.key(7), (16, 3))
    out = run(model, jax.random.normal(jax.random.key(8), (1, 62, 32)))
    assert out.cls.shape == (1, 2, 16)
    expect = model.head((out.cls[:, 0] + out.cls[:, 1]) / 2)
    np.testing.assert_allclose(np.asarray(model.logits(out)), np.asarray(expect), atol=1e-6)


def test_wrong_number_of_mel_bins_is_a_clear_error(model):
    with pytest.raises(ValueError, match="expects 32 mel bins"):
        model(jnp.zeros((1, 62, 128)))


def test_frequency_grid_must_match_the_frequency_embeddings():
    with pytest.raises(ValueError, match="give 5 frequency patches, but pos_grid has 6"):
        PaSSTConfig(patch=(8, 8), stride=(6, 6), num_mel_bins=32, pos_grid=(6, 10))


def test_config_round_trips_through_json():
    again = PaSSTConfig.from_dict(json.loads(json.dumps(CFG.to_dict())))
    assert again == CFG


def test_preset_by_name_and_an_unknown_name_lists_the_presets():
    assert PaSSTConfig.preset("passt-s") is PRESETS["passt-s"]
    with pytest.raises(ValueError, match=r"unknown PaSST preset 'passt-l'; choose one of \['passt-s', 'passt-s-tiny"):
        PaSSTConfig.preset("passt-l")


def test_passt_s_preset_has_the_official_grid():
    cfg = PRESETS["passt-s"]
    assert cfg.grid_for(998) == (12, 99) and cfg.grid_for(1000) == (12, 99)
    assert (cfg.dim, cfg.depth, cfg.num_heads, cfg.num_classes) == (768, 12, 12, 527)
    assert (cfg.s_patchout_t, cfg.s_patchout_f) == (40, 4)


def test_tiny_preset_encodes_128_bin_features():
    cfg = PRESETS["passt-s-tiny"]
    model = nnx.eval_shape(lambda: PaSSTEncoder(cfg, rngs=nnx.Rngs(0)))  # shapes only: no init, no compile
    graph, state = nnx.split(model)
    out = jax.eval_shape(lambda s, x: nnx.merge(graph, s)(x), state, jax.ShapeDtypeStruct((1, 100, 128), jnp.float32))
    assert cfg.grid_for(cfg.num_frames) == (12, 29)
    assert out.grid == (12, 9) and out.tokens.shape == (1, 12 * 9, cfg.dim)


def test_padded_batch_gives_each_clip_its_own_tokens_and_cls(model):
    """A 4-patch clip padded (with other values) to the 10-patch window and masked, beside a full-window clip:
    its real tokens and cls/dist tokens are those it has alone (eval positions: the first time embeddings)."""
    rng = np.random.default_rng(0)
    short = rng.standard_normal((1, 30, 32)).astype(np.float32)  # overlapping patches at 0, 6, 12, 18 (of 8)
    long = rng.standard_normal((1, 62, 32)).astype(np.float32)
    batch = np.concatenate([np.pad(short, ((0, 0), (0, 32), (0, 0)), constant_values=5.0), long])
    pad = np.zeros((2, 62), bool)
    pad[0, 30:] = True
    out = model(jnp.asarray(batch), padding_mask=jnp.asarray(pad))
    alone = model(jnp.asarray(short))
    valid = np.asarray(out.valid)
    assert valid[0].sum() == 5 * 4 and valid[1].all()
    np.testing.assert_allclose(np.asarray(out.tokens[0])[valid[0]], alone.tokens[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.cls[0], alone.cls[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.tokens[1], model(jnp.asarray(long)).tokens[0], rtol=1e-5, atol=1e-5)
    assert not np.allclose(model(jnp.asarray(batch)).cls[0], alone.cls[0], atol=1e-3)  # unmasked, it leaks
