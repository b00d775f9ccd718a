"""Official BEATs checkpoints -> BEATsEncoder: parity with PyTorch, the key map, clear failures, the CLI.

Fixtures (tests/fixtures/make_beats_fixture.py, run once with real torch): tiny checkpoints in the official
layout and the outputs of an independent PyTorch forward pass written from the official source. Here they
are read with our torch-free reader, converted and run.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import fixture_fbank

from audiorep.models.convert.beats import (
    config_from_checkpoint,
    convert,
    encoder_from_checkpoint,
    expected_shapes,
    param_values,
)
from audiorep.models.convert.common import CheckpointError, read_torch_zip

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def ckpt():
    return read_torch_zip(FIXTURES / "beats_tiny.pt")


@pytest.fixture(scope="module")
def ckpt_ft():
    return read_torch_zip(FIXTURES / "beats_tiny_ft.pt")


@pytest.fixture(scope="module")
def ref():
    return np.load(FIXTURES / "beats_tiny_ref.npz")


@pytest.mark.slow
def test_converted_encoder_matches_pytorch_reference(ckpt, ref):
    enc, _ = encoder_from_checkpoint(ckpt)
    out = enc(jnp.asarray(fixture_fbank()), return_hidden=True)
    np.testing.assert_allclose(out.hidden[0], ref["beats_tiny/hidden0"], atol=1e-4)
    np.testing.assert_allclose(out.tokens, ref["beats_tiny/tokens"], atol=1e-4)


def test_fine_tuned_checkpoint_matches_pytorch_probabilities(ckpt_ft, ref):
    enc, info = encoder_from_checkpoint(ckpt_ft)
    assert info["config"].finetuned_model and info["config"].predictor_class == 3
    assert info["label_dict"] == {"/m/a": 0, "/m/b": 1, "/m/c": 2}
    np.testing.assert_allclose(enc.classify(jnp.asarray(fixture_fbank())), ref["beats_tiny_ft/probs"], atol=1e-5)


def test_config_is_built_from_the_file(ckpt):
    cfg = config_from_checkpoint(ckpt["cfg"], ckpt["model"])
    assert (cfg.embed_dim, cfg.encoder_embed_dim, cfg.encoder_layers, cfg.max_distance) == (16, 32, 2, 64)


def test_expected_keys_are_exactly_the_official_ones(ckpt):
    cfg = config_from_checkpoint(ckpt["cfg"], ckpt["model"])
    shapes = expected_shapes(cfg)
    assert set(shapes) == set(ckpt["model"])
    assert all(tuple(ckpt["model"][k].shape) == s for k, s in shapes.items())


def test_marked_values_land_where_the_official_forward_uses_them(ckpt):
    sd = copy.deepcopy(ckpt["model"])
    cfg = config_from_checkpoint(ckpt["cfg"], sd)
    sd["encoder.layers.1.self_attn.out_proj.weight"][3, 5] = 123.0  # out feature 3 from in feature 5
    sd["encoder.layers.0.self_attn.grep_a"][0, 2, 0, 0] = -7.0
    sd["patch_embedding.weight"][4, 0, 1, 9] = 55.0  # channel 4, time row 1, freq col 9
    sd["encoder.pos_conv.0.weight_v"][6, 2, 11] = 77.0
    v = param_values(sd, cfg)
    assert v[("layers", 1, "attn", "proj", "kernel")][5, 3] == 123.0
    assert v[("layers", 0, "grep_a")][2] == -7.0
    assert v[("patch_embedding", "proj", "kernel")][1, 9, 0, 4] == 55.0
    assert v[("pos_conv", "weight_v")][6, 2, 11] == 77.0


def test_shared_relative_bias_is_stored_once(ckpt):
    enc, _ = encoder_from_checkpoint(ckpt)
    np.testing.assert_array_equal(enc.relative_attention_bias[...],
                                  ckpt["model"]["encoder.layers.0.self_attn.relative_attention_bias.weight"])


def test_unequal_shared_relative_bias_warns_and_uses_the_last_layer(ckpt):
    obj = copy.deepcopy(ckpt)
    key = "encoder.layers.1.self_attn.relative_attention_bias.weight"
    obj["model"][key] = obj["model"][key] + 1.0
    with pytest.warns(UserWarning, match="relative_attention_bias differs"):
        enc, _ = encoder_from_checkpoint(obj)
    np.testing.assert_array_equal(enc.relative_attention_bias[...], obj["model"][key])


def test_missing_and_unexpected_keys_are_listed(ckpt):
    obj = copy.deepcopy(ckpt)
    del obj["model"]["encoder.layers.1.fc1.bias"]
    obj["model"]["encoder.layers.1.extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(CheckpointError) as err:
        encoder_from_checkpoint(obj, source="x.pt")
    msg = str(err.value)
    assert "missing keys (1): encoder.layers.1.fc1.bias" in msg
    assert "unexpected keys (1): encoder.layers.1.extra.weight" in msg


def test_shape_mismatch_is_named(ckpt):
    obj = copy.deepcopy(ckpt)
    obj["cfg"]["encoder_ffn_embed_dim"] = 48
    with pytest.raises(CheckpointError, match="encoder.layers.0.fc1.weight: file \\(64, 32\\) vs model \\(48, 32\\)"):
        encoder_from_checkpoint(obj)


def test_ssast_file_is_named_as_such():
    with pytest.raises(CheckpointError, match="SSAST checkpoint"):
        encoder_from_checkpoint({"module.v.pos_embed": np.zeros((1, 3, 4)), "module.mask_embed": np.zeros(1)})


def test_passt_file_is_named_as_such():
    with pytest.raises(CheckpointError, match="PaSST checkpoint"):
        encoder_from_checkpoint({"freq_new_pos_embed": np.zeros(1), "time_new_pos_embed": np.zeros(1)})


def test_tokenizer_file_points_to_the_tokenizer_converter(ckpt):
    obj = copy.deepcopy(ckpt)
    obj["model"]["quantize.embedding.weight"] = np.zeros((4, 2), np.float32)
    with pytest.raises(CheckpointError, match="tokenizer.*audiorep convert beats-tokenizer"):
        encoder_from_checkpoint(obj)


def test_file_without_cfg_is_a_clear_error(ckpt):
    with pytest.raises(CheckpointError, match="no 'cfg'"):
        encoder_from_checkpoint({"model": ckpt["model"]})


def test_bare_beats_state_dict_asks_for_the_released_file(ckpt):
    with pytest.raises(CheckpointError, match="no `cfg`"):
        encoder_from_checkpoint(ckpt["model"])


def test_predictor_keys_override_a_wrong_cfg_flag(ckpt_ft):
    obj = copy.deepcopy(ckpt_ft)
    obj["cfg"]["finetuned_model"] = False
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _, info = encoder_from_checkpoint(obj)
    assert info["config"].finetuned_model and any("predictor" in str(w.message) for w in seen)


@pytest.mark.slow
def test_convert_writes_a_model_dir_that_loads_without_torch(tmp_path, ref):
    from audiorep.models.model_dir import load_model_dir

    out = convert(FIXTURES / "beats_tiny_ft.pt", tmp_path / "m", reader="builtin")
    doc = json.loads((out / "audiorep_model.json").read_text())
    assert doc["family"] == "beats" and doc["meta"]["label_dict"]["/m/b"] == 1 and doc["meta"]["finetuned"]
    bundle = load_model_dir(out)
    probs = bundle.encoder.classify(jnp.asarray(fixture_fbank()))
    np.testing.assert_allclose(probs, ref["beats_tiny_ft/probs"], atol=1e-5)


def test_convert_refuses_an_existing_out_dir(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(CheckpointError, match="--force"):
        convert(FIXTURES / "beats_tiny.pt", tmp_path / "m")


@pytest.mark.slow
def test_cli_convert_beats_and_force(tmp_path, capsys):
    from audiorep.cli import main

    out = tmp_path / "m"
    assert main(["convert", "beats", str(FIXTURES / "beats_tiny.pt"), str(out)]) == 0
    assert (out / "audiorep_model.json").is_file()
    assert main(["convert", "beats", str(FIXTURES / "beats_tiny.pt"), str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["convert", "beats", str(FIXTURES / "beats_tiny.pt"), str(out), "--force"]) == 0


def test_cli_convert_reports_a_wrong_family(tmp_path, capsys):
    from audiorep.cli import main

    assert main(["convert", "beats", str(FIXTURES / "torch_reader_cases.pt"), str(tmp_path / "m")]) == 1
    assert "not an official BEATs checkpoint" in capsys.readouterr().err


def test_released_architecture_expects_the_250_official_keys():
    from audiorep.models.beats import BEATS_BASE

    shapes = expected_shapes(BEATS_BASE)
    assert len(shapes) == 250
    assert shapes["encoder.pos_conv.0.weight_v"] == (768, 48, 128)
    assert shapes["encoder.pos_conv.0.weight_g"] == (1, 1, 128)
    assert shapes["encoder.layers.11.self_attn.relative_attention_bias.weight"] == (320, 12)
    assert shapes["encoder.layers.0.self_attn.grep_a"] == (1, 12, 1, 1)


def test_cli_convert_of_a_truncated_checkpoint_says_truncated(tmp_path, capsys):
    from audiorep.cli import main

    data = (FIXTURES / "beats_tiny.pt").read_bytes()
    cut = tmp_path / "beats_tiny.pt"
    cut.write_bytes(data[: len(data) * 2 // 3])
    out = tmp_path / "m"
    assert main(["convert", "beats", str(cut), str(out)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "truncated" in err and str(cut) in err and "legacy" not in err
    assert not out.exists()
