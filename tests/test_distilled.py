"""The self-distilled acoustic tokenizer (tokenizers/distilled.py): architecture, labels."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from audiorep.models.beats import BEATsEncoder
from audiorep.tokenizers.distilled import TOKENIZER_PRESETS, AcousticTokenizer, TokenizerConfig
from audiorep.tokenizers.vq import NormEMAVectorQuantizer

TINY = TOKENIZER_PRESETS["beats-tokenizer-tiny"]


def _trained_once(seed: int = 0) -> tuple[AcousticTokenizer, jax.Array]:
    tok = AcousticTokenizer(TINY, rngs=nnx.Rngs(seed))
    feats = jax.random.normal(jax.random.PRNGKey(seed + 1), (2, 64, 128))
    tok(feats, train=True, rng=jax.random.PRNGKey(0))  # k-means init of the codebook on this batch
    return tok, feats


def test_tokenizer_has_the_official_pieces():
    tok = AcousticTokenizer(TINY, rngs=nnx.Rngs(0))
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
