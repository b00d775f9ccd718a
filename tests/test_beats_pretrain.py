"""BEATs encoders under masked token prediction: time-major bookkeeping, MAE-style encoding, the label predictor's
positions, config errors, BEATs teachers, and a tiny_beats run whose export loads like an official BEATs."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

import audiorep
from audiorep.audio.frontends import get_frontend
from audiorep.models import model_dir
from audiorep.models.ast import ASTConfig
from audiorep.models.beats import BEATS_TINY, BEATsEncoder
from audiorep.pretrain import config as config_lib
from audiorep.pretrain import experiment, masking, objectives
from audiorep.pretrain.config import ConfigError
from audiorep.pretrain.trainer import Trainer, with_defaults
from audiorep.tokenizers import TeacherTokenizer

ROOT = Path(__file__).resolve().parents[1]
F = 8  # frequency patches of a 128-bin fbank


def _encoder(seed: int = 0) -> BEATsEncoder:
    return BEATsEncoder(BEATS_TINY, rngs=nnx.Rngs(params=seed, dropout=seed + 1))


def _identity_frontend(audio, key=None, train=False):
    """The batch's 'audio' is already the features f32[B, frames, 128]."""
    return audio


def _patch_constant_features(b: int, t: int) -> jax.Array:
    """f32[b, 16 t, 128]: every value of patch (time t', freq f) equals its time-major index t' * 8 + f."""
    frames, mels = np.arange(16 * t) // 16, np.arange(128) // 16
    one = (frames[:, None] * F + mels[None, :]).astype(np.float32)
    return jnp.asarray(np.broadcast_to(one, (b, 16 * t, 128)))


class PatchIndexTokenizer:
    """Codes each raw patch by its (constant) value: on `_patch_constant_features` the code is the patch's index."""

    input = "patches"

    def __init__(self, codebook_size: int):
        self.codebook_size = codebook_size

    def __call__(self, patches):
        return jnp.round(patches.mean(-1)).astype(jnp.int32)


