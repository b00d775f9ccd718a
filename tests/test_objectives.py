"""Objectives: SSAST MSPM (InfoNCE + MSE), supervised with patchout, and training them end to end."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from audiorep.audio.frontends import get_frontend
from audiorep.models.ast import ASTConfig, ASTEncoder
from audiorep.models.passt import PaSSTConfig, PaSSTEncoder
from audiorep.pretrain import config as config_lib
from audiorep.pretrain import experiment, objectives, trainer

ROOT = Path(__file__).resolve().parents[1]


def _reference_nce(targets: np.ndarray, preds: np.ndarray) -> tuple[float, float]:
    """The official per-clip loop (ssast mpc), in float64 numpy."""
    b, m, _ = targets.shape
    nce, correct = 0.0, 0
    for i in range(b):
        total = targets[i].astype(np.float64) @ preds[i].astype(np.float64).T
        logp = total - total.max(axis=1, keepdims=True)
        logp = logp - np.log(np.exp(logp).sum(axis=1, keepdims=True))
        nce += np.trace(logp)
        correct += int(np.sum(np.argmax(total, axis=0) == np.arange(m)))
    return -nce / (b * m), correct / (b * m)


def test_info_nce_matches_the_official_per_clip_loop(rng):
    t = rng.normal(size=(3, 7, 5)).astype(np.float32)
    p = (t + rng.normal(size=t.shape)).astype(np.float32)
    nce, acc = objectives.info_nce(jnp.asarray(t), jnp.asarray(p))
    ref_nce, ref_acc = _reference_nce(t, p)
    assert float(nce) == pytest.approx(ref_nce, rel=1e-5)
    assert float(acc) == pytest.approx(ref_acc)


def test_keep_with_masked_puts_every_masked_patch_first_and_keeps_the_promised_count():
    idx = jnp.asarray([[5, 1, 9], [0, 2, 3]], jnp.int32)
    keep = objectives.keep_with_masked(jax.random.key(0), idx, 12, 4)
    assert keep.shape == (2, 7)
    np.testing.assert_array_equal(keep[:, :3], idx)
    for row, masked in zip(np.asarray(keep), np.asarray(idx)):
        assert len(set(row.tolist())) == 7 and not set(row[3:].tolist()) & set(masked.tolist())


def test_cluster_masking_inside_mspm_masks_exactly_the_requested_count():
    seen = {}

    def spy(key, grid, batch, count):
        from audiorep.pretrain import masking

        idx = masking.cluster_mask_indices(key, grid, batch, count)
        seen["idx"] = idx
        return idx

    obj = objectives.MSPM(get_frontend("ssast"), masked=50, mask_fn=spy, passes=1, frames=256)
    obj(_tiny_ast(), {"audio": _waves()}, jax.random.key(3))
    idx = np.asarray(seen["idx"])
    assert idx.shape == (2, 50) and all(len(set(r.tolist())) == 50 for r in idx)


def test_frame_masking_needs_whole_time_columns():
    fn = objectives.mask_function("frame")
    with pytest.raises(ValueError, match="multiple of 8"):
        fn(jax.random.key(0), (8, 16), 2, 50)


def _tiny_ast(**kw) -> ASTEncoder:
    return ASTEncoder(ASTConfig.preset("ssast-patch-tiny").replace(**kw), rngs=nnx.Rngs(0))


def _waves(b: int = 2, seconds: float = 2.6) -> jnp.ndarray:
    return jnp.asarray(np.random.default_rng(0).normal(size=(b, int(16000 * seconds))).astype(np.float32) * 0.1)


@pytest.mark.parametrize("passes,keep", [(2, 1.0), (1, 0.5)])
def test_mspm_loss_is_nce_plus_ten_mse(passes, keep):
    obj = objectives.MSPM(get_frontend("ssast"), masked=40, mask="random", passes=passes, frames=256,
                          patchout_keep=keep)
    loss, m = obj(_tiny_ast(), {"audio": _waves()}, jax.random.key(0))
    assert np.isfinite(float(loss))
    assert float(loss) == pytest.approx(float(m["nce"]) + 10 * float(m["mse"]), rel=1e-5)
    assert float(m["nce"]) == pytest.approx(np.log(40), rel=0.2)  # untrained: near chance


def test_mspm_target_norm_standardises_each_target_patch():
    model, feats = _tiny_ast(), jax.random.normal(jax.random.key(3), (2, 256, 128)) * 3.0 + 1.0
    raw = objectives.MSPM(get_frontend("ssast"), masked=40, frames=256).targets(model, feats)
    np.testing.assert_array_equal(raw, model.patches(feats))
    normed = objectives.MSPM(get_frontend("ssast"), masked=40, frames=256, target_norm="patch").targets(model, feats)
    np.testing.assert_allclose(normed.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(normed.std(-1), 1.0, atol=1e-4)
    with pytest.raises(ValueError, match="target_norm='pixel'"):
        objectives.MSPM(get_frontend("ssast"), target_norm="pixel")


def test_mspm_terms_score_the_masked_patches_predictions_against_their_raw_patches():
    from audiorep.pretrain.masking import indices_to_mask

    model, audio, key = _tiny_ast(), _waves(), jax.random.key(1)
    idx = jnp.stack([jnp.arange(0, 80, 2), jnp.arange(88, 128)])  # 40 masked patches, other ones per clip
    obj = objectives.MSPM(get_frontend("ssast"), masked=40, passes=1, frames=256,
                          mask_fn=lambda k, grid, b, count: idx)
    loss, m = obj(model, {"audio": audio}, key)
    feats = obj.features(audio, jax.random.split(key, 3)[0])
    tokens = model(feats, mask=indices_to_mask(idx, 128), deterministic=False).tokens
    rows, at = np.arange(2)[:, None], np.asarray(idx)
    raw = np.asarray(model.patches(feats))[rows, at]  # f32[2, 40, 256]: the masked patches' raw values
    c = np.asarray(model.cpredlayer(tokens))[rows, at]
    g = np.asarray(model.gpredlayer(tokens))[rows, at]
    ref_nce, ref_acc = _reference_nce(raw, c)
    assert float(m["nce"]) == pytest.approx(ref_nce, rel=1e-4)
    assert float(m["acc"]) == pytest.approx(ref_acc)
    assert float(m["mse"]) == pytest.approx(np.mean((g.astype(np.float64) - raw) ** 2), rel=1e-4)
    assert float(loss) == pytest.approx(ref_nce + 10 * np.mean((g.astype(np.float64) - raw) ** 2), rel=1e-4)


def test_mspm_visible_term_reconstructs_the_unmasked_patches():
    from audiorep.pretrain.masking import indices_to_mask

    model, audio, key = _tiny_ast(), _waves(), jax.random.key(0)
    idx = jnp.tile(jnp.arange(40)[None], (2, 1))  # the first 40 patches masked in both clips
    obj = objectives.MSPM(get_frontend("ssast"), masked=40, passes=1, frames=256, visible_weight=2.0,
                          mask_fn=lambda k, grid, b, count: idx)
    loss, m = obj(model, {"audio": audio}, key)
    assert float(loss) == pytest.approx(float(m["nce"]) + 10 * float(m["mse"]) + 2 * float(m["visible_mse"]), rel=1e-5)
    feats = obj.features(audio, jax.random.split(key, 3)[0])
    out = model(feats, mask=indices_to_mask(idx, 128), deterministic=False)
    err = np.mean((np.asarray(model.gpredlayer(out.tokens)) - np.asarray(obj.targets(model, feats))) ** 2, axis=-1)
    assert float(m["visible_mse"]) == pytest.approx(float(err[:, 40:].mean()), rel=1e-4)
    with pytest.raises(ValueError, match="patchout_keep=1"):
        objectives.MSPM(get_frontend("ssast"), masked=40, frames=256, visible_weight=1.0, patchout_keep=0.5)(
            model, {"audio": audio}, key)


def test_mspm_refuses_to_mask_more_patches_than_the_grid_has():
    obj = objectives.MSPM(get_frontend("ssast"), masked=200, mask="random", frames=256)
    with pytest.raises(ValueError, match="has only 128 patches"):
        obj(_tiny_ast(), {"audio": _waves()}, jax.random.key(0))


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64) - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_masked_tokens_loss_is_the_cross_entropy_of_the_masked_patches_codes():
    from audiorep.pretrain.masking import indices_to_mask
    from audiorep.tokenizers import RandomProjectionTokenizer

    enc = _tiny_ast(patch=(16, 4), stride=(16, 4), pretrain_heads=False)
    model = objectives.TokenPredictor(enc, 32, seed=0)
    tok = RandomProjectionTokenizer(in_dim=64, codebook_size=32, code_dim=8)
    idx = jnp.tile(jnp.arange(0, 64, 2)[None], (2, 1))  # every other patch of the first half, both clips
    obj = objectives.MaskedTokens(get_frontend("ssast"), tok, masked=32, frames=64, visible_weight=0.5,
                                  mask_fn=lambda k, grid, b, count: idx)
    audio, key = _waves(seconds=0.7), jax.random.key(0)
    loss, m = obj(model, {"audio": audio}, key)
    feats = obj.features(audio, jax.random.split(key, 3)[0])
    masked = np.asarray(indices_to_mask(idx, 128))
    codes = np.asarray(tok(enc.patches(feats)))
    logp = _log_softmax(np.asarray(model.head(enc(feats, mask=jnp.asarray(masked), deterministic=False).tokens)))
    ce = -np.take_along_axis(logp, codes[..., None], axis=-1)[..., 0]
    assert float(m["ce"]) == pytest.approx(ce[masked].mean(), rel=1e-4)
    assert float(m["visible_ce"]) == pytest.approx(ce[~masked].mean(), rel=1e-4)
    assert float(loss) == pytest.approx(ce[masked].mean() + 0.5 * ce[~masked].mean(), rel=1e-4)
    assert float(m["acc"]) == pytest.approx(np.mean(logp.argmax(-1)[masked] == codes[masked]))
    assert float(m["codes_used"]) == pytest.approx(len(np.unique(codes)) / 32)
    assert float(m["ce"]) == pytest.approx(np.log(32), rel=0.3)  # untrained: near chance
    # the loss trains the mask embedding the masked positions carry
    grads = nnx.grad(lambda mdl: obj(mdl, {"audio": audio}, key)[0])(model)
    assert float(jnp.abs(grads.encoder.mask_embed[...]).sum()) > 0


def test_masked_tokens_visible_mse_reconstructs_the_unmasked_patches_with_gpredlayer():
    from audiorep.pretrain.masking import indices_to_mask
    from audiorep.tokenizers import RandomProjectionTokenizer

    enc = _tiny_ast(patch=(16, 4), stride=(16, 4), pred_dim=64)
    model = objectives.TokenPredictor(enc, 32)
    idx = jnp.tile(jnp.arange(40)[None], (2, 1))
    obj = objectives.MaskedTokens(get_frontend("ssast"), RandomProjectionTokenizer(in_dim=64, codebook_size=32),
                                  masked=40, frames=64, visible_mse_weight=3.0, mask_fn=lambda k, grid, b, c: idx)
    audio, key = _waves(seconds=0.7), jax.random.key(2)
    loss, m = obj(model, {"audio": audio}, key)
    feats = obj.features(audio, jax.random.split(key, 3)[0])
    out = enc(feats, mask=indices_to_mask(idx, 128), deterministic=False)
    err = np.mean((np.asarray(enc.gpredlayer(out.tokens)) - np.asarray(enc.patches(feats))) ** 2, axis=-1)
    assert float(m["visible_mse"]) == pytest.approx(float(err[:, 40:].mean()), rel=1e-4)
    assert float(loss) == pytest.approx(float(m["ce"]) + 3.0 * float(m["visible_mse"]), rel=1e-5)
    headless = objectives.TokenPredictor(_tiny_ast(patch=(16, 4), stride=(16, 4), pretrain_heads=False), 32)
    with pytest.raises(ValueError, match="pretrain_heads=True"):
        obj(headless, {"audio": audio}, key)


def test_masked_tokens_target_norm_makes_the_codes_level_free():
    from audiorep.tokenizers import RandomProjectionTokenizer

    enc = _tiny_ast(patch=(16, 4), stride=(16, 4), pretrain_heads=False)
    tok = RandomProjectionTokenizer(in_dim=64, codebook_size=256)
    feats = jax.random.normal(jax.random.key(1), (2, 64, 128))
    louder = feats + 2.5  # a level change: the same offset in every log-mel bin
    raw = objectives.MaskedTokens(get_frontend("ssast"), tok, masked=40)
    normed = objectives.MaskedTokens(get_frontend("ssast"), tok, masked=40, target_norm="patch")
    np.testing.assert_array_equal(normed.codes(enc, louder), normed.codes(enc, feats))
    assert np.mean(np.asarray(raw.codes(enc, louder)) != np.asarray(raw.codes(enc, feats))) > 0.5
    with pytest.raises(ValueError, match="target_norm='pixel'"):
        objectives.MaskedTokens(get_frontend("ssast"), tok, masked=40, target_norm="pixel")


def test_masked_tokens_gain_scales_each_clip_within_the_promised_range():
    from audiorep.tokenizers import RandomProjectionTokenizer

    seen = []
    frontend = get_frontend("ssast")

    def spy(audio, **kw):
        seen.append(audio)
        return frontend(audio, **kw)

    model = objectives.TokenPredictor(_tiny_ast(patch=(16, 4), stride=(16, 4), pretrain_heads=False), 16)
    audio = _waves(b=4, seconds=0.7)
    obj = objectives.MaskedTokens(spy, RandomProjectionTokenizer(in_dim=64, codebook_size=16), masked=40,
                                  frames=64, gain_db=12.0)
    obj(model, {"audio": audio}, jax.random.key(5))
    db = 20 * np.log10(np.abs(np.asarray(seen[0])).max(1) / np.abs(np.asarray(audio)).max(1))
    assert np.all(np.abs(db) <= 12.0 + 1e-3) and np.ptp(db) > 1.0, db
    with pytest.raises(ValueError, match="gain_db=-1"):
        objectives.MaskedTokens(spy, obj.tokenizer, masked=40, gain_db=-1.0)


def test_masked_tokens_beats_form_encodes_only_the_visible_patches_and_predicts_the_masked_codes():
    from audiorep.pretrain.masking import unmasked_indices
    from audiorep.tokenizers import RandomProjectionTokenizer

    enc = _tiny_ast(patch=(16, 4), stride=(16, 4), pretrain_heads=False)
    model = objectives.TokenPredictor(enc, 32, seed=0, predictor_depth=1)
    tok = RandomProjectionTokenizer(in_dim=64, codebook_size=32, code_dim=8)
    idx = jnp.stack([jnp.arange(8, 104), jnp.arange(0, 96)])  # 96 of 128 masked, other positions per clip
    obj = objectives.MaskedTokens(get_frontend("ssast"), tok, masked=96, frames=64, mask_fn=lambda k, g, b, c: idx)
    audio, key = _waves(seconds=0.7), jax.random.key(3)
    loss, m = obj(model, {"audio": audio}, key)
    feats = obj.features(audio, jax.random.split(key, 3)[0])
    keep = unmasked_indices(idx, 128)
    assert keep.shape == (2, 32) and not set(np.asarray(keep[0]).tolist()) & set(np.asarray(idx[0]).tolist())
    filled = model.predictor(enc(feats, keep=keep, deterministic=False).tokens, keep, enc.patch_pos_embed((8, 16)))
    logp = _log_softmax(np.asarray(model.head(filled)))
    codes = np.asarray(tok(enc.patches(feats)))
    ce = -np.take_along_axis(logp, codes[..., None], axis=-1)[..., 0]
    rows = np.arange(2)[:, None]
    assert float(m["ce"]) == pytest.approx(ce[rows, np.asarray(idx)].mean(), rel=1e-4)
    assert float(loss) == pytest.approx(float(m["ce"]), rel=1e-6)
    assert float(m["acc"]) == pytest.approx(np.mean(logp.argmax(-1)[rows, np.asarray(idx)] ==
                                                    codes[rows, np.asarray(idx)]))
    # the encoder never sees a mask embedding; the label predictor's mask token carries the masked positions
    grads = nnx.grad(lambda mdl: obj(mdl, {"audio": audio}, key)[0])(model)
    assert float(jnp.abs(grads.encoder.mask_embed[...]).sum()) == 0.0
    assert float(jnp.abs(grads.predictor.mask_token[...]).sum()) > 0
    assert float(jnp.abs(grads.encoder.patch_embed.proj.kernel[...]).sum()) > 0
    with pytest.raises(ValueError, match="belongs to the BEST-RQ form"):
        objectives.MaskedTokens(get_frontend("ssast"), tok, masked=96, frames=64, visible_weight=1.0,
                                mask_fn=lambda k, g, b, c: idx)(model, {"audio": audio}, key)


def test_masked_tokens_beats_form_reconstructs_visible_patches_from_the_encoder_and_masked_ones_from_the_predictor():
    from audiorep.pretrain.masking import unmasked_indices
    from audiorep.tokenizers import RandomProjectionTokenizer

    enc = _tiny_ast(patch=(16, 4), stride=(16, 4), pred_dim=64)
    model = objectives.TokenPredictor(enc, 32, seed=0, predictor_depth=1, patch_head=True)
    tok = RandomProjectionTokenizer(in_dim=64, codebook_size=32, code_dim=8)
    idx = jnp.stack([jnp.arange(88, 128), jnp.arange(0, 80, 2)])  # 40 of 128 masked, other positions per clip
    obj = objectives.MaskedTokens(get_frontend("ssast"), tok, masked=40, frames=64, visible_mse_weight=2.0,
                                  masked_mse_weight=5.0, mask_fn=lambda k, g, b, c: idx)
    audio, key = _waves(seconds=0.7), jax.random.key(4)
    loss, m = obj(model, {"audio": audio}, key)
    feats = obj.features(audio, jax.random.split(key, 3)[0])
    patches = np.asarray(enc.patches(feats))
    keep = unmasked_indices(idx, 128)
    rows = np.arange(2)[:, None]
    visible_out = enc(feats, keep=keep, deterministic=False).tokens
    rec = np.asarray(enc.gpredlayer(visible_out))
    assert float(m["visible_mse"]) == pytest.approx(np.mean((rec - patches[rows, np.asarray(keep)]) ** 2), rel=1e-4)
    filled = model.predictor(visible_out, keep, enc.patch_pos_embed((8, 16)))
    guess = np.asarray(model.patch_head(filled))[rows, np.asarray(idx)]
    assert float(m["masked_mse"]) == pytest.approx(np.mean((guess - patches[rows, np.asarray(idx)]) ** 2), rel=1e-4)
    assert float(loss) == pytest.approx(float(m["ce"]) + 2.0 * float(m["visible_mse"]) + 5.0 * float(m["masked_mse"]),
                                        rel=1e-5)
    grads = nnx.grad(lambda mdl: obj(mdl, {"audio": audio}, key)[0])(model)
    assert float(jnp.abs(grads.patch_head.kernel[...]).sum()) > 0
    assert float(jnp.abs(grads.encoder.gpredlayer.fc2.kernel[...]).sum()) > 0
    # the patch head exists exactly when the objective uses it, and only beside a label predictor
    with pytest.raises(ValueError, match="masked_mse_weight=0.0 and the model's patch head go together"):
        objectives.MaskedTokens(get_frontend("ssast"), tok, masked=40, frames=64,
                                mask_fn=lambda k, g, b, c: idx)(model, {"audio": audio}, key)
    with pytest.raises(ValueError, match="set objective.predictor_depth >= 1"):
        objectives.TokenPredictor(enc, 32, predictor_depth=0, patch_head=True)


def test_label_predictor_puts_the_visible_outputs_at_their_grid_positions_and_the_mask_token_elsewhere():
    pred = objectives.LabelPredictor(8, 2, depth=0, rngs=nnx.Rngs(params=0, dropout=1))  # no blocks: norm only
    visible = jax.random.normal(jax.random.key(0), (2, 3, 8))
    keep = jnp.asarray([[0, 4, 5], [1, 2, 3]])
    pos = jax.random.normal(jax.random.key(1), (6, 8))
    out = np.asarray(pred(visible, keep, pos))

    def norm(x):
        x = np.asarray(x, np.float64)
        return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6)

    token = np.asarray(pred.mask_token[...])[0, 0]
    for b in range(2):
        for j, at in enumerate(np.asarray(keep[b])):
            np.testing.assert_allclose(out[b, at], norm(visible[b, j] + pos[at]), atol=1e-4)
        for at in sorted(set(range(6)) - set(np.asarray(keep[b]).tolist())):
            np.testing.assert_allclose(out[b, at], norm(token + pos[at]), atol=1e-4)


def test_masked_tokens_is_built_from_the_config_and_refuses_encoders_without_a_mask_embedding():
    import ml_collections

    c = ml_collections.ConfigDict(dict(
        objective=dict(name="masked_tokens", masked=40, mask="frame", codebook_size=256, code_dim=8, tokenizer_seed=2),
        data=dict(frames=64)))
    _, ast_cfg = experiment.encoder_config(dict(family="ast", preset="ssast-patch-tiny",
                                                overrides=dict(patch=(16, 4), stride=(16, 4), pretrain_heads=False)))
    obj = experiment.make_objective(c, get_frontend("ssast"), ast_cfg)
    assert isinstance(obj, objectives.MaskedTokens) and obj.frames == 64
    assert obj.tokenizer.to_dict() == dict(in_dim=64, codebook_size=256, code_dim=8, seed=2)
    _, beats_cfg = experiment.encoder_config(dict(family="beats", preset="beats-tiny"))
    with pytest.raises(ValueError, match="a BEATs encoder has none .* set objective.predictor_depth >= 1"):
        experiment.make_objective(c, get_frontend("beats"), beats_cfg)
    _, no_mask_cfg = experiment.encoder_config(dict(family="ast", preset="ssast-patch-tiny", overrides=dict(
        patch=(16, 4), stride=(16, 4), pretrain_heads=False, mask_embed=False)))
    with pytest.raises(ValueError, match="needs an encoder with a mask embedding"):
        experiment.make_objective(c, get_frontend("ssast"), no_mask_cfg)
    c.objective.predictor_depth = 1  # the BEATs form needs no mask embedding
    assert isinstance(experiment.make_objective(c, get_frontend("ssast"), no_mask_cfg), objectives.MaskedTokens)
    c.objective.predictor_depth = -1
    with pytest.raises(ValueError, match="predictor_depth=-1"):
        experiment.make_objective(c, get_frontend("ssast"), no_mask_cfg)
    c.objective.predictor_depth = 0
    c.objective.tokenizer = "vq"
    with pytest.raises(ValueError, match="objective.tokenizer='vq': 'random_projection' .*'teacher'"):
        experiment.make_objective(c, get_frontend("ssast"), ast_cfg)


def test_encoder_overrides_that_make_no_valid_encoder_name_the_override_and_the_fix():
    with pytest.raises(ValueError, match=r"config.model.overrides has unknown ast fields \['widht'\]"):
        experiment.encoder_config(dict(family="ast", preset="ssast-patch-tiny", overrides=dict(widht=3)))
    with pytest.raises(ValueError, match=r"config.model.overrides .* Set pred_dim=64\.$"):
        experiment.encoder_config(dict(family="ast", preset="ssast-patch-tiny",
                                       overrides=dict(patch=(16, 4), stride=(16, 4), pretrain_heads=True)))


class _KeepSpy:
    """Wraps an encoder and records the `keep` the objective hands it."""

    def __init__(self, model):
        self.model, self.keeps = model, []

    def grid_for(self, frames):
        return self.model.grid_for(frames)

    def logits(self, out):
        return self.model.logits(out)

    def __call__(self, feats, *, keep=None, deterministic=True):
        self.keeps.append(None if keep is None else np.asarray(keep))
        return self.model(feats, keep=keep, deterministic=deterministic)


def _subgrid(keep_row: np.ndarray, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of a frequency-major keep that must be exactly a full rows x cols subgrid, increasing."""
    rows, cols = np.unique(keep_row // grid[1]), np.unique(keep_row % grid[1])
    np.testing.assert_array_equal(keep_row, (rows[:, None] * grid[1] + cols[None, :]).reshape(-1))
    return rows, cols


@pytest.mark.parametrize("shared", [True, False])
def test_supervised_patchout_hands_the_encoder_whole_time_columns_and_frequency_rows(shared):
    cfg = PaSSTConfig.preset("passt-s-tiny").replace(num_classes=5)
    spy = _KeepSpy(PaSSTEncoder(cfg, rngs=nnx.Rngs(0)))
    obj = objectives.Supervised(get_frontend("passt"), num_classes=5, multilabel=False, mixup_alpha=0.3,
                                drop_t=6, drop_f=2, frames=298, shared_patchout=shared)
    audio = jnp.asarray(np.random.default_rng(0).normal(size=(4, 96_000)).astype(np.float32) * 0.1)
    loss, m = obj(spy, {"audio": audio, "label": jnp.asarray([1, 3, 0, 2])}, jax.random.key(0))
    grid = cfg.grid_for(298)
    assert grid == (12, 29)
    (keep,) = spy.keeps
    assert keep.shape == (4, (12 - 2) * (29 - 6)) and int(m["tokens"]) == keep.shape[1]
    drawn = [_subgrid(row, grid) for row in keep]  # each clip keeps 10 rows x 23 columns
    assert all(len(rows) == 10 and len(cols) == 23 for rows, cols in drawn)
    # official PaSST: one draw of rows and of columns for the batch; shared_patchout=False: one per clip
    assert len({tuple(rows) for rows, _ in drawn}) == len({tuple(cols) for _, cols in drawn}) == (1 if shared else 4)
    assert float(loss) == pytest.approx(np.log(5), rel=0.3)


def _fixed_logits_model(z: np.ndarray):
    """A stand-in encoder whose logits are `z` whatever the features: the loss is then a function of z alone."""

    class Fixed:
        def __call__(self, feats, *, keep=None, deterministic=True):
            return None

        def logits(self, out):
            return jnp.asarray(z, jnp.float32)

    return Fixed()


def _no_features(audio, key=None, train=False):
    return jnp.zeros((audio.shape[0], 8, 4), jnp.float32)


Z = np.asarray([[2.0, -1.0, 0.5, 0.0], [-3.0, 0.0, 1.0, 4.0]])


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_supervised_multilabel_loss_is_the_mean_binary_cross_entropy_over_clips_and_classes(smoothing):
    y = np.asarray([[1, 0, 1, 0], [0, 0, 0, 1]], np.float64)
    obj = objectives.Supervised(_no_features, num_classes=4, multilabel=True, label_smoothing=smoothing)
    loss, m = obj(_fixed_logits_model(Z), {"audio": jnp.zeros((2, 100)), "label": jnp.asarray(y, jnp.float32)},
                  jax.random.key(0))
    target = y * (1 - smoothing) + smoothing / 4
    p = 1 / (1 + np.exp(-Z))
    bce = -(target * np.log(p) + (1 - target) * np.log(1 - p))
    assert float(loss) == pytest.approx(bce.mean(), rel=1e-6)
    assert float(m["bce"]) == pytest.approx(bce.mean(), rel=1e-6)
    assert set(m) == {"bce"}


def test_supervised_multiclass_loss_is_softmax_cross_entropy_and_acc_counts_argmax_hits():
    labels = np.asarray([0, 1])  # clip 0: its class has the top logit; clip 1: class 3 does
    obj = objectives.Supervised(_no_features, num_classes=4, multilabel=False)
    loss, m = obj(_fixed_logits_model(Z), {"audio": jnp.zeros((2, 100)), "label": jnp.asarray(labels)},
                  jax.random.key(0))
    ce = np.log(np.exp(Z).sum(1)) - Z[np.arange(2), labels]
    assert float(loss) == pytest.approx(ce.mean(), rel=1e-6)
    assert float(m["ce"]) == pytest.approx(ce.mean(), rel=1e-6)
    assert float(m["acc"]) == 0.5


def _tiny_run(tmp_path: Path, config: str, steps: int, *overrides: str):
    cfg = trainer.with_defaults(config_lib.load_config(str(ROOT / "configs" / config)))
    config_lib.apply_overrides(cfg, [
        f"data.root={tmp_path / 'syn'}", "data.synthetic.per_class=6", f"train.steps={steps}",
        "train.log_every=1", "train.progress=false", f"train.checkpoint_every={steps}", *overrides])
    return experiment.train(cfg, tmp_path / "w")


@pytest.mark.slow
def test_mspm_losses_fall_on_the_synthetic_corpus_and_the_export_loads(tmp_path):
    import audiorep

    res = _tiny_run(tmp_path, "tiny_ssast.py", 50, "optim.warmup_steps=5", "optim.lr=2e-3")
    rows = [json.loads(ln) for ln in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
    first = np.mean([r["loss"] for r in rows[:8]])
    last = np.mean([r["loss"] for r in rows[-8:]])
    assert last < 0.9 * first, (first, last)
    for term in ("mse", "nce"):  # both terms learn, not just one
        assert np.mean([r[term] for r in rows[-8:]]) < np.mean([r[term] for r in rows[:8]]), term
    emb = audiorep.load(res.export_dir)
    assert emb is not None


@pytest.mark.slow
def test_masked_token_prediction_learns_on_the_synthetic_corpus_and_exports_the_encoder_alone(tmp_path):
    import audiorep
    from audiorep.models import model_dir

    res = _tiny_run(tmp_path, "tiny_masked_tokens.py", 60, "optim.warmup_steps=5")
    rows = [json.loads(ln) for ln in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
    assert np.mean([r["ce"] for r in rows[-10:]]) < 0.8 * np.mean([r["ce"] for r in rows[:10]])
    assert np.mean([r["acc"] for r in rows[-10:]]) > np.mean([r["acc"] for r in rows[:10]]) + 0.05
    bundle = model_dir.load_model_dir(res.export_dir)
    assert type(bundle.encoder).__name__ == "ASTEncoder" and bundle.frequency == "stack"
    emb = audiorep.load(res.export_dir)
    out = emb.scene(np.random.default_rng(0).normal(size=(2, 16000)).astype(np.float32) * 0.1)
    assert out.shape == (2, emb.scene_embedding_size) and np.isfinite(out).all()


@pytest.mark.slow
def test_tiny_passt_trains_with_patchout_on_the_synthetic_corpus(tmp_path):
    _tiny_run(tmp_path, "tiny_passt.py", 30, "optim.warmup_steps=5", "optim.lr=2e-3", "objective.mixup_alpha=0.0")
    rows = [json.loads(ln) for ln in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
    assert np.mean([r["loss"] for r in rows[-8:]]) < np.mean([r["loss"] for r in rows[:8]])
    assert rows[0]["tokens"] == (12 - 2) * (29 - 6)


def test_data_balance_folder_samples_each_top_level_folder_as_often_as_the_largest(tmp_path):
    import ml_collections

    from audiorep.audio.io import save_audio

    for folder, n in (("speech", 6), ("synthetic/tone", 2)):
        for i in range(n):
            save_audio(tmp_path / folder / f"{i}.wav", np.full(1600, 0.1, np.float32), 16000)
    data = ml_collections.ConfigDict(dict(dataset="folder", root=str(tmp_path), split="", balance="none"))
    assert len(experiment.data_source(data, 16000)[0]) == 8
    data.balance = "folder"
    assert len(experiment.data_source(data, 16000)[0]) == 12
    data.balance = "class"
    with pytest.raises(ValueError, match="data.balance='class'"):
        experiment.data_source(data, 16000)


@pytest.mark.slow
def test_a_second_iteration_learns_the_k_means_codes_of_the_first_iterations_encoder(tmp_path):
    from audiorep.models import model_dir

    first = _tiny_run(tmp_path, "tiny_masked_tokens.py", 20, "optim.warmup_steps=5")
    teacher = model_dir.load_model_dir(first.export_dir)
    second = trainer.with_defaults(config_lib.load_config(str(ROOT / "configs" / "tiny_masked_tokens.py")))
    config_lib.apply_overrides(second, [
        f"data.root={tmp_path / 'syn'}", "data.synthetic.per_class=6", "train.steps=30", "train.log_every=1",
        "train.progress=false", "train.checkpoint_every=30", "optim.warmup_steps=5", "objective.tokenizer=teacher",
        f"objective.teacher={tmp_path / 'w'}", "objective.codebook_size=32", "objective.kmeans_batches=4",
        "objective.init_from_teacher=true"])
    task, _ = experiment.build(second)
    tok = task.loss.tokenizer
    assert type(tok).__name__ == "TeacherTokenizer" and tok.centroids.shape == (32, teacher.encoder_config.dim)
    # the student starts from the teacher's weights; its label predictor and head are new
    for (path, a), (_, b) in zip(nnx.to_flat_state(nnx.state(task.model.encoder, nnx.Param)),
                                 nnx.to_flat_state(nnx.state(teacher.encoder, nnx.Param)), strict=True):
        np.testing.assert_array_equal(np.asarray(a[...]), np.asarray(b[...]), err_msg=str(path))
        # the restored teacher sits on one device; the student's copy must not, or a multi-device mesh refuses it
        assert not a[...].committed, path
    res = experiment.train(second, tmp_path / "w2")
    rows = [json.loads(ln) for ln in (tmp_path / "w2" / "metrics.jsonl").read_text().splitlines()]
    assert np.mean([r["ce"] for r in rows[-8:]]) < np.mean([r["ce"] for r in rows[:8]])
    assert rows[0]["codes_used"] > 0.5  # k-means codes of in-domain audio: most of the 32 occur in a batch
    meta = model_dir.load_model_dir(res.export_dir).meta
    assert meta["objective"]["tokenizer"] == "teacher" and meta["objective"]["teacher"] == str(tmp_path / "w")
    second.model.overrides.depth = 3  # a student of another shape cannot start from the teacher's weights
    with pytest.raises(ValueError, match=r"differ from the teacher's \(checkpoint\):\n  missing \(\d+\): blocks\.2"):
        experiment.build(second)


def test_a_teacher_must_exist_and_read_the_students_features_and_patch_grid(tmp_path):
    import ml_collections

    from audiorep.audio.frontends import get_frontend as frontend_of
    from audiorep.models import model_dir

    _, cfg = experiment.encoder_config(dict(family="ast", preset="ssast-patch-tiny", overrides=dict(
        patch=(16, 4), stride=(16, 4), pretrain_heads=False)))
    config = ml_collections.ConfigDict(dict(objective=dict(name="masked_tokens", tokenizer="teacher", teacher="")))
    with pytest.raises(ValueError, match="needs objective.teacher"):
        experiment.load_teacher(config, frontend_of("ssast"), cfg)
    config.objective.teacher = str(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="is not a usable model directory"):
        experiment.load_teacher(config, frontend_of("ssast"), cfg)
    _, square = experiment.encoder_config(dict(family="ast", preset="ssast-patch-tiny"))  # 16 x 16 patches
    model_dir.save_model_dir(tmp_path / "t16", family="ast", encoder=ASTEncoder(square, rngs=nnx.Rngs(0)),
                            encoder_config=square, frontend=frontend_of("ssast"))
    config.objective.teacher = str(tmp_path / "t16")
    with pytest.raises(ValueError, match=r"a family 'ast' encoder with \(16, 4\) patches"):
        experiment.load_teacher(config, frontend_of("ssast"), cfg)
    model_dir.save_model_dir(tmp_path / "t4", family="ast", encoder=ASTEncoder(cfg, rngs=nnx.Rngs(0)),
                            encoder_config=cfg, frontend=frontend_of("ssast"))
    config.objective.teacher = str(tmp_path / "t4")
    assert experiment.load_teacher(config, frontend_of("ssast"), cfg).encoder_config == cfg
    with pytest.raises(ValueError, match="reads other features"):
        experiment.load_teacher(config, frontend_of("beats"), cfg)
    with pytest.raises(ValueError, match="is fitted on the training data"):
        experiment.make_objective(ml_collections.ConfigDict(dict(objective=dict(
            name="masked_tokens", masked=40, tokenizer="teacher"), data=dict(frames=64))), frontend_of("ssast"), cfg)
