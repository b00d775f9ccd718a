"""The DeiT trunk that SSAST/AST and PaSST share (timm 0.4.5 `VisionTransformer` / `DistilledVisionTransformer`).

Both families project spectrogram patches with a conv, add their own positional embeddings (that part differs:
one table fitted per grid in SSAST, separable time/frequency tables in PaSST), then run the same trunk: keep
(patchout) the chosen grid indices, prepend the cls (+ dist) tokens with their positions, dropout, pre-LN
blocks, final norm. This module holds that trunk (`DeiTEncoder.encode_grid`), its shape (`DeiTConfig`, which
both families' configs extend), its construction (`conv_patch_embed`, `deit_blocks`) and the fine-tuning head, so
the two encoders only differ where the models do.
Parameter names and the order of initialisation are the official ones (timm attribute names), so checkpoints
convert unchanged and seeded initialisation draws the same values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from audiorep.models.layers import (
    EncoderOutput,
    JsonConfig,
    LayerNorm,
    Linear,
    PatchEmbed2d,
    TransformerBlock,
    check_padding_mask,
    real_time_patches,
    torch_linear_init,
    trunc_normal_02,
)


@dataclasses.dataclass(frozen=True)
class DeiTConfig(JsonConfig):
    """The trunk's shape: the fields `ASTConfig` and `PaSSTConfig` inherit (and list first), documented here once.

    Attributes:
      dim / depth / num_heads / mlp_ratio / qkv_bias: the ViT (DeiT-B, SSAST-Base and PaSST-S: 768 / 12 / 12 / 4 /
        True).
      eps: LayerNorm eps inside the transformer (timm DeiT: 1e-6).
      drop / attn_drop / drop_path: dropout after pos-embed/proj/MLP, on attention weights, stochastic depth
        (linearly increasing to drop_path over the depth, as timm).
    """

    dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    eps: float = 1e-6
    drop: float = 0.0
    attn_drop: float = 0.0
    drop_path: float = 0.0

    def __post_init__(self):
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} must be divisible by num_heads {self.num_heads}.")


def as_pair(v: Any) -> tuple[int, int]:
    """An int or a pair as (int, int): a square patch size, or (freq, time)."""
    if isinstance(v, int | np.integer):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


def conv_grid(mels: int, frames: int, patch: tuple[int, int], stride: tuple[int, int]) -> tuple[int, int]:
    """(F, T) patch grid of a (mels x frames) input under a conv with this patch and stride (remainders dropped)."""
    (pf, pt), (sf, st) = patch, stride
    if frames < pt:
        raise ValueError(f"{frames} frames is shorter than one patch ({pt} frames); pad the input.")
    return (mels - pf) // sf + 1, (frames - pt) // st + 1


def named_preset(presets: Mapping[str, DeiTConfig], name: str, model: str) -> DeiTConfig:
    """`presets[name]`, the `preset` of the configs that extend DeiTConfig; an unknown name is a ValueError that
    lists the known ones. model: the family as the user knows it ('SSAST', 'PaSST')."""
    if name not in presets:
        raise ValueError(f"unknown {model} preset {name!r}; choose one of {sorted(presets)}.")
    return presets[name]


class ClassifierHead(nnx.Module):
    """LayerNorm + Linear (SSAST `mlp_head`, PaSST `head`).  f32[B, dim] -> f32[B, classes]."""

    def __init__(self, dim: int, classes: int, *, eps: float = 1e-5, kernel_init: nnx.Initializer | None = None,
                 bias_init: nnx.Initializer | None = None, rngs: nnx.Rngs):
        self.norm = LayerNorm(dim, epsilon=eps, rngs=rngs)
        k, b = torch_linear_init(dim)  # PyTorch's nn.Linear default unless told otherwise
        self.linear = Linear(dim, classes, kernel_init=kernel_init or k, bias_init=bias_init or b, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear(self.norm(x))


def conv_patch_embed(dim: int, patch: tuple[int, int], stride: tuple[int, int], *, rngs: nnx.Rngs) -> PatchEmbed2d:
    """The patch conv (`patch_embed.proj`) with PyTorch's Conv2d default init (fan_in = one 1-channel patch)."""
    kernel, bias = torch_linear_init(patch[0] * patch[1])
    embed = PatchEmbed2d(dim, patch, stride, kernel_init=kernel, rngs=rngs)
    embed.proj.bias[...] = bias(rngs.params(), (dim,))
    return embed


