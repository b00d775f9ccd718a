"""Official SSAST / AST checkpoints -> audiorep model directory (`audiorep convert ssast CKPT OUT_DIR`).

Two official layouts, both saved through `torch.nn.DataParallel` (every key starts with `module.`):

* SSAST pretraining (YuanGongND/ssast, `pretrain_stage=True`; the released SSAST-Base-Patch/Frame-400
  files): `v.*` (the timm DeiT: patch_embed.proj, cls_token, dist_token, pos_embed over the pretraining
  grid, blocks, norm), `mask_embed`, the pretext heads `cpredlayer.{0,2}` / `gpredlayer.{0,2}` (kept, so
  pretraining can continue), and two int64 scalars `p_input_fdim` / `p_input_tdim` = the pretraining
  input (128 x 1024). The config is read from the file: patch shape from `v.patch_embed.proj.weight`,
  positional grid from `p_input_*` (stride = patch in pretraining), width / depth / MLP size / pretext
  output size from the tensors, heads = width / 64 (DeiT; override with `num_heads`). `stride` may be
  set smaller than the patch for fine-tuning-style overlap: the positional embedding is then fitted to
  the new grid at run time (SSAST's cut / bilinear rule).
* fine-tuned SSAST and AST models (YuanGongND/ast AudioSet checkpoints, SSAST after fine-tuning): `v.*` and
  `mlp_head.{0,1}` (LayerNorm + Linear), no `p_input_*`. The stride and input length are not in the file:
  give `stride` and `num_frames` as the model was fine-tuned (AST AudioSet: stride (10, 10), 1024
  frames); the positional grid they imply must match `v.pos_embed`.

`v.head.*` / `v.head_dist.*` (the ImageNet DeiT classifiers SSAST never uses) are checked for shape
consistency only and dropped. Every other key must be present with the expected shape; a file of another
family (BEATs `cfg` + `model`, PaSST's separable positional embeddings) is named as such.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from audiorep.audio.frontends import SSAST_FBANK, KaldiFbank
from audiorep.models.ast import ASTConfig, ASTEncoder
from audiorep.models.convert import common
from audiorep.models.convert.common import CheckpointError

FAMILY = "ast"
IGNORED = ("v.head.weight", "v.head.bias", "v.head_dist.weight", "v.head_dist.bias")


def _check_family(sd: Mapping[str, np.ndarray], source: str) -> None:
    fam = common.detect_family(sd.keys())
    if fam not in ("ssast", "ast"):
        raise CheckpointError(f"{source} is not an SSAST/AST checkpoint. {common.describe_family(fam)}")


def _scalar(sd: Mapping[str, np.ndarray], key: str, source: str) -> int:
    v = np.asarray(sd[key])
    if v.size != 1 or not np.issubdtype(v.dtype, np.integer):
        raise CheckpointError(f"{source}: {key} should be one int64 (the pretraining input size), got {v.dtype} "
                              f"{v.shape}.")
    return int(v.reshape(()))


def config_from_state_dict(sd: Mapping[str, np.ndarray], *, source: str = "checkpoint",
                           num_heads: int | None = None, stride: tuple[int, int] | None = None,
                           num_frames: int | None = None, num_mel_bins: int | None = None) -> ASTConfig:
    """Build the ASTConfig an official state dict (prefix `module.` already stripped) describes.

    num_heads: attention heads (default width / 64, as every DeiT). stride: (freq, time) patch stride
    (default: the patch for SSAST pretraining files; required for fine-tuned files). num_frames /
    num_mel_bins: the input size (read from p_input_* when present; fine-tuned files need num_frames).
    """
    for key in ("v.patch_embed.proj.weight", "v.cls_token", "v.pos_embed"):
        if key not in sd:
            raise CheckpointError(f"{source} has no {key}; it is not an SSAST/AST checkpoint "
                                  f"(first keys: {sorted(sd)[:6]}).")
    vit = common.vit_layout(sd, "v.", source=source)
    dim, patch = vit.dim, vit.patch
    num_heads = common.vit_num_heads(dim, num_heads, source=source)
    num_special = 2 if "v.dist_token" in sd else 1
    pretrain = "p_input_tdim" in sd
    if pretrain:
        fdim = _scalar(sd, "p_input_fdim", source)
        tdim = _scalar(sd, "p_input_tdim", source)
        if num_mel_bins is not None and num_mel_bins != fdim:
            raise CheckpointError(f"{source} was pretrained on {fdim} mel bins; num_mel_bins={num_mel_bins} "
                                  "cannot change that.")
        pos_grid = ((fdim - patch[0]) // patch[0] + 1, (tdim - patch[1]) // patch[1] + 1)
        num_frames = tdim if num_frames is None else num_frames
    else:
        fdim = 128 if num_mel_bins is None else num_mel_bins
        if stride is None or num_frames is None:
            raise CheckpointError(
                f"{source} is a fine-tuned SSAST/AST checkpoint (mlp_head, no p_input_fdim/p_input_tdim): the patch "
                "stride and input length it was fine-tuned with are not stored in it. Pass them: stride=(f, t) and "
                "num_frames=N (CLI: --stride F T --frames N; the AST AudioSet models use --stride 10 10 "
                "--frames 1024).")
        s = (int(stride[0]), int(stride[1]))
        pos_grid = ((fdim - patch[0]) // s[0] + 1, (int(num_frames) - patch[1]) // s[1] + 1)
    n_pos = int(np.shape(sd["v.pos_embed"])[1]) - num_special
    if n_pos != pos_grid[0] * pos_grid[1]:
        how = ("p_input_fdim/p_input_tdim" if pretrain else f"stride {tuple(stride)} and {num_frames} frames")
        raise CheckpointError(f"{source}: v.pos_embed holds {n_pos} patch positions, but {how} give a "
                              f"{pos_grid[0]}x{pos_grid[1]} = {pos_grid[0] * pos_grid[1]} grid; the file is "
                              "inconsistent" + ("." if pretrain else ", or the stride/frames given are not the "
                                                "ones it was fine-tuned with."))
    has_mask = "mask_embed" in sd
    has_pred = "cpredlayer.2.weight" in sd
    pred_dim = int(np.shape(sd["cpredlayer.2.weight"])[0]) if has_pred else 256
    num_classes = int(np.shape(sd["mlp_head.1.weight"])[0]) if "mlp_head.1.weight" in sd else 0
    return ASTConfig(dim=dim, depth=vit.depth, num_heads=num_heads, mlp_ratio=vit.mlp_ratio,
                     qkv_bias=vit.qkv_bias, patch=patch,
                     stride=tuple(stride) if stride is not None else None, num_mel_bins=fdim,
                     num_frames=int(num_frames), pos_grid=pos_grid, num_special=num_special,
                     mask_embed=has_mask, pretrain_heads=has_pred, pred_dim=pred_dim, num_classes=num_classes)


def expected_shapes(cfg: ASTConfig, *, pretrain_file: bool) -> dict[str, tuple[int, ...]]:
    """{official key (no `module.`): shape} for a config; pretrain_file adds p_input_fdim / p_input_tdim."""
    d = cfg.dim
    e = common.deit_trunk_shapes("v.", cfg)
    e["v.pos_embed"] = (1, cfg.num_special + cfg.num_patches, d)
    if cfg.mask_embed:
        e["mask_embed"] = (1, 1, d)
    if cfg.pretrain_heads:
        for head in ("cpredlayer", "gpredlayer"):
            e.update({f"{head}.0.weight": (d, d), f"{head}.0.bias": (d,), f"{head}.2.weight": (cfg.pred_dim, d),
                      f"{head}.2.bias": (cfg.pred_dim,)})
    if cfg.num_classes:
        e.update(common.classifier_head_shapes("mlp_head", d, cfg.num_classes))
    if pretrain_file:
        e["p_input_fdim"] = ()
        e["p_input_tdim"] = ()
    return e


def param_values(sd: Mapping[str, np.ndarray], cfg: ASTConfig) -> dict[tuple, np.ndarray]:
    """{ASTEncoder parameter path: array} from an official state dict (torch layouts transposed to flax)."""
    f32 = lambda k: np.asarray(sd[k], dtype=np.float32)  # noqa: E731
    out = common.deit_trunk_params(sd, "v.", cfg)
    out[("pos_embed",)] = f32("v.pos_embed")
    linear = lambda path, name: out.update(common.vit_linear(sd, path, name))  # noqa: E731
    if cfg.mask_embed:
        out[("mask_embed",)] = f32("mask_embed")
    if cfg.pretrain_heads:
        for head in ("cpredlayer", "gpredlayer"):
            linear((head, "fc1"), f"{head}.0")
            linear((head, "fc2"), f"{head}.2")
    if cfg.num_classes:
        out.update(common.classifier_head_params(sd, "mlp_head", "mlp_head"))
    return out


def encoder_from_state_dict(state: Mapping[str, np.ndarray], *, source: str = "checkpoint",
                            **options) -> tuple[ASTConfig, ASTEncoder]:
    """Official SSAST/AST state dict (with or without `module.`) -> (config, encoder holding its weights).

    options: num_heads, stride, num_frames, num_mel_bins (see `config_from_state_dict`).
    """
    sd = common.strip_prefix(state, "module.")
    _check_family(sd, source)
    cfg = config_from_state_dict(sd, source=source, **options)
    pretrain_file = "p_input_tdim" in sd
    expected = expected_shapes(cfg, pretrain_file=pretrain_file)
    return common.checked_encoder(sd, cfg, expected, ignored=IGNORED, encoder_class=ASTEncoder,
                                  param_values=param_values, family="SSAST/AST", source=source)


def frontend_for(cfg: ASTConfig):
    """The SSAST Kaldi fbank frontend, with the model's number of mel bins."""
    return KaldiFbank(SSAST_FBANK.replace(num_mel_bins=cfg.num_mel_bins), name="ssast")