class ConstantTokenizer:
    """Code 0 for every patch, read from the features (so the targets never depend on the input)."""

    input = "features"
    codebook_size = 4

    def __call__(self, feats):
        return jnp.zeros((feats.shape[0], (feats.shape[1] // 16) * F), jnp.int32)


def _fixed_mask(idx):
    idx = jnp.asarray(idx, jnp.int32)
    return lambda key, grid, batch, count: idx


def test_beats_patches_are_cut_in_time_major_order_with_each_patch_read_frame_by_frame():
    enc = _encoder()
    feats = jnp.arange(2 * 70 * 128, dtype=jnp.float32).reshape(2, 70, 128)  # 70 frames: 4 whole time patches
    patches = np.asarray(enc.patches(feats))
    assert patches.shape == (2, 4 * F, 256)
    for t in range(4):
        for f in range(F):
            want = np.asarray(feats)[1, 16 * t:16 * (t + 1), 16 * f:16 * (f + 1)].reshape(-1)
            np.testing.assert_array_equal(patches[1, t * F + f], want)
    np.testing.assert_array_equal(np.asarray(PatchIndexTokenizer(32)(enc.patches(_patch_constant_features(1, 4)))),
                                  np.arange(32)[None])


def test_masked_tokens_targets_are_the_codes_at_the_masked_time_major_indices():
    enc = _encoder()
    model = objectives.TokenPredictor(enc, 32, seed=0, predictor_depth=1)
    idx = jnp.asarray([[1, 2, 8, 9, 10, 17, 24, 31], [0, 5, 6, 7, 12, 20, 21, 30]])  # 8 of 32 patches per clip
    obj = objectives.MaskedTokens(_identity_frontend, PatchIndexTokenizer(32), masked=8, mask_fn=_fixed_mask(idx))
    feats = _patch_constant_features(2, 4)
    loss, m = obj(model, {"audio": feats}, jax.random.key(0))
    keep = masking.unmasked_indices(idx, 32)
    filled = model.fill(enc(feats, keep=keep, deterministic=False).tokens, keep, (F, 4))
    logp = np.asarray(jax.nn.log_softmax(model.head(filled).astype(jnp.float32)))
    rows = np.arange(2)[:, None]
    # patch n's code is n, so the target at masked position idx[b, m] is idx[b, m] itself
    ce = -logp[rows, np.asarray(idx), np.asarray(idx)]
    assert float(m["ce"]) == pytest.approx(ce.mean(), rel=1e-5)
    assert float(loss) == pytest.approx(ce.mean(), rel=1e-5)
    hits = logp.argmax(-1)[rows, np.asarray(idx)] == np.asarray(idx)
    assert float(m["acc"]) == pytest.approx(hits.mean())
    assert float(m["codes_used"]) == pytest.approx(1.0)  # all 32 codes occur


def test_the_beats_encoder_never_sees_a_masked_patch():
    model = objectives.TokenPredictor(_encoder(), ConstantTokenizer.codebook_size, seed=0, predictor_depth=1)
    idx = jnp.asarray([[1, 4, 9, 14, 19, 22, 27, 30]] * 2)
    obj = objectives.MaskedTokens(_identity_frontend, ConstantTokenizer(), masked=8, mask_fn=_fixed_mask(idx))
    feats = jax.random.normal(jax.random.key(1), (2, 64, 128))
    key = jax.random.key(2)
    base = float(obj(model, {"audio": feats}, key)[0])
    # token 1 is time patch 0, frequency patch 1 (time-major); frequency-major order would make it (f 0, t 1)
    masked_patch = feats.at[:, 0:16, 16:32].add(3.0)
    assert float(obj(model, {"audio": masked_patch}, key)[0]) == pytest.approx(base, abs=1e-6)
    visible_patch = feats.at[:, 16:32, 0:16].add(3.0)  # token 1 * 8 + 0 = 8: visible
    assert abs(float(obj(model, {"audio": visible_patch}, key)[0]) - base) > 1e-4


def test_the_encoder_gets_the_visible_patches_original_indices_and_their_relative_distances():
    seen = []

    class Spy(BEATsEncoder):
        def __call__(self, features, **kw):
            seen.append(np.asarray(kw.get("keep")))
            return super().__call__(features, **kw)

    enc = Spy(BEATS_TINY, rngs=nnx.Rngs(params=0, dropout=1))
    model = objectives.TokenPredictor(enc, 4, seed=0, predictor_depth=1)
    idx = np.asarray([[0, 3, 5, 6, 11, 12, 20, 29], [2, 4, 8, 9, 15, 16, 17, 18]])
    obj = objectives.MaskedTokens(_identity_frontend, ConstantTokenizer(), masked=8, mask_fn=_fixed_mask(idx))
    obj(model, {"audio": jax.random.normal(jax.random.key(1), (2, 64, 128))}, jax.random.key(0))
    keep = seen[-1]
    for b in range(2):
        np.testing.assert_array_equal(keep[b], sorted(set(range(32)) - set(idx[b].tolist())))
    full = np.asarray(enc.position_bias(32))[0]  # [H, 32, 32] over the whole grid
    kept = np.asarray(enc.position_bias(32, jnp.asarray(keep)))
    for b in range(2):
        np.testing.assert_array_equal(kept[b], full[:, keep[b]][:, :, keep[b]])
    assert not np.array_equal(kept[0], np.asarray(enc.position_bias(24))[0])  # not the compacted positions


def test_the_label_predictor_tells_masked_positions_apart_by_relative_position_alone():
    model = objectives.TokenPredictor(_encoder(), 4, seed=0, predictor_depth=1)
    assert model.predictor.relative == (BEATS_TINY.num_buckets, BEATS_TINY.max_distance)
    visible = jax.random.normal(jax.random.key(0), (1, 4, BEATS_TINY.encoder_embed_dim))
    keep = jnp.asarray([[0, 9, 18, 27]])
    out = np.asarray(model.fill(visible, keep, (F, 4)))
    assert out.shape == (1, 32, BEATS_TINY.encoder_embed_dim)
    masked = [n for n in range(32) if n not in (0, 9, 18, 27)]  # all carry the same mask token
    assert min(np.abs(out[0, a] - out[0, b]).max() for a in masked for b in masked if a < b) > 1e-4
    with pytest.raises(ValueError, match="pass n=N"):
        model.predictor(visible, keep, jnp.zeros((32, BEATS_TINY.encoder_embed_dim)))


def _masked_tokens_config(**objective) -> ml_collections.ConfigDict:
    o = dict(name="masked_tokens", masked=24, mask="random", codebook_size=64, predictor_depth=1)
    o.update(objective)
    return ml_collections.ConfigDict(dict(objective=o, data=dict(frames=64), model=dict(family="beats")))


def test_masked_tokens_on_beats_codes_256_value_patches_and_refuses_the_ssast_only_options():
    _, cfg = experiment.encoder_config(dict(family="beats", preset="beats-tiny"))
    obj = experiment.make_objective(_masked_tokens_config(), get_frontend("beats"), cfg)
    assert obj.tokenizer.in_dim == 256 and obj.tokenizer.codebook_size == 64
    with pytest.raises(ConfigError, match="a BEATs encoder has none .* set objective.predictor_depth >= 1"):
        experiment.make_objective(_masked_tokens_config(predictor_depth=0), get_frontend("beats"), cfg)
    with pytest.raises(ConfigError, match="visible_weight / visible_mse_weight belong to SSAST encoders"):
        experiment.make_objective(_masked_tokens_config(visible_mse_weight=1.0), get_frontend("beats"), cfg)
    with pytest.raises(ConfigError, match="a BEATs encoder has no mask embedding"):
        objectives.TokenPredictor(_encoder(), 64, predictor_depth=0)


def test_masked_tokens_refuses_a_tokenizer_that_codes_another_grid():
    class Wrong(ConstantTokenizer):
        def __call__(self, feats):
            return jnp.zeros((feats.shape[0], 7), jnp.int32)

    model = objectives.TokenPredictor(_encoder(), 4, predictor_depth=1)
    obj = objectives.MaskedTokens(_identity_frontend, Wrong(), masked=8)
    with pytest.raises(ValueError, match="the tokenizer must read the student's patch grid"):
        obj(model, {"audio": jnp.zeros((1, 64, 128))}, jax.random.key(0))


def test_cluster_and_frame_masks_are_drawn_in_the_beats_token_order():
    grid = (F, 6)
    fn = objectives.mask_function("frame", time_major=True)
    idx = np.asarray(fn(jax.random.key(0), grid, 2, 2 * F))
    for row in idx:  # two whole time columns: in time-major order each is 8 consecutive indices
        cols = sorted({int(n) // F for n in row})
        assert len(cols) == 2 and sorted(row.tolist()) == [t * F + f for t in cols for f in range(F)]
    cluster = np.asarray(objectives.mask_function("cluster", time_major=True)(jax.random.key(1), grid, 1, 9))
    freq_major = np.asarray(masking.cluster_mask_indices(jax.random.key(1), grid, 1, 9))
    f, t = masking.grid_coords(jnp.asarray(freq_major), grid)
    np.testing.assert_array_equal(cluster, np.sort(np.asarray(masking.flat_index(f, t, grid, time_major=True))))


def _save(path: Path, family: str, encoder, cfg, frontend: str) -> str:
    model_dir.save_model_dir(path, family=family, encoder=encoder, encoder_config=cfg,
                             frontend=get_frontend(frontend))
    return str(path)


def test_a_beats_teacher_with_the_students_grid_codes_the_beats_student(tmp_path):
    frontend = get_frontend("beats")
    _, cfg = experiment.encoder_config(dict(family="beats", preset="beats-tiny"))
    c = _masked_tokens_config(tokenizer="teacher", teacher=_save(tmp_path / "t", "beats", _encoder(3), BEATS_TINY,
                                                                  "beats"))
    bundle = experiment.load_teacher(c, frontend, cfg)
    feats = jax.random.normal(jax.random.key(0), (2, 64, 128))
    tok = TeacherTokenizer.fit(bundle.encoder, [feats], codebook_size=8, iters=3)
    assert experiment.make_objective(c, frontend, cfg, tokenizer=tok).tokenizer is tok
    codes = np.asarray(tok(feats))
    assert codes.shape == (2, 32) and codes.min() >= 0 and codes.max() < 8
    obj = objectives.MaskedTokens(_identity_frontend, tok, masked=24)
    loss, m = obj(objectives.TokenPredictor(_encoder(), 8, predictor_depth=1), {"audio": feats}, jax.random.key(2))
    assert np.isfinite(float(loss)) and 0 <= float(m["acc"]) <= 1


def test_a_teacher_of_another_family_is_refused_with_the_family_and_grid_the_student_needs(monkeypatch):
    ast_cfg = ASTConfig.preset("ssast-patch-tiny")
    fake = types.SimpleNamespace(family="ast", encoder_config=ast_cfg, frontend=get_frontend("beats"))
    monkeypatch.setattr(model_dir, "load_model_dir", lambda path: fake)
    _, cfg = experiment.encoder_config(dict(family="beats", preset="beats-tiny"))
    c = _masked_tokens_config(tokenizer="teacher", teacher="/some/ssast/export")
    with pytest.raises(ConfigError, match=r"is a family 'ast' encoder with \(16, 16\) patches.* a family 'beats' "
                                          r"encoder with 16x16 patches of 128 mel bins, time-major tokens"):
        experiment.load_teacher(c, get_frontend("beats"), cfg)


# --------------------------------------------------------------------------------- a tiny_beats run
@pytest.fixture(scope="module")
def tiny_beats_run(tmp_path_factory):
    """configs/tiny_beats.py, 150 steps of batch 8 on a small synthetic corpus: (config, task, initial model,
    trained model, export dir)."""
    tmp = tmp_path_factory.mktemp("tiny_beats")
    sys.path.insert(0, str(ROOT / "configs"))
    c = with_defaults(config_lib.load_config(f"{ROOT / 'configs' / 'tiny_beats.py'}:steps=150"))
    c.data.root = str(tmp / "corpus")
    c.data.synthetic.per_class = 6
    c.train.update(dict(batch_size=8, checkpoint_every=150, progress=False, log_every=50))
    task, make_iterator = experiment.build(c)
    initial = nnx.clone(task.model)
    tr = Trainer(c, str(tmp / "run"), task, make_iterator)
    result = tr.run()
    assert result.status == "done"
    return c, task, make_iterator, initial, tr.model(), result.export_dir


@pytest.mark.slow
def test_tiny_beats_exports_a_beats_model_dir_that_audiorep_load_embeds_with(tiny_beats_run):
    c, task, _, _, trained, export = tiny_beats_run
    bundle = model_dir.load_model_dir(export)
    assert bundle.family == "beats" and bundle.frontend.to_dict() == get_frontend("beats").to_dict()
    assert bundle.encoder_config == BEATS_TINY
    emb = audiorep.load(export)
    audio = np.random.default_rng(0).normal(size=(2, 24000)).astype(np.float32) * 0.1
    scene = emb.scene(audio, sample_rate=16000)
    assert scene.shape[0] == 2 and np.all(np.isfinite(scene))
    feats = get_frontend("beats")(jnp.asarray(audio))
    np.testing.assert_allclose(np.asarray(bundle.encoder(feats).tokens), np.asarray(trained.encoder(feats).tokens),
                               atol=1e-5)


@pytest.mark.slow
def test_masked_label_accuracy_rises_over_tiny_beats_training_above_the_most_frequent_code(tiny_beats_run):
    c, task, make_iterator, initial, trained, _ = tiny_beats_run
    obj = task.loss
    batch = {k: jnp.asarray(v) for k, v in next(make_iterator(0, 1, 32)).items()}
    key = jax.random.key(123)
    acc0 = float(obj(initial, batch, key)[1]["acc"])
    acc1 = float(obj(trained, batch, key)[1]["acc"])
    # the same masks as the objective drew: the share of the most frequent code among the masked targets
    k_front, k_mask, _ = jax.random.split(key, 3)
    feats = obj.features(batch["audio"], k_front)
    codes = np.asarray(obj.codes(trained.encoder, feats))
    idx = np.asarray(masking.random_mask_indices(k_mask, trained.encoder.grid_for(feats.shape[1]), codes.shape[0],
                                                 obj.masked))
    targets = np.take_along_axis(codes, idx, axis=1)
    majority = np.bincount(targets.ravel()).max() / targets.size
    assert acc1 > acc0 + 0.1, (acc0, acc1)
    assert acc1 > majority + 0.02, (acc1, majority)