def deit_blocks(cfg: DeiTConfig, *, rngs: nnx.Rngs) -> nnx.List:
    """`cfg.depth` pre-LN timm blocks, stochastic depth rising linearly to `cfg.drop_path` (as timm)."""
    d = cfg.dim
    rates = np.linspace(0.0, cfg.drop_path, cfg.depth) if cfg.depth else []
    return nnx.List([
        TransformerBlock(d, cfg.num_heads, int(d * cfg.mlp_ratio), pre_norm=True, eps=cfg.eps,
                         qkv_bias=cfg.qkv_bias, fused_qkv=True, drop=cfg.drop, attn_drop=cfg.attn_drop,
                         drop_path=float(r), kernel_init=trunc_normal_02, rngs=rngs)
        for r in rates
    ])


def check_features(features: jax.Array, mels: int, model: str, frontend: str) -> None:
    """One clear error for input that is not f32[batch, frames, `mels`] (`frontend` names the one to use)."""
    if features.ndim != 3:
        raise ValueError(f"features must be f32[batch, frames, mels], got shape {features.shape}.")
    if features.shape[2] != mels:
        raise ValueError(f"this {model} model expects {mels} mel bins, got features with {features.shape[2]} "
                         f"(shape {features.shape}); use {frontend} (frames x mels, time-major).")


class DeiTEncoder(nnx.Module):
    """Base of the SSAST/AST and PaSST encoders: the trunk after the positional embedding.

    A subclass builds `patch_embed` (`conv_patch_embed`), `cls_token` f32[1, 1, D], `dist_token` (or None),
    `pos_drop`, `blocks` (`deit_blocks`) and `norm`, and has a `cfg` with `dim`, `num_special` and `patch` /
    `stride` (freq, time).
    """

    def encode_grid(self, x: jax.Array, features: jax.Array, special_pos: jax.Array, *, grid: tuple[int, int],
                    padding_mask: jax.Array | None, keep: jax.Array | None, deterministic: bool,
                    return_hidden: bool) -> EncoderOutput:
        """Patch tokens with positions, frequency-major f32[B, F * T, D] -> EncoderOutput.

        features: the encoder's input f32[B, frames, mels] (only checked against `padding_mask`).
        special_pos: f32[1, C, D] positional embeddings of the cls (+ dist) tokens.
        padding_mask: bool[B, frames], True on padded frames: the tokens of time patches with a padded frame are
          ignored as attention keys (the cls/dist tokens never are), and the output's `valid` marks the real ones.
        keep: i32[B, K] grid indices kept (patchout), gathered before the special tokens are prepended.
        """
        cfg = self.cfg
        b = x.shape[0]
        valid = None
        if padding_mask is not None:
            real = real_time_patches(check_padding_mask(padding_mask, features), cfg.patch[1], cfg.stride[1], grid[1])
            valid = jnp.tile(real, (1, grid[0]))  # frequency-major: token n belongs to time patch n % T
        if keep is not None:
            if keep.ndim != 2 or keep.shape[0] != b:
                raise ValueError(f"keep must be i32[{b}, K] grid indices, got shape {keep.shape}.")
            x = jnp.take_along_axis(x, keep[..., None].astype(jnp.int32), axis=1)
            if valid is not None:
                valid = jnp.take_along_axis(valid, keep.astype(jnp.int32), axis=1)
        c = cfg.num_special
        special = [self.cls_token[...]] + ([self.dist_token[...]] if c == 2 else [])
        special = jnp.concatenate(special, axis=1) + special_pos
        x = jnp.concatenate([jnp.broadcast_to(special.astype(x.dtype), (b, c, cfg.dim)), x], axis=1)
        key_mask = None if valid is None else jnp.concatenate([jnp.ones((b, c), bool), valid], axis=1)
        x = self.pos_drop(x, deterministic=deterministic)
        hidden = [x[:, c:]]
        for blk in self.blocks:
            x = blk(x, key_mask=key_mask, deterministic=deterministic)
            hidden.append(x[:, c:])
        x = self.norm(x)
        return EncoderOutput(tokens=x[:, c:], cls=x[:, :c], hidden=tuple(hidden) if return_hidden else None,
                             grid=grid, time_major=False, keep=keep, valid=valid)