def provenance(sd: Mapping[str, np.ndarray]) -> dict:
    """What a converted model directory records of its SSAST/AST file: its layout and the keys left out."""
    layout = "ssast-pretrain" if any(k.endswith("p_input_tdim") for k in sd) else "ast-finetuned"
    return {"layout": layout, "dropped_keys": [k for k in IGNORED if "module." + k in sd or k in sd]}


def convert(ckpt: str | os.PathLike, out_dir: str | os.PathLike, *, force: bool = False, reader: str = "auto",
            num_heads: int | None = None, stride: tuple[int, int] | None = None, num_frames: int | None = None,
            num_mel_bins: int | None = None, pooling: str = "mean") -> Path:
    """Convert an official SSAST/AST checkpoint into an audiorep model directory at `out_dir`.

    Options (see `config_from_state_dict`): num_heads (default width / 64), stride (fine-tuning overlap for
    pretraining files; required for fine-tuned files), num_frames (embedding window; default p_input_tdim;
    required for fine-tuned files), num_mel_bins. Default scene pooling 'mean' over patch tokens (SSAST's
    ft_avgtok). Returns the directory. Raises CheckpointError when the file is unreadable, of another
    family, or does not fit the model its own tensors describe (every missing, unexpected and mis-shaped
    key listed).
    """
    return common.convert_state_dict_checkpoint(
        ckpt, out_dir, family=FAMILY, label="SSAST/AST", encoder_from_state_dict=encoder_from_state_dict,
        frontend_for=frontend_for, extra_meta=provenance, pooling=pooling, force=force, reader=reader,
        num_heads=num_heads, stride=stride, num_frames=num_frames, num_mel_bins=num_mel_bins)
