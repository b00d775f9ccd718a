"""SSAST / AST encoder: a DeiT-distilled ViT over spectrogram patches (Gong et al., 2021/2022).

Reproduces YuanGongND/ssast `ASTModel` (timm 0.4.5 DeiT blocks) so the official checkpoints load
exactly (converter: `audiorep.models.convert.ssast`). Input is frontend output f32[B, frames, mels],
seen as a one-channel (freq x time) image: patches are 16x16 (patch-based SSAST) or 128x2
(frame-based SSAST), stride = patch in pretraining, smaller strides (overlap) for fine-tuning. Tokens
are ordered FREQUENCY-major (token n sits at f, t = divmod(n, T)), as the official conv output is
flattened. A cls and a distillation token are prepended, then one learned positional embedding over
[cls, dist, patch grid]; pre-LN blocks (LayerNorm eps 1e-6), final norm.

Positional embeddings are stored at the pretraining grid (`pos_grid`, e.g. 8 x 64 for 128 x 1024) and
fitted to any other grid on the fly with SSAST's fine-tuning rule: per axis, a smaller grid takes the
centre, a larger one is bilinearly interpolated (align_corners=False). ASTModel does this once when it
builds a fine-tuning model; here it happens for every input size, inside jit (shapes are static).

Masked spectrogram patch modelling: `mask` swaps masked patch embeddings for the learned `mask_embed`
after the patch projection and before the positional embedding (as `mpc`/`mpg` do); the SSAST heads
`cpredlayer` / `gpredlayer` (Linear, ReLU, Linear to the flattened raw patch) are kept so pretraining
can continue; `patches()` gives the raw-patch targets in `nn.Unfold` order. An optional fine-tuning
`mlp_head` (LayerNorm eps 1e-5 + Linear) gives logits from mean-pooled tokens or the cls/dist pair.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from audiorep.models import deit
from audiorep.models.layers import EncoderOutput, LayerNorm, SmallHead, fit_pos_embed, trunc_normal_02


@dataclasses.dataclass(frozen=True)
class ASTConfig(deit.DeiTConfig):
    """Shape of an SSAST/AST encoder: the DeiT trunk (`DeiTConfig`: dim, depth, num_heads, mlp_ratio, qkv_bias,
    eps, drop, attn_drop, drop_path; SSAST-Base is DeiT-B) and what is SSAST's own.

    Attributes:
      patch: (freq, time) patch size, SSAST's (fshape, tshape): (16, 16) or (128, 2).
      stride: (freq, time) patch stride (fstride, tstride); None = patch (no overlap, as in pretraining).
      num_mel_bins: mel bins of the input features (input_fdim).
      num_frames: frames the model was trained on (input_tdim); the embedding window of the model.
      pos_grid: (F, T) grid of the stored positional embedding (the pretraining grid, p_f_dim x p_t_dim).
      num_special: tokens before the patches: 2 (cls + dist, DeiT distilled) or 1 (cls).
      mask_embed: keep the learned mask embedding (needed for `mask`).
      pretrain_heads: keep SSAST's `cpredlayer` / `gpredlayer`.
      pred_dim: output size of the pretraining heads (the flattened raw patch; 256 for both SSAST models).
      num_classes: > 0 adds the fine-tuning `mlp_head` (LayerNorm + Linear).
      head_eps: LayerNorm eps of `mlp_head` (PyTorch default, 1e-5).
    """

    patch: tuple[int, int] = (16, 16)
    stride: tuple[int, int] | None = None
    num_mel_bins: int = 128
    num_frames: int = 1024
    pos_grid: tuple[int, int] = (8, 64)
    num_special: int = 2
    mask_embed: bool = True
    pretrain_heads: bool = True
    pred_dim: int = 256
    num_classes: int = 0
    head_eps: float = 1e-5

    def __post_init__(self):
        object.__setattr__(self, "patch", deit.as_pair(self.patch))
        object.__setattr__(self, "stride", deit.as_pair(self.stride if self.stride is not None else self.patch))
        object.__setattr__(self, "pos_grid", deit.as_pair(self.pos_grid))
        super().__post_init__()
        if self.num_special not in (1, 2):
            raise ValueError(f"num_special must be 1 (cls) or 2 (cls + dist), got {self.num_special}.")
        if self.patch[0] > self.num_mel_bins:
            raise ValueError(f"patch height {self.patch[0]} exceeds num_mel_bins {self.num_mel_bins}.")
        if self.pretrain_heads and self.pred_dim != self.patch[0] * self.patch[1]:
            raise ValueError(f"pred_dim {self.pred_dim} must equal the values of one {self.patch[0]}x{self.patch[1]} "
                             f"patch ({self.patch[0] * self.patch[1]}): the pretraining heads predict raw patches. "
                             f"Set pred_dim={self.patch[0] * self.patch[1]}.")

    @property
    def num_patches(self) -> int:
        """Patches of the stored positional-embedding grid."""
        return self.pos_grid[0] * self.pos_grid[1]

    def grid_for(self, frames: int) -> tuple[int, int]:
        """(F, T) patch grid of an input with `frames` frames (conv arithmetic, trailing frames dropped)."""
        return deit.conv_grid(self.num_mel_bins, frames, self.patch, self.stride)

    @classmethod
    def preset(cls, name: str) -> ASTConfig:
        """A named configuration: one of `PRESETS`."""
        return deit.named_preset(PRESETS, name, "SSAST")


PRESETS: dict[str, ASTConfig] = {
    # SSAST-Base-Patch-400: 16x16 patches on 128 x 1024 -> 8 x 64 = 512 patches.
    "ssast-patch": ASTConfig(),
    # SSAST-Base-Frame-400: 128x2 patches on 128 x 1024 -> 1 x 512 patches.
    "ssast-frame": ASTConfig(patch=(128, 2), pos_grid=(1, 512)),
    # CPU-sized variants with the same input features (128 mel bins), for tests and the demo.
    "ssast-patch-tiny": ASTConfig(dim=64, depth=2, num_heads=4, num_frames=256, pos_grid=(8, 16)),
    "ssast-frame-tiny": ASTConfig(dim=64, depth=2, num_heads=4, patch=(128, 2), num_frames=256, pos_grid=(1, 128),
                                  pred_dim=256),
}


def unfold_patches(features: jax.Array, patch: tuple[int, int], stride: tuple[int, int]) -> jax.Array:
    """Raw spectrogram patches in `torch.nn.Unfold` order (SSAST's reconstruction targets).

    f32[B, frames, mels] -> f32[B, F * T, pf * pt]: patches frequency-major, each patch flattened
    frequency-major (entry i * pt + j = mel f*sf + i, frame t*st + j).
    """
    (pf, pt), (sf, st) = deit.as_pair(patch), deit.as_pair(stride)
    _, frames, mels = features.shape
    nf, nt = deit.conv_grid(mels, frames, (pf, pt), (sf, st))
    fi = (np.arange(nf)[:, None] * sf + np.arange(pf)[None, :])  # [F, pf]
    tj = (np.arange(nt)[:, None] * st + np.arange(pt)[None, :])  # [T, pt]
    x = features[:, tj[None, :, None, :], fi[:, None, :, None]]  # [B, F, T, pf, pt]
    return x.reshape(features.shape[0], nf * nt, pf * pt)


class ASTEncoder(deit.DeiTEncoder):
    """SSAST/AST encoder.  f32[B, frames, mels] -> EncoderOutput (tokens frequency-major, cls = [cls, dist]).

    Parameters mirror the official names: `patch_embed.proj`, `cls_token`, `dist_token`, `pos_embed`
    f32[1, num_special + Fp*Tp, dim], `blocks[i].{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}`,
    `norm`, and optionally `mask_embed` f32[1, 1, dim], `cpredlayer`, `gpredlayer`, `mlp_head`.
    """

    def __init__(self, cfg: ASTConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d = cfg.dim
        self.patch_embed = deit.conv_patch_embed(d, cfg.patch, cfg.stride, rngs=rngs)
        self.cls_token = nnx.Param(trunc_normal_02(rngs.params(), (1, 1, d)))
        self.dist_token = nnx.Param(trunc_normal_02(rngs.params(), (1, 1, d))) if cfg.num_special == 2 else None
        self.pos_embed = nnx.Param(trunc_normal_02(rngs.params(), (1, cfg.num_special + cfg.num_patches, d)))
        self.pos_drop = nnx.Dropout(cfg.drop, rngs=rngs)
        self.blocks = deit.deit_blocks(cfg, rngs=rngs)
        self.norm = LayerNorm(d, epsilon=cfg.eps, rngs=rngs)
        # xavier_normal on a (1, 1, dim) tensor: fan_in = fan_out = dim.
        self.mask_embed = (nnx.Param(jax.random.normal(rngs.params(), (1, 1, d)) * np.sqrt(1.0 / d))
                           if cfg.mask_embed else None)
        # SSAST's pretext heads: Linear(dim, dim) -> ReLU -> Linear(dim, pred_dim).
        self.cpredlayer = SmallHead(d, cfg.pred_dim, act=jax.nn.relu, rngs=rngs) if cfg.pretrain_heads else None
        self.gpredlayer = SmallHead(d, cfg.pred_dim, act=jax.nn.relu, rngs=rngs) if cfg.pretrain_heads else None
        self.mlp_head = (deit.ClassifierHead(d, cfg.num_classes, eps=cfg.head_eps, rngs=rngs) if cfg.num_classes
                         else None)

    # ------------------------------------------------------------------------------------------ helpers
    def grid_for(self, frames: int) -> tuple[int, int]:
        """(F, T) patch grid for an input of `frames` frames."""
        return self.cfg.grid_for(frames)

    def patch_pos_embed(self, grid: tuple[int, int], window: tuple[int, int] | None = None) -> jax.Array:
        """Positional embeddings of the patch tokens for `grid`.  -> f32[F * T, dim].

        window: None fits the stored grid to `grid` by the SSAST rule (per axis: centre crop or interpolation).
          A (F, T_w) grid with T_w >= T fits the stored grid to the window instead and gives `grid` its first T
          time columns: the input is the start of that window, so its positions do not depend on its length.
        """
        c, (pf, pt) = self.cfg.num_special, self.cfg.pos_grid
        pe = self.pos_embed[...][0, c:].reshape(pf, pt, self.cfg.dim)
        if window is None:
            pe = fit_pos_embed(pe, grid, axes=(0, 1), align="center")
        else:
            if window[0] != grid[0] or window[1] < grid[1]:
                raise ValueError(f"a {grid[0]}x{grid[1]} patch grid does not start a {window[0]}x{window[1]} window.")
            pe = fit_pos_embed(pe, window, axes=(0, 1), align="center")[:, : grid[1]]
        return pe.reshape(grid[0] * grid[1], self.cfg.dim)

    def patches(self, features: jax.Array) -> jax.Array:
        """Raw patches (SSAST reconstruction targets).  f32[B, frames, mels] -> f32[B, N, pf * pt]."""
        return unfold_patches(features, self.cfg.patch, self.cfg.stride)

    def logits(self, out: EncoderOutput, pooling: str = "mean") -> jax.Array:
        """Fine-tuning head: 'mean' over patch tokens (SSAST ft_avgtok) or 'cls' (ft_cls: mean of cls and dist).

        EncoderOutput -> f32[B, num_classes].
        """
        if self.mlp_head is None:
            raise ValueError("this encoder has no mlp_head; build it with ASTConfig(num_classes=K).")
        if pooling == "mean":
            x = out.tokens.mean(axis=1)
        elif pooling == "cls":
            x = out.cls.mean(axis=1)
        else:
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}.")
        return self.mlp_head(x)

    # ------------------------------------------------------------------------------------------ forward
    def __call__(self, features: jax.Array, *, mask: jax.Array | None = None, keep: jax.Array | None = None,
                 padding_mask: jax.Array | None = None, window_frames: int | None = None,
                 deterministic: bool = True, return_hidden: bool = False) -> EncoderOutput:
        """Encode features.  f32[B, frames, mels] -> EncoderOutput.

        mask: bool[B, N] (N = F * T, frequency-major); True patches are replaced by `mask_embed` before the
          positional embedding (the encoder still sees all N tokens).
        keep: i32[B, K] grid indices kept after the positional embedding (the encoder sees K tokens).
        padding_mask: bool[B, frames], True on padded frames. The tokens of time patches with a padded frame are
          ignored as attention keys (the cls/dist tokens never are), and the output's `valid` marks the real ones.
        window_frames: static; the input is the start of a window of this many frames (>= frames): positional
          embeddings are fitted to the window's grid and the input takes its first time columns, so a clip's
          tokens do not depend on how far it was padded. None: fitted to the input's own grid (SSAST's rule).
        """
        cfg = self.cfg
        deit.check_features(features, cfg.num_mel_bins, "SSAST", "the matching frontend")
        b, frames, _ = features.shape
        grid = cfg.grid_for(frames)
        n = grid[0] * grid[1]
        x = self.patch_embed(features.transpose(0, 2, 1))  # [B, F, T, D]: freq is the image height
        x = x.reshape(b, n, cfg.dim)
        if mask is not None:
            if self.mask_embed is None:
                raise ValueError("this SSAST model was built without a mask embedding (mask_embed=False); "
                                 "rebuild it with mask_embed=True or drop `mask`.")
            if mask.shape != (b, n):
                raise ValueError(f"mask must be bool[{b}, {n}] for a {grid[0]}x{grid[1]} grid, got {mask.shape}.")
            x = jnp.where(mask[..., None], self.mask_embed[...].astype(x.dtype), x)
        window = None if window_frames is None else cfg.grid_for(max(int(window_frames), frames))
        x = x + self.patch_pos_embed(grid, window).astype(x.dtype)
        return self.encode_grid(x, features, self.pos_embed[...][:, : cfg.num_special], grid=grid,
                                padding_mask=padding_mask, keep=keep, deterministic=deterministic,
                                return_hidden=return_hidden)
