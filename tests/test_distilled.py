"""The self-distilled acoustic tokenizer (tokenizers/distilled.py): architecture, labels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from audiorep.audio.frontends import get_frontend
from audiorep.models import model_dir
from audiorep.models.ast import PRESETS as AST_PRESETS
from audiorep.models.ast import ASTEncoder
from audiorep.models.beats import BEATS_TINY, BEATsEncoder
from audiorep.models.layers import EncoderOutput
from audiorep.pretrain import distill, trainer
from audiorep.pretrain.config import ConfigError
from audiorep.tokenizers.distilled import (
    TOKENIZER_PRESETS,
    AcousticTokenizer,
    FrozenWeight,
    TokenizerConfig,
    time_major_tokens,
)
from audiorep.tokenizers.tokenizer_dir import load_tokenizer_dir
from audiorep.tokenizers.vq import NormEMAVectorQuantizer

ROOT = Path(__file__).resolve().parents[1]
TINY = TOKENIZER_PRESETS["beats-tokenizer-tiny"]


@nnx.jit
def _train_step(tok: AcousticTokenizer, feats: jax.Array) -> None:
    tok(feats, train=True, rng=jax.random.PRNGKey(0))


def _trained_once(seed: int = 0) -> tuple[AcousticTokenizer, jax.Array]:
    tok = AcousticTokenizer(TINY, rngs=nnx.Rngs(seed))
    feats = jax.random.normal(jax.random.PRNGKey(seed + 1), (2, 64, 128))
    _train_step(tok, feats)  # k-means init of the codebook on this batch
    return tok, feats


def test_tokenizer_has_the_official_pieces():
    tok = nnx.eval_shape(lambda: AcousticTokenizer(TINY, rngs=nnx.Rngs(0)))
    assert isinstance(tok.encoder, BEATsEncoder)
    assert isinstance(tok.quantize, NormEMAVectorQuantizer)
    assert tok.quantize_layer.fc1.kernel.shape == (64, 64)
    assert tok.quantize_layer.fc2.kernel.shape == (64, TINY.quant_dim)
    assert tok.quantize.embedding.shape == (TINY.quant_n, TINY.quant_dim)
    assert tok.codebook_size == TINY.quant_n


def test_labels_are_one_per_patch_in_codebook_range():
    tok, feats = _trained_once()
    labels = tok.labels(feats)
    assert labels.shape == (2, 8 * 4) and labels.dtype == jnp.int32
    assert labels.min() >= 0 and labels.max() < TINY.quant_n
    assert len(np.unique(np.asarray(labels))) > 1


def test_labels_are_the_nearest_codes_of_the_time_major_tokens():
    tok, feats = _trained_once()
    tokens = tok.encoder(feats).tokens  # time-major: token n = t * 8 + f
    expected = tok.quantize.codes(tok.quantize_layer(tokens))
    np.testing.assert_array_equal(tok.labels(feats), expected)
    # a patch's label moves with its time patch: the second time patch's labels are tokens 8..15
    first = tok.labels(feats[:, :16])
    assert first.shape == (2, 8)


def test_labels_equal_the_training_forward_codes():
    tok, feats = _trained_once()
    out = tok(feats, train=False)
    np.testing.assert_array_equal(out.codes, tok.labels(feats))


def test_official_cfg_takes_the_official_class_defaults():
    cfg = TokenizerConfig.from_official(dict(input_patch_size=16, encoder_layers=2, quant_n=64))
    assert cfg.deep_norm is False and cfg.max_distance == 1280 and cfg.quant_dim == 256 and cfg.dropout == 0.1
    with pytest.warns(UserWarning, match="not used"):
        TokenizerConfig.from_official(dict(input_patch_size=16, no_such_field=1))


def test_config_round_trips_and_rejects_unknown_fields():
    assert TokenizerConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(ValueError, match="unknown TokenizerConfig fields"):
        TokenizerConfig.from_dict(dict(TINY.to_dict(), bogus=1))


def test_released_preset_has_the_official_codebook():
    cfg = TOKENIZER_PRESETS["beats-tokenizer"]
    assert (cfg.quant_n, cfg.quant_dim, cfg.input_patch_size, cfg.encoder_embed_dim) == (1024, 256, 16, 768)


# ------------------------------------------------------------------------------------ distillation
def _teacher_dir(tmp_path) -> str:
    path = tmp_path / "teacher"
    enc = BEATsEncoder(BEATS_TINY, rngs=nnx.Rngs(3))
    model_dir.save_model_dir(path, family="beats", encoder=enc, encoder_config=BEATS_TINY,
                             frontend=get_frontend("beats"), window_frames=32)
    return str(path)


def _distill_config(tmp_path, steps: int, **distill) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data = ml_collections.ConfigDict(dict(
        dataset="synthetic", root=str(tmp_path / "syn"), split="", frames=32, worker_count=0,
        options=ml_collections.ConfigDict(), balance="none",
        synthetic=ml_collections.ConfigDict(dict(per_class=2, seconds=1.0, seed=0, sample_rate=16000))))
    c.train = ml_collections.ConfigDict(dict(steps=steps, batch_size=4, log_every=1, checkpoint_every=4,
                                             progress=False, async_checkpoints=False))
    c.optim = ml_collections.ConfigDict(dict(lr=3e-3, schedule="constant", warmup_steps=0, weight_decay=0.0))
    c.distill = ml_collections.ConfigDict(dict(preset="beats-tokenizer-tiny", estimator_depth=1,
                                               overrides=ml_collections.ConfigDict(dict(quant_n=16)), **distill))
    return trainer.with_defaults(c)


def _rows(workdir) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_distillation_raises_the_cosine_to_the_teacher_and_exports_a_tokenizer(tmp_path):
    teacher = _teacher_dir(tmp_path)
    cfg = distill.stage_config(_distill_config(tmp_path, 24), teacher=teacher)
    result = distill.train(cfg, tmp_path / "w")
    rows = _rows(tmp_path / "w")
    assert np.mean([r["cosine"] for r in rows[-4:]]) > np.mean([r["cosine"] for r in rows[:4]]) + 0.05
    assert all(0 < r["vq_usage"] <= 1 for r in rows)
    bundle = load_tokenizer_dir(result.export_dir)
    audio = np.random.default_rng(0).standard_normal((2, 16000)).astype(np.float32) * 0.1
    labels = bundle.labels_from_audio(audio)
    assert labels.shape == (2, 8 * 6) and int(labels.max()) < 16


@pytest.mark.slow
def test_resumed_distillation_keeps_the_codebook_state(tmp_path):
    teacher = _teacher_dir(tmp_path)
    cfg = distill.stage_config(_distill_config(tmp_path, 8), teacher=teacher)
    straight = distill.train(cfg, tmp_path / "straight")
    half = _distill_config(tmp_path, 4)
    distill.train(distill.stage_config(half, teacher=teacher), tmp_path / "resumed")  # stops at step 4
    resumed = distill.train(cfg, tmp_path / "resumed")  # the same run asked for 8 steps: resumes at 4
    assert resumed.step == 8
    a, b = load_tokenizer_dir(straight.export_dir).tokenizer, load_tokenizer_dir(resumed.export_dir).tokenizer
    assert float(b.quantize.initted[...]) == 1.0
    np.testing.assert_allclose(a.quantize.embedding[...], b.quantize.embedding[...], atol=1e-5)
    np.testing.assert_allclose(a.quantize.cluster_size[...], b.quantize.cluster_size[...], atol=1e-5)
    assert _rows(tmp_path / "resumed")[-1]["loss"] == pytest.approx(_rows(tmp_path / "straight")[-1]["loss"], rel=1e-5)


def test_the_teacher_is_carried_frozen_not_trained(tmp_path):
    task, _ = distill.build(distill.stage_config(_distill_config(tmp_path, 1), teacher=_teacher_dir(tmp_path)))
    params = nnx.state(task.model, nnx.Param)
    assert "teacher" not in params and "tokenizer" in params and "estimator" in params
    assert jax.tree.leaves(nnx.state(task.model.teacher, FrozenWeight))


def test_a_teacher_with_another_patch_grid_is_refused(tmp_path):
    path = tmp_path / "ast_teacher"
    ast_cfg = AST_PRESETS["ssast-frame-tiny"]  # 128 x 2 patches: a 1 x 16 grid where the tokenizer has 8 x 2
    model_dir.save_model_dir(path, family="ast", encoder=ASTEncoder(ast_cfg, rngs=nnx.Rngs(0)),
                             encoder_config=ast_cfg, frontend=get_frontend("beats"))
    with pytest.raises(ConfigError, match="grid"):
        distill.build(distill.stage_config(_distill_config(tmp_path, 1), teacher=str(path)))


def test_frequency_major_teacher_tokens_are_put_in_time_major_order():
    f, t = 2, 3
    tokens = jnp.arange(f * t, dtype=jnp.float32).reshape(1, f * t, 1)  # token n sits at (f, t) = divmod(n, T)
    out = EncoderOutput(tokens=tokens, cls=None, hidden=None, grid=(f, t), time_major=False)
    # time-major order walks (t, f): (0,0) (0,1) (1,0) (1,1) (2,0) (2,1) -> frequency-major indices f * T + t
    np.testing.assert_array_equal(time_major_tokens(out)[0, :, 0], [0, 3, 1, 4, 2, 5])


def test_an_ast_teacher_with_the_tokenizers_patch_grid_is_accepted(tmp_path):
    path = tmp_path / "ast_teacher"
    ast_cfg = AST_PRESETS["ssast-patch-tiny"]  # 16 x 16 patches, stride 16: the tokenizer's grid
    model_dir.save_model_dir(path, family="ast", encoder=ASTEncoder(ast_cfg, rngs=nnx.Rngs(0)),
                             encoder_config=ast_cfg, frontend=get_frontend("beats"))
    task, _ = distill.build(distill.stage_config(_distill_config(tmp_path, 1), teacher=str(path)))
    assert task.model.estimator.head.kernel.shape[-1] == ast_cfg.dim


SHARDED_DISTILLATION = textwrap.dedent("""
    import jax, numpy as np
    from pathlib import Path
    import test_distilled as T
    from audiorep.pretrain import distill, distributed, trainer
    assert jax.device_count() == 8
    tmp = Path(WORKDIR)
    teacher = T._teacher_dir(tmp)
    out = {}
    for name, mesh in [("sharded", distributed.make_mesh(4, 2)),
                       ("single", distributed.make_mesh(1, 1, devices=jax.devices()[:1]))]:
        cfg = distill.stage_config(T._distill_config(tmp, 3), teacher=teacher)
        cfg.train.batch_size = 8
        task, make_iterator = distill.build(cfg)
        tr = trainer.Trainer(cfg, tmp / name, task, make_iterator, mesh=mesh)
        res = tr.run()
        codebook = jax.device_get(tr.state["rest"]["tokenizer"]["quantize"]["embedding"][...])
        out[name] = (res.metrics["loss"], np.asarray(codebook))
    np.testing.assert_allclose(out["sharded"][0], out["single"][0], rtol=1e-4)
    np.testing.assert_allclose(out["sharded"][1], out["single"][1], atol=1e-4)
    print("OK", out["sharded"][0], out["single"][0])
""")


@pytest.mark.slow
def test_sharded_distillation_on_8_devices_matches_one_device(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu",
               PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}")
    code = f"WORKDIR = {str(tmp_path)!r}\n" + SHARDED_DISTILLATION
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "OK" in proc.stdout
