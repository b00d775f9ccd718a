"""Official PaSST checkpoints -> audiorep model directory (`audiorep convert passt CKPT OUT_DIR`).

The released files (kkoutini/PaSST GitHub releases, e.g. passt-s-f128-p16-s10-ap.476-swa.pt) are plain
state dicts of `models/passt.py::PaSST`: no `module.` prefix, no wrapper; 159 keys for PaSST-S. The
config is read from the tensors: width from `cls_token`, depth from `blocks.*`, MLP size from `fc1`,
patch size from `patch_embed.proj.weight`, positional grid from `freq_new_pos_embed` (1, D, F, 1) and
`time_new_pos_embed` (1, D, 1, T), classes from `head.1`, cls+dist from `dist_token`. Not in the file:
the patch stride (default 10, the flagship models; the s12/s14/s16 releases need `stride`), heads
(default width / 64) and the mel bins (default 128); the stride is checked against the frequency grid.

`head_dist.*` (the DeiT distillation classifier) is in every release but never used by PaSST's forward
(logits = head((cls + dist) / 2)): it is checked for shape and dropped. Every other key must be present
with the expected shape; a file of another family (BEATs `cfg` + `model`, SSAST `module.v.*`) is named.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from audiorep.audio.frontends import PASST_MEL, PasstMel
from audiorep.models.convert import common
from audiorep.models.convert.common import CheckpointError
from audiorep.models.passt import PRESETS, PaSSTConfig, PaSSTEncoder

FAMILY = "passt"
IGNORED = ("head_dist.weight", "head_dist.bias")


def default_frames(patch: tuple[int, int], stride: tuple[int, int], pos_grid: tuple[int, int]) -> int:
    """Input window in frames: 1000 (10 s at 32 kHz, hop 320) for the PaSST-S geometry, else the longest input
    whose time grid the time embeddings still cover (nothing cut)."""
    ref = PRESETS["passt-s"]
    if (patch, stride, pos_grid) == (ref.patch, ref.stride, ref.pos_grid):
        return ref.num_frames
    return (pos_grid[1] - 1) * stride[1] + patch[1] + stride[1] - 1


def config_from_state_dict(sd: Mapping[str, np.ndarray], *, source: str = "checkpoint",
                           num_heads: int | None = None, stride: tuple[int, int] | int | None = None,
                           num_mel_bins: int = 128, num_frames: int | None = None) -> PaSSTConfig:
    """Build the PaSSTConfig an official state dict describes (see the module docstring for the defaults)."""
    for key in ("patch_embed.proj.weight", "cls_token", "freq_new_pos_embed", "time_new_pos_embed"):
        if key not in sd:
            raise CheckpointError(f"{source} has no {key}; it is not a PaSST checkpoint "
                                  f"(first keys: {sorted(sd)[:6]}).")
    vit = common.vit_layout(sd, "", source=source)
    patch = vit.patch
    fpe, tpe = np.shape(sd["freq_new_pos_embed"]), np.shape(sd["time_new_pos_embed"])
    if len(fpe) != 4 or fpe[3] != 1 or len(tpe) != 4 or tpe[2] != 1:
        raise CheckpointError(f"{source}: freq_new_pos_embed {fpe} / time_new_pos_embed {tpe} should be "
                              "(1, D, F, 1) / (1, D, 1, T).")
    pos_grid = (int(fpe[2]), int(tpe[3]))
    if stride is None:
        stride = (10, 10)
    stride = (int(stride), int(stride)) if isinstance(stride, int | np.integer) else tuple(int(s) for s in stride)
    f = (num_mel_bins - patch[0]) // stride[0] + 1
    if f != pos_grid[0]:
        raise CheckpointError(f"{source}: freq_new_pos_embed has {pos_grid[0]} frequency positions, but "
                              f"{num_mel_bins} mel bins with patch {patch[0]} and stride {stride[0]} give {f}. "
                              "Pass the stride the model was trained with (--stride F T; e.g. 16 16 for the *-s16-* "
                              "releases) and the number of mel bins.")
    if num_frames is None:
        num_frames = default_frames(patch, stride, pos_grid)
    num_heads = common.vit_num_heads(vit.dim, num_heads, source=source)
    num_classes = int(np.shape(sd["head.1.weight"])[0]) if "head.1.weight" in sd else 0
    return PaSSTConfig(dim=vit.dim, depth=vit.depth, num_heads=num_heads, mlp_ratio=vit.mlp_ratio,
                       qkv_bias=vit.qkv_bias, patch=patch, stride=stride,
                       num_mel_bins=num_mel_bins, num_frames=int(num_frames), pos_grid=pos_grid,
                       distilled="dist_token" in sd, num_classes=num_classes)


def expected_shapes(cfg: PaSSTConfig) -> dict[str, tuple[int, ...]]:
    """{official key: shape} for a config (159 keys for PaSST-S, head_dist not included)."""
    d, (f, t) = cfg.dim, cfg.pos_grid
    e = common.deit_trunk_shapes("", cfg)
    e.update({"new_pos_embed": (1, cfg.num_special, d), "freq_new_pos_embed": (1, d, f, 1),
              "time_new_pos_embed": (1, d, 1, t)})
    if cfg.num_classes:
        e.update(common.classifier_head_shapes("head", d, cfg.num_classes))
    return e


def param_values(sd: Mapping[str, np.ndarray], cfg: PaSSTConfig) -> dict[tuple, np.ndarray]:
    """{PaSSTEncoder parameter path: array} from an official state dict (torch layouts transposed to flax)."""
    out = common.deit_trunk_params(sd, "", cfg)
    for k in ("new_pos_embed", "freq_new_pos_embed", "time_new_pos_embed"):
        out[(k,)] = np.asarray(sd[k], dtype=np.float32)
    if cfg.num_classes:
        out.update(common.classifier_head_params(sd, "head", "head"))
    return out


def encoder_from_state_dict(state: Mapping[str, np.ndarray], *, source: str = "checkpoint",
                            **options) -> tuple[PaSSTConfig, PaSSTEncoder]:
    """Official PaSST state dict -> (config, encoder holding its weights).

    options: num_heads, stride, num_mel_bins, num_frames (see `config_from_state_dict`).
    """
    fam = common.detect_family(state.keys())
    if fam != "passt":
        raise CheckpointError(f"{source} is not a PaSST checkpoint. {common.describe_family(fam)}")
    if any(k.startswith("module.") for k in state):
        raise CheckpointError(f"{source}: keys start with `module.` (a DataParallel wrapper); official PaSST "
                              "files are plain state dicts. Strip the prefix (or check the file is PaSST).")
    cfg = config_from_state_dict(state, source=source, **options)
    return common.checked_encoder(state, cfg, expected_shapes(cfg), ignored=IGNORED, encoder_class=PaSSTEncoder,
                                  param_values=param_values, family="PaSST", source=source)


def frontend_for(cfg: PaSSTConfig):
    """The PaSST mel frontend, with the model's number of mel bins."""
    return PasstMel(PASST_MEL.replace(num_mel_bins=cfg.num_mel_bins), name="passt")


