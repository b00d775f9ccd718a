"""SSAST/AST converter: every official tensor lands in its parameter, configs come from the file, bad files fail
clearly (missing / unexpected / mis-shaped keys, another family), fine-tuned AST layouts, the written model dir."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from vit_placement import FIXTURES, assert_placed, fixture, fresh_fixture, marked, param_at, trunk_placement

from audiorep.models.convert.common import CheckpointError
from audiorep.models.convert.ssast import (
    config_from_state_dict,
    encoder_from_state_dict,
    expected_shapes,
)


def official() -> dict[str, np.ndarray]:
    """A fresh copy of the tiny SSAST patch checkpoint (official layout, `module.` keys)."""
    return fresh_fixture("ssast_patch_tiny.pt")


# Written from the official module layout, independently of the converter's own table:
# official key -> (our parameter, how the torch tensor is laid out in it).
def _placement(depth: int) -> dict[str, tuple[str, str]]:
    table = trunk_placement("v.", depth)
    table.update({"v.pos_embed": ("pos_embed", "same"), "mask_embed": ("mask_embed", "same")})
    for head in ("cpredlayer", "gpredlayer"):
        for torch_i, ours in (("0", "fc1"), ("2", "fc2")):
            table[f"{head}.{torch_i}.weight"] = (f"{head}.{ours}.kernel", "linear")
            table[f"{head}.{torch_i}.bias"] = (f"{head}.{ours}.bias", "same")
    return table


def test_every_official_tensor_lands_where_the_official_forward_uses_it():
    sd = marked(official())
    _, enc = encoder_from_state_dict(sd, num_heads=4)
    table = _placement(depth=2)
    used = {k.removeprefix("module.") for k in sd} - {"p_input_fdim", "p_input_tdim", "v.head.weight",
                                                          "v.head.bias", "v.head_dist.weight", "v.head_dist.bias"}
    assert used == set(table)
    assert_placed(enc, sd, table, key_prefix="module.")


def test_conv_weight_maps_frequency_to_kernel_rows():
    sd = official()
    w = np.zeros_like(sd["module.v.patch_embed.proj.weight"])
    w[3, 0, 5, 1] = 1.0  # output channel 3, frequency offset 5, time offset 1
    sd["module.v.patch_embed.proj.weight"] = w
    _, enc = encoder_from_state_dict(sd, num_heads=4)
    kernel = param_at(enc, "patch_embed.proj.kernel")
    assert kernel.shape == (8, 8, 1, 16) and kernel[5, 1, 0, 3] == 1.0 and kernel.sum() == 1.0


def test_config_is_read_from_the_file():
    cfg = config_from_state_dict({k.removeprefix("module."): v for k, v in official().items()}, num_heads=4)
    assert (cfg.dim, cfg.depth, cfg.num_heads, cfg.mlp_ratio) == (16, 2, 4, 4.0)
    assert (cfg.patch, cfg.stride, cfg.num_mel_bins, cfg.num_frames, cfg.pos_grid) == ((8, 8), (8, 8), 32, 48, (4, 6))
    assert (cfg.num_special, cfg.mask_embed, cfg.pretrain_heads, cfg.pred_dim, cfg.num_classes) == (2, True, True,
                                                                                                   64, 0)


def test_frame_checkpoint_gives_a_frame_model():
    cfg, _ = encoder_from_state_dict(fixture("ssast_frame_tiny.pt"), num_heads=4)
    assert cfg.patch == (32, 2) and cfg.pos_grid == (1, 10) and cfg.depth == 1


def test_released_base_layout_has_166_keys():
    from audiorep.models.ast import PRESETS

    for name in ("ssast-patch", "ssast-frame"):
        keys = expected_shapes(PRESETS[name], pretrain_file=True)
        assert len(keys) + 4 == 166  # + v.head.{weight,bias}, v.head_dist.{weight,bias}
        assert keys["v.pos_embed"] == (1, 514, 768)


def test_heads_default_to_deit_width_64_and_ask_otherwise():
    with pytest.raises(CheckpointError, match="num_heads"):
        encoder_from_state_dict(official())  # width 16 is not a multiple of 64


def test_missing_keys_are_listed():
    sd = official()
    del sd["module.v.blocks.1.mlp.fc2.bias"], sd["module.gpredlayer.2.weight"]
    with pytest.raises(CheckpointError, match=r"missing keys \(2\): gpredlayer.2.weight, v.blocks.1.mlp.fc2.bias"):
        encoder_from_state_dict(sd, num_heads=4)


def test_unexpected_keys_are_listed():
    sd = official()
    sd["module.v.blocks.0.attn.rel_bias"] = np.zeros(3, np.float32)
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): v.blocks.0.attn.rel_bias"):
        encoder_from_state_dict(sd, num_heads=4)


def test_shape_mismatches_are_listed():
    sd = official()
    sd["module.v.blocks.0.norm1.weight"] = np.ones(15, np.float32)
    with pytest.raises(CheckpointError, match=r"v.blocks.0.norm1.weight: file \(15,\) vs model \(16,\)"):
        encoder_from_state_dict(sd, num_heads=4)


def test_positional_grid_that_contradicts_p_input_is_an_error():
    sd = official()
    sd["module.p_input_tdim"] = np.array(64, np.int64)
    with pytest.raises(CheckpointError, match="24 patch positions.*4x8"):
        encoder_from_state_dict(sd, num_heads=4)


def test_passt_file_is_named_as_passt():
    with pytest.raises(CheckpointError, match="It is a PaSST checkpoint.*audiorep convert passt"):
        encoder_from_state_dict(fixture("passt_tiny.pt"), num_heads=4)


def _fine_tuned(sd: dict[str, np.ndarray], classes: int = 5) -> dict[str, np.ndarray]:
    """The tiny checkpoint re-laid out as a fine-tuned SSAST/AST file (mlp_head, no pretraining parts)."""
    drop = ("p_input", "mask_embed", "cpredlayer", "gpredlayer")
    out = {k: v for k, v in sd.items() if not any(d in k for d in drop)}
    rng = np.random.default_rng(0)
    out["module.mlp_head.0.weight"] = np.ones(16, np.float32)
    out["module.mlp_head.0.bias"] = np.zeros(16, np.float32)
    out["module.mlp_head.1.weight"] = rng.normal(size=(classes, 16)).astype(np.float32)
    out["module.mlp_head.1.bias"] = rng.normal(size=classes).astype(np.float32)
    return out


def test_fine_tuned_layout_asks_for_stride_and_frames():
    with pytest.raises(CheckpointError, match="--stride F T --frames N"):
        encoder_from_state_dict(_fine_tuned(official()), num_heads=4)


def test_fine_tuned_layout_converts_with_its_head():
    sd = _fine_tuned(official())
    cfg, enc = encoder_from_state_dict(sd, num_heads=4, stride=(8, 8), num_frames=48, num_mel_bins=32)
    assert cfg.num_classes == 5 and not cfg.mask_embed and not cfg.pretrain_heads
    np.testing.assert_array_equal(param_at(enc, "mlp_head.linear.kernel"), sd["module.mlp_head.1.weight"].T)
    logits = enc.logits(enc(jnp.zeros((1, 48, 32))))
    assert logits.shape == (1, 5)


def test_fine_tuned_layout_with_the_wrong_stride_is_an_error():
    with pytest.raises(CheckpointError, match="not the ones it was fine-tuned with"):
        encoder_from_state_dict(_fine_tuned(official()), num_heads=4, stride=(4, 4), num_frames=48,
                                num_mel_bins=32)


def test_converted_model_runs_and_drops_deit_heads():
    cfg, enc = encoder_from_state_dict(official(), num_heads=4)
    out = enc(jnp.zeros((1, 48, 32)))
    assert out.tokens.shape == (1, 24, 16) and np.isfinite(np.asarray(out.tokens)).all()
    assert enc.mlp_head is None  # v.head / v.head_dist (ImageNet DeiT leftovers) are not kept


def test_convert_writes_a_model_dir_that_loads_and_matches_torch(tmp_path):
    from audiorep.models.convert.ssast import convert
    from audiorep.models.model_dir import load_model_dir

    out = convert(FIXTURES / "ssast_patch_tiny.pt", tmp_path / "ssast", reader="builtin", num_heads=4)
    bundle = load_model_dir(out)
    assert bundle.family == "ast" and bundle.frontend.num_mel_bins == 32 and bundle.window_frames == 48
    assert bundle.meta["layout"] == "ssast-pretrain" and "v.head_dist.weight" in bundle.meta["dropped_keys"]
    with np.load(FIXTURES / "ssast_patch_tiny_ref.npz") as ref:
        got = bundle.encoder(jnp.asarray(ref["full/features"])).tokens
        np.testing.assert_allclose(np.asarray(got), ref["full/tokens"], atol=1e-5, rtol=0)


def test_convert_refuses_a_beats_file_before_writing_anything(tmp_path):
    from audiorep.models.convert.ssast import convert

    beats = FIXTURES / "beats_tiny.pt"
    if not beats.is_file():
        pytest.skip("BEATs fixture not present")
    with pytest.raises(CheckpointError, match="BEATs"):
        convert(beats, tmp_path / "out", reader="builtin")
    assert not (tmp_path / "out").exists()


def test_model_without_distillation_token_converts():
    sd = official()  # SSAST 'base384_nokd' has one cls token and no dist token
    del sd["module.v.dist_token"]
    sd["module.v.pos_embed"] = sd["module.v.pos_embed"][:, 1:]
    cfg, enc = encoder_from_state_dict(sd, num_heads=4)
    out = enc(jnp.zeros((1, 48, 32)))
    assert cfg.num_special == 1 and enc.dist_token is None and out.cls.shape == (1, 1, 16)
    np.testing.assert_array_equal(param_at(enc, "pos_embed"), sd["module.v.pos_embed"])
