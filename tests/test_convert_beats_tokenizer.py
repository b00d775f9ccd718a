"""Official BEATs tokenizer checkpoints -> AcousticTokenizer: labels equal PyTorch's, the key map, the tokenizer
directory, clear failures, the CLI.

Fixture (tests/fixtures/make_beats_tokenizer_fixture.py, run once with real torch): a tiny checkpoint in the
official `Tokenizers` layout and the labels of an independent PyTorch forward written from the official source,
with every token's nearest code ahead of the second by a margin the script asserts. Read here with the
torch-free reader.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import fixture_fbank
from flax import nnx

from audiorep.audio.frontends import get_frontend
from audiorep.models.convert.beats_tokenizer import (
    config_from_checkpoint,
    convert,
    expected_shapes,
    param_values,
    tokenizer_from_checkpoint,
)
from audiorep.models.convert.common import CheckpointError, read_torch_zip
from audiorep.tokenizers.distilled import TOKENIZER_BASE
from audiorep.tokenizers.tokenizer_dir import (
    TokenizerBundle,
    TokenizerDirError,
    load_tokenizer_dir,
    save_tokenizer_dir,
)

FIXTURES = Path(__file__).parent / "fixtures"
TOKENIZER_PT = FIXTURES / "beats_tokenizer_tiny.pt"


@pytest.fixture(scope="module")
def ckpt():
    return read_torch_zip(TOKENIZER_PT)


@pytest.fixture(scope="module")
def ref():
    return np.load(FIXTURES / "beats_tokenizer_tiny_ref.npz")


@pytest.fixture(scope="module")
def converted(ckpt):
    return tokenizer_from_checkpoint(ckpt)


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return convert(TOKENIZER_PT, tmp_path_factory.mktemp("tok") / "tok", reader="builtin")


@pytest.fixture(scope="module")
def bundle(tok_dir):
    return load_tokenizer_dir(tok_dir)  # one per module: its jitted functions compile once


def test_labels_equal_the_pytorch_reference(converted, ref):
    tok, info = converted
    in_memory = TokenizerBundle(tokenizer=tok, config=info["config"], frontend=get_frontend("beats"))
    labels = np.asarray(in_memory.labels(fixture_fbank(frames=int(ref["fbank_frames"]))))
    assert labels.dtype == np.int32 and labels.shape == ref["labels"].shape == (2, 48)
    np.testing.assert_array_equal(labels, ref["labels"])
    np.testing.assert_array_equal(labels.reshape(-1), ref["labels_flat"])  # official extract_labels is [B * N]
    assert len(np.unique(labels)) >= 9  # the fixture spreads the tokens over most of its 12 codes


def test_quantize_inputs_match_within_a_fraction_of_the_label_margin(converted, ref):
    tok, _ = converted
    q = np.asarray(nnx.jit(lambda t, x: t.quantize_input(x))(tok, fixture_fbank(frames=int(ref["fbank_frames"]))))
    np.testing.assert_allclose(q, ref["quantize_input"], atol=2e-5)
    z = q / np.linalg.norm(q, axis=-1, keepdims=True)
    # the official distance moves by at most 4 |dz| per token: far inside the smallest nearest-code margin
    assert 4 * np.abs(z - ref["z"]).max() < ref["margin"].min() / 10


def test_config_is_built_from_the_file(ckpt):
    cfg = config_from_checkpoint(ckpt["cfg"])
    assert (cfg.encoder_embed_dim, cfg.encoder_layers, cfg.quant_n, cfg.quant_dim, cfg.max_distance) == (
        32, 2, 12, 8, 64)


def test_expected_keys_are_exactly_the_official_ones(ckpt):
    shapes = expected_shapes(config_from_checkpoint(ckpt["cfg"]))
    assert set(shapes) == set(ckpt["model"])
    assert all(tuple(ckpt["model"][k].shape) == s for k, s in shapes.items())


def test_codebook_state_lands_in_the_quantiser(converted, ckpt):
    tok, info = converted
    sd = ckpt["model"]
    np.testing.assert_array_equal(tok.quantize.embedding[...], sd["quantize.embedding.weight"])
    np.testing.assert_array_equal(tok.quantize.embed_avg[...], sd["quantize.embedding.embed_avg"])
    np.testing.assert_array_equal(tok.quantize.cluster_size[...], sd["quantize.cluster_size"])
    assert tok.quantize.initted[...].shape == () and float(tok.quantize.initted[...]) == 1.0
    assert info["kmeans_counts_sum"] == pytest.approx(float(sd["quantize.embedding.cluster_size"].sum()))


def test_quantize_layer_weights_are_transposed_into_place(ckpt):
    sd = copy.deepcopy(ckpt["model"])
    cfg = config_from_checkpoint(ckpt["cfg"])
    sd["quantize_layer.2.weight"][3, 5] = 123.0  # out feature 3 from in feature 5
    sd["encoder.layers.1.fc1.weight"][7, 2] = -9.0
    v = param_values(sd, cfg)
    assert v[("quantize_layer", "fc2", "kernel")][5, 3] == 123.0
    assert v[("encoder", "layers", 1, "mlp", "fc1", "kernel")][2, 7] == -9.0


def test_missing_and_unexpected_keys_are_listed_in_one_error(ckpt):
    obj = copy.deepcopy(ckpt)
    del obj["model"]["quantize.cluster_size"]
    obj["model"]["quantize_layer.4.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(CheckpointError) as err:
        tokenizer_from_checkpoint(obj, source="t.pt")
    msg = str(err.value)
    assert "missing keys (1): quantize.cluster_size" in msg and "unexpected keys (1): quantize_layer.4.weight" in msg


def test_codebook_shape_mismatch_is_named(ckpt):
    obj = copy.deepcopy(ckpt)
    obj["cfg"]["quant_dim"] = 16
    with pytest.raises(CheckpointError, match=r"quantize.embedding.weight: file \(12, 8\) vs model \(12, 16\)"):
        tokenizer_from_checkpoint(obj)


def test_encoder_checkpoint_is_named_as_such():
    enc = read_torch_zip(FIXTURES / "beats_tiny.pt")
    with pytest.raises(CheckpointError, match="BEATs encoder checkpoint: convert it with `audiorep convert beats`"):
        tokenizer_from_checkpoint(enc)


def test_ssast_file_is_named_as_such():
    with pytest.raises(CheckpointError, match="SSAST checkpoint"):
        tokenizer_from_checkpoint({"module.v.pos_embed": np.zeros((1, 3, 4)), "module.mask_embed": np.zeros(1)})


def test_file_without_cfg_is_a_clear_error(ckpt):
    with pytest.raises(CheckpointError, match="no 'cfg'"):
        tokenizer_from_checkpoint({"model": ckpt["model"]})


def test_uninitialised_codebook_warns(ckpt):
    obj = copy.deepcopy(ckpt)
    obj["model"]["quantize.embedding.initted"] = np.zeros(1, np.float32)
    with pytest.warns(UserWarning, match="never initialised"):
        tokenizer_from_checkpoint(obj)


def test_released_architecture_expects_the_259_official_keys():
    shapes = expected_shapes(TOKENIZER_BASE)
    assert len(shapes) == 259  # the encoder's 250 + quantize_layer.{0,2}.{weight,bias} + 5 quantiser tensors
    assert shapes["quantize_layer.0.weight"] == (768, 768) and shapes["quantize_layer.2.weight"] == (256, 768)
    assert shapes["quantize.embedding.weight"] == shapes["quantize.embedding.embed_avg"] == (1024, 256)
    assert shapes["quantize.embedding.initted"] == (1,) and shapes["quantize.cluster_size"] == (1024,)
    assert shapes["encoder.layers.11.self_attn.relative_attention_bias.weight"] == (320, 12)


def test_tokenizer_dir_loads_and_labels_like_the_reference(tok_dir, bundle, ref):
    doc = json.loads((tok_dir / "audiorep_tokenizer.json").read_text())
    assert doc["kind"] == "acoustic" and doc["codebook_size"] == 12 and doc["meta"]["official_keys"] == 59
    labels = bundle.labels(fixture_fbank(frames=int(ref["fbank_frames"])))
    np.testing.assert_array_equal(np.asarray(labels), ref["labels"])


def test_labels_from_audio_run_the_frontend_then_the_tokenizer(bundle, ref):
    t = np.arange(400 + 95 * 160) / 16000.0  # 96 fbank frames, the shape bundle.labels has compiled for
    audio = np.stack([0.3 * np.sin(2 * np.pi * 440.0 * t), 0.2 * np.sin(2 * np.pi * 1500.0 * t ** 1.3)])
    labels = np.asarray(bundle.labels_from_audio(audio.astype(np.float32)))
    feats = get_frontend("beats")(jnp.asarray(audio, jnp.float32))
    assert labels.shape == (2, 6 * 8) and feats.shape == (2, 96, 128)
    np.testing.assert_array_equal(labels, np.asarray(bundle.labels(feats)))


def test_labels_from_audio_too_short_says_how_long(bundle):
    with pytest.raises(ValueError, match="at least 2800 samples"):
        bundle.labels_from_audio(np.zeros((1, 1000), np.float32))


def test_save_refuses_an_existing_directory_without_overwrite(tok_dir, converted):
    tok, info = converted
    with pytest.raises(TokenizerDirError, match="overwrite=True"):
        save_tokenizer_dir(tok_dir, tok, config=info["config"], frontend=get_frontend("beats"))


def test_save_never_replaces_a_foreign_directory(tmp_path, converted):
    tok, info = converted
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(TokenizerDirError, match="not an audiorep tokenizer directory"):
        save_tokenizer_dir(tmp_path / "mine", tok, config=info["config"], frontend=get_frontend("beats"),
                           overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_save_refuses_a_config_that_does_not_describe_the_tokenizer(tmp_path, converted):
    tok, info = converted
    other = config_from_checkpoint({**read_torch_zip(TOKENIZER_PT)["cfg"], "quant_n": 16})
    with pytest.raises(TokenizerDirError, match="do not match config"):
        save_tokenizer_dir(tmp_path / "t", tok, config=other, frontend=get_frontend("beats"))
    assert not (tmp_path / "t").exists()


def test_loading_a_model_directory_names_it_an_encoder(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "audiorep_model.json").write_text("{}")
    with pytest.raises(TokenizerDirError, match="model directory \\(an encoder\\), not a tokenizer"):
        load_tokenizer_dir(tmp_path / "m")


def test_loading_a_pt_file_says_convert_it_first():
    with pytest.raises(TokenizerDirError, match="audiorep convert beats-tokenizer"):
        load_tokenizer_dir(TOKENIZER_PT)


def test_altered_arrays_fail_the_checksum(tmp_path, tok_dir):
    import shutil

    copy_dir = tmp_path / "t"
    shutil.copytree(tok_dir, copy_dir)
    doc = json.loads((copy_dir / "audiorep_tokenizer.json").read_text())
    doc["params_sha256"] = "0" * 64
    (copy_dir / "audiorep_tokenizer.json").write_text(json.dumps(doc))
    with pytest.raises(TokenizerDirError, match="sha256"):
        load_tokenizer_dir(copy_dir)


def test_cli_convert_beats_tokenizer_and_force(tmp_path, capsys):
    from audiorep.cli import main

    out = tmp_path / "tok"
    assert main(["convert", "beats-tokenizer", str(TOKENIZER_PT), str(out), "--reader", "builtin"]) == 0
    assert "tokenizer directory" in capsys.readouterr().out and (out / "audiorep_tokenizer.json").is_file()
    assert main(["convert", "beats-tokenizer", str(TOKENIZER_PT), str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--force" in err
    assert main(["convert", "beats-tokenizer", str(TOKENIZER_PT), str(out), "--force", "--reader", "builtin"]) == 0


def test_cli_beats_tokenizer_on_an_encoder_file_is_one_line(tmp_path, capsys):
    from audiorep.cli import main

    assert main(["convert", "beats-tokenizer", str(FIXTURES / "beats_tiny.pt"), str(tmp_path / "t")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "BEATs encoder checkpoint" in err and "audiorep convert beats`" in err
    assert not (tmp_path / "t").exists()


def test_cli_beats_encoder_on_a_tokenizer_file_names_the_tokenizer_converter(tmp_path, capsys):
    from audiorep.cli import main

    assert main(["convert", "beats", str(TOKENIZER_PT), str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "audiorep convert beats-tokenizer" in err


def test_cli_missing_key_is_one_line_naming_the_key(tmp_path, capsys, monkeypatch, ckpt):
    from audiorep.cli import main
    from audiorep.models.convert import beats_tokenizer

    broken = copy.deepcopy(ckpt)
    del broken["model"]["quantize_layer.2.bias"]
    monkeypatch.setattr(beats_tokenizer.common, "load_checkpoint", lambda path, reader: broken)
    assert main(["convert", "beats-tokenizer", str(TOKENIZER_PT), str(tmp_path / "t")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing keys (1): quantize_layer.2.bias" in err
    assert not (tmp_path / "t").exists()


def test_loading_a_tokenizer_directory_as_a_model_names_it_a_tokenizer(tok_dir):
    from audiorep.models.model_dir import ModelDirError, load_model_dir

    with pytest.raises(ModelDirError, match="tokenizer directory, not a model"):
        load_model_dir(tok_dir)