def convert(ckpt: str | os.PathLike, out_dir: str | os.PathLike, *, force: bool = False, reader: str = "auto",
            num_heads: int | None = None, stride: tuple[int, int] | int | None = None, num_frames: int | None = None,
            num_mel_bins: int = 128, pooling: str = "cls") -> Path:
    """Convert an official PaSST checkpoint into an audiorep model directory at `out_dir`.

    Options not stored in the file: num_heads (default width / 64), stride (default 10), num_frames (the
    embedding window; default: the frames the time embeddings cover), num_mel_bins (128). Default scene
    pooling 'cls' = the mean of cls and dist, the official PaSST embedding. The classifier head is kept
    inside the encoder (`PaSSTEncoder.logits`). Returns the directory. Raises
    CheckpointError when the file is unreadable, of another family, or does not fit (every missing,
    unexpected and mis-shaped key listed).
    """
    return common.convert_state_dict_checkpoint(
        ckpt, out_dir, family=FAMILY, label="PaSST", encoder_from_state_dict=encoder_from_state_dict,
        frontend_for=frontend_for, extra_meta=lambda sd: {"dropped_keys": [k for k in IGNORED if k in sd]},
        pooling=pooling, force=force, reader=reader, num_heads=num_heads, stride=stride, num_frames=num_frames,
        num_mel_bins=num_mel_bins)
