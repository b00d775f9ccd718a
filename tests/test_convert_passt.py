"""PaSST converter: every official tensor lands in its parameter, config from the file, clear failures."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from vit_placement import FIXTURES, assert_placed, fixture, fresh_fixture, marked, trunk_placement

from audiorep.models.convert.common import CheckpointError
from audiorep.models.convert.passt import IGNORED, encoder_from_state_dict, expected_shapes
from audiorep.models.passt import PRESETS

OPTS = dict(num_heads=4, stride=6, num_mel_bins=32)


def official() -> dict[str, np.ndarray]:
    """A fresh copy of the tiny PaSST checkpoint (plain official state dict)."""
    return fresh_fixture("passt_tiny.pt")


def _placement(depth: int) -> dict[str, tuple[str, str]]:
    """Official key -> (our parameter, layout), written from the official module, independent of the converter."""
    table = trunk_placement("", depth)
    table.update({
        "new_pos_embed": ("new_pos_embed", "same"),
        "freq_new_pos_embed": ("freq_new_pos_embed", "same"),
        "time_new_pos_embed": ("time_new_pos_embed", "same"),
        "head.0.weight": ("head.norm.scale", "same"),
        "head.0.bias": ("head.norm.bias", "same"),
        "head.1.weight": ("head.linear.kernel", "linear"),
        "head.1.bias": ("head.linear.bias", "same"),
    })
    return table


def test_every_official_tensor_lands_where_the_official_forward_uses_it():
    sd = marked(official())
    _, enc = encoder_from_state_dict(sd, **OPTS)
    table = _placement(depth=2)
    assert set(sd) - set(IGNORED) == set(table)
    assert_placed(enc, sd, table)


def test_config_is_read_from_the_file():
    cfg, _ = encoder_from_state_dict(official(), **OPTS)
    assert (cfg.dim, cfg.depth, cfg.num_heads, cfg.patch, cfg.stride) == (16, 2, 4, (8, 8), (6, 6))
    assert (cfg.pos_grid, cfg.num_classes, cfg.distilled) == ((5, 10), 10, True)
    assert cfg.grid_for(cfg.num_frames) == (5, 10)  # the window covers the whole time grid


def test_released_passt_s_layout_has_159_keys():
    keys = expected_shapes(PRESETS["passt-s"])
    assert len(keys) + len(IGNORED) == 159
    assert keys["freq_new_pos_embed"] == (1, 768, 12, 1) and keys["time_new_pos_embed"] == (1, 768, 1, 99)


def test_a_stride_that_does_not_fit_the_frequency_embeddings_is_explained():
    with pytest.raises(CheckpointError, match="5 frequency positions.*give 3.*--stride"):
        encoder_from_state_dict(official(), num_heads=4, num_mel_bins=32)  # default stride 10


def test_missing_keys_are_listed():
    sd = official()
    del sd["blocks.0.attn.proj.bias"], sd["head.0.weight"]
    with pytest.raises(CheckpointError, match=r"missing keys \(2\): blocks.0.attn.proj.bias, head.0.weight"):
        encoder_from_state_dict(sd, **OPTS)


def test_unexpected_keys_are_listed():
    sd = official()
    sd["pos_embed"] = np.zeros((1, 52, 16), np.float32)
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): pos_embed"):
        encoder_from_state_dict(sd, **OPTS)


def test_shape_mismatches_are_listed():
    sd = official()
    sd["new_pos_embed"] = np.zeros((1, 1, 16), np.float32)
    with pytest.raises(CheckpointError, match=r"new_pos_embed: file \(1, 1, 16\) vs model \(1, 2, 16\)"):
        encoder_from_state_dict(sd, **OPTS)


def test_ssast_file_is_named_as_ssast():
    with pytest.raises(CheckpointError, match="It is an SSAST checkpoint.*audiorep convert ssast"):
        encoder_from_state_dict(fixture("ssast_patch_tiny.pt"), **OPTS)


def test_dataparallel_prefix_is_explained():
    sd = {"module." + k: v for k, v in official().items()}
    with pytest.raises(CheckpointError, match="module."):
        encoder_from_state_dict(sd, **OPTS)


def test_converted_model_runs_and_keeps_only_the_used_head():
    _, enc = encoder_from_state_dict(official(), **OPTS)
    out = enc(jnp.zeros((1, 62, 32)))
    assert out.tokens.shape == (1, 50, 16) and enc.logits(out).shape == (1, 10)
    assert not hasattr(enc, "head_dist")


def test_convert_writes_a_model_dir_that_loads_and_matches_torch(tmp_path):
    from audiorep.models.convert.passt import convert
    from audiorep.models.model_dir import load_model_dir

    out = convert(FIXTURES / "passt_tiny.pt", tmp_path / "passt", reader="builtin", num_heads=4, stride=6,
                  num_mel_bins=32)
    bundle = load_model_dir(out)
    assert bundle.family == "passt" and bundle.frontend.num_mel_bins == 32
    assert bundle.meta["dropped_keys"] == list(IGNORED)
    with np.load(FIXTURES / "passt_tiny_ref.npz") as ref:
        out = bundle.encoder(jnp.asarray(ref["full/features"]))
        np.testing.assert_allclose(np.asarray(out.tokens), ref["full/tokens"], atol=1e-5, rtol=0)
        np.testing.assert_allclose(np.asarray(bundle.encoder.logits(out)), ref["full/logits"], atol=1e-5, rtol=0)


def test_cli_convert_passt_with_shape_options(tmp_path, capsys):
    from audiorep.cli import main

    out = tmp_path / "passt"
    args = ["convert", "passt", str(FIXTURES / "passt_tiny.pt"), str(out), "--reader", "builtin"]
    assert main(args) == 1  # stride 10 / 128 mel bins do not fit this file
    assert "--stride" in capsys.readouterr().err
    assert main(args + ["--num-heads", "4", "--stride", "6", "6", "--mel-bins", "32"]) == 0
    assert (out / "audiorep_model.json").is_file()


def test_cli_refuses_shape_options_for_beats(tmp_path, capsys):
    from audiorep.cli import main

    args = ["convert", "beats", str(FIXTURES / "passt_tiny.pt"), str(tmp_path / "m"), "--stride", "10", "10"]
    assert main(args) == 2
    assert "BEATs checkpoint stores its whole config" in capsys.readouterr().err
