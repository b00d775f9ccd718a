r"""BEATs encoder (Chen et al., ICML 2023) in Flax NNX, numerically equal to microsoft/unilm `beats/`.

Input: normalised 128-bin Kaldi fbank, time-major f32[B, frames, 128] (the `beats` frontend's output; frames
that do not fill a 16-frame patch are dropped, as the official Conv2d does). Output: `EncoderOutput` with
8 x (frames // 16) patch tokens ordered **time-major** (token n = t * 8 + f), no cls token.

The pieces, in forward order (official attribute names in brackets):
  patch conv 16x16 without bias [patch_embedding] -> LayerNorm(512) [layer_norm] -> Linear 512->768
  [post_extract_proj] -> conv positional embedding [encoder.pos_conv]: Conv1d(768, 768, k=128, pad 64,
  groups 16) with weight norm over dim 2 (stored here as the (g, v) pair, so training keeps the
  reparametrisation), the last output frame dropped (SamePad), GELU, added to x -> LayerNorm
  [encoder.layer_norm] (post-LN models; pre-LN models apply it at the end instead) -> L post-LN layers with
  DeepNorm residual scale alpha = (2L)^(1/4), attention with T5 relative position buckets
  (num_buckets 320, max_distance 800 in the released checkpoints; one embedding shared by all layers) and
  the gated relative position bias (grep_linear Linear(head_dim, 8), grep_a) -> tokens.
The official attention's "alpha = 32" trick (q / 32, max-subtract, x 32) is mathematically neutral and is
not reproduced; logits are q k^T / sqrt(head_dim) + bias, softmax in float32.

`keep` (MAE-style, as in BEATs pretraining where the encoder sees only the unmasked patches): the official
pretraining code is not released, so this is our reading of it, chosen to leak nothing and keep positions
true. Dropped patches are zeroed before the conv positional embedding — exactly how the official encoder
treats padding (`x[padding_mask] = 0`) — the conv runs over the full grid, then only the kept tokens go on;
the relative position buckets use the kept tokens' original (time-major) indices, so distances are those of
the full sequence. With keep = all indices the result equals the full path. `mask` (a mask embedding,
SSAST-style) raises: BEATs has no mask embedding. Masked token pretraining (pretrain/objectives.py
`MaskedTokens`, configs/tiny_beats.py, configs/beats_iter.py) uses `keep`, `patches` (the raw 16x16 patches
in token order, the random-projection tokenizer's input) and `relative_position_bias` (shared with the label
predictor, which has its own bucket table).

A fine-tuned checkpoint (`predictor.*`, AudioSet 527 classes) gets `predictor`; `classify` gives the
official clip probabilities (per-token logits, mean over tokens, sigmoid).
"""

from __future__ import annotations

import dataclasses
import math
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
    gelu,
    grouped_conv1d,
    real_time_patches,
    relative_position_buckets,
)

LN_EPS = 1e-5  # torch.nn.LayerNorm default, used everywhere in BEATs
OFFICIAL_DEFAULTS = dict(input_patch_size=-1, layer_wise_gradient_decay_ratio=1.0, deep_norm=False, dropout=0.1,
                         attention_dropout=0.1, relative_position_embedding=False, max_distance=1280,
                         gru_rel_pos=False)
"""The official `BEATsConfig` class defaults where they differ from the released checkpoints' cfg (ours)."""


@dataclasses.dataclass(frozen=True)
class BEATsConfig(JsonConfig):
    """BEATs architecture; field names are the official `BEATsConfig` names (plus `num_mel_bins`).

    Defaults are the released checkpoints' cfg (iter3 / iter3+), not the official class defaults.
    """

    input_patch_size: int = 16
    embed_dim: int = 512
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = "gelu"
    layer_wise_gradient_decay_ratio: float = 0.6
    layer_norm_first: bool = False
    deep_norm: bool = True
    dropout: float = 0.0
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    encoder_layerdrop: float = 0.0
    dropout_input: float = 0.0
    conv_pos: int = 128
    conv_pos_groups: int = 16
    relative_position_embedding: bool = True
    num_buckets: int = 320
    max_distance: int = 800
    gru_rel_pos: bool = True
    finetuned_model: bool = False
    predictor_dropout: float = 0.1
    predictor_class: int = 527
    num_mel_bins: int = 128  # not in the official cfg: the fbank size (128 in every BEATs release)

    def __post_init__(self):
        if self.activation_fn != "gelu":
            raise ValueError(f"activation_fn={self.activation_fn!r}: only 'gelu' (every BEATs release) is "
                             f"supported.")
        if self.input_patch_size <= 0:
            raise ValueError(f"input_patch_size={self.input_patch_size}: give the patch size (16 in BEATs).")
        if self.deep_norm and self.layer_norm_first:
            raise ValueError("deep_norm and layer_norm_first exclude each other (as in the official code).")
        if self.encoder_embed_dim % self.encoder_attention_heads:
            raise ValueError(f"encoder_embed_dim {self.encoder_embed_dim} is not divisible by "
                             f"encoder_attention_heads {self.encoder_attention_heads}.")
        if self.encoder_embed_dim % self.conv_pos_groups:
            raise ValueError(f"encoder_embed_dim {self.encoder_embed_dim} is not divisible by conv_pos_groups "
                             f"{self.conv_pos_groups}.")
        if self.gru_rel_pos and self.encoder_embed_dim // self.encoder_attention_heads < 1:
            raise ValueError("gru_rel_pos needs head_dim >= 1.")
        if self.num_mel_bins < self.input_patch_size:
            raise ValueError(f"num_mel_bins {self.num_mel_bins} is smaller than one patch ({self.input_patch_size}).")

    @property
    def head_dim(self) -> int:
        return self.encoder_embed_dim // self.encoder_attention_heads

    @property
    def deep_norm_alpha(self) -> float:
        """Residual scale of the DeepNorm post-LN layers: (2L)^(1/4), else 1."""
        return math.pow(2 * self.encoder_layers, 0.25) if self.deep_norm else 1.0

    @property
    def deep_norm_beta(self) -> float:
        """DeepNorm init gain for v/out/fc1/fc2: (8L)^(-1/4)."""
        return math.pow(8 * self.encoder_layers, -0.25)

    # The generic names the pretraining code reads from every encoder config (ASTConfig has them as fields).
    @property
    def dim(self) -> int:
        """Token width (encoder_embed_dim)."""
        return self.encoder_embed_dim

    @property
    def num_heads(self) -> int:
        return self.encoder_attention_heads

    @property
    def depth(self) -> int:
        """Number of transformer layers (encoder_layers)."""
        return self.encoder_layers

    @property
    def patch_values(self) -> int:
        """Values in one 16x16 patch (the random-projection tokenizer's input size)."""
        return self.input_patch_size * self.input_patch_size

    def grid_for(self, frames: int) -> tuple[int, int]:
        """(F, T) patch grid for `frames` input frames: (mels // patch, frames // patch)."""
        p = self.input_patch_size
        return self.num_mel_bins // p, frames // p

    @classmethod
    def from_official(cls, cfg: dict[str, Any]) -> BEATsConfig:
        """From the `cfg` dict stored in an official checkpoint.

        Missing fields take the official `BEATsConfig` class defaults (as the official loader does); unknown
        fields are ignored with a warning, since the official model never reads them either.
        """
        return cls.from_official_cfg(cfg, official_defaults=OFFICIAL_DEFAULTS, what="BEATs", local=("num_mel_bins",))


BEATS_BASE = BEATsConfig()
"""The released checkpoints' architecture (BEATs_iter3 / iter3+, 90 M parameters)."""

BEATS_TINY = BEATsConfig(embed_dim=32, encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=128,
                         encoder_attention_heads=4, conv_pos=16, conv_pos_groups=4, num_buckets=32,
                         max_distance=64)
"""Same structure, tiny sizes, for CPU tests (about 0.2 M parameters)."""

PRESETS = {"beats": BEATS_BASE, "beats-tiny": BEATS_TINY, "base": BEATS_BASE, "tiny": BEATS_TINY}
"""Named configs: the registry names (`beats`, `beats-tiny`) and the short aliases `base` / `tiny`."""


# ------------------------------------------------------------------------------------------- pieces
def relative_position_bias(table: jax.Array, n: int, num_buckets: int, max_distance: int,
                           keep: jax.Array | None = None) -> jax.Array:
    """T5-bucketed relative position bias from a bucket table f32[buckets, H] over a sequence of n tokens.

    -> f32[1, H, n, n], or f32[B, H, K, K] for the kept token indices keep i32[B, K] (buckets of their original
    distances, key index - query index). Buckets come from an exact host-side table.
    """
    if keep is None:
        pos = np.arange(n)
        buckets = relative_position_buckets(pos[None, :] - pos[:, None], num_buckets, max_distance)
        return jnp.take(table, jnp.asarray(buckets), axis=0).transpose(2, 0, 1)[None]
    lut = jnp.asarray(relative_position_buckets(np.arange(-(n - 1), n), num_buckets, max_distance))
    rel = keep[:, None, :] - keep[:, :, None]  # key - query
    return jnp.take(table, lut[rel + (n - 1)], axis=0).transpose(0, 3, 1, 2)


def _grad_multiply(x: jax.Array, factor: float) -> jax.Array:
    """Identity forward; gradient scaled by `factor` (fairseq GradMultiply, layer-wise gradient decay)."""
    if factor == 1.0:
        return x
    return x * factor + jax.lax.stop_gradient(x * (1.0 - factor))


class WeightNormConv1d(nnx.Module):
    """BEATs' conv positional embedding: grouped Conv1d with weight norm over dim 2, SamePad, GELU.

    Parameters keep torch's weight_norm(dim=2) layout: weight_g f32[1, 1, K], weight_v f32[D, D/groups, K],
    bias f32[D]; weight = g * v / ||v|| with the norm over dims (0, 1) for every kernel tap k.
    f32[B, N, D] -> f32[B, N, D].
    """

    def __init__(self, dim: int, kernel: int, groups: int, *, rngs: nnx.Rngs):
        self.kernel, self.groups = kernel, groups
        std = math.sqrt(4.0 / (kernel * dim))  # official init (dropout 0)
        v = std * jax.random.normal(rngs.params(), (dim, dim // groups, kernel), jnp.float32)
        self.weight_v = nnx.Param(v)
        self.weight_g = nnx.Param(jnp.sqrt(jnp.sum(v * v, axis=(0, 1), keepdims=True)))
        self.bias = nnx.Param(jnp.zeros((dim,), jnp.float32))

    def weight(self) -> jax.Array:
        """The effective conv weight f32[D, D/groups, K] = g * v / ||v||_(0,1)."""
        v = self.weight_v[...]
        return self.weight_g[...] * v / jnp.sqrt(jnp.sum(v * v, axis=(0, 1), keepdims=True))

    def __call__(self, x: jax.Array) -> jax.Array:
        pad = self.kernel // 2
        y = grouped_conv1d(x, self.weight().astype(x.dtype), self.groups, pad)
        if self.kernel % 2 == 0:  # SamePad: an even kernel gives one extra frame
            y = y[:, :-1]
        return gelu(y + self.bias[...])


class BEATsLayer(TransformerBlock):
    """A BEATs transformer layer: TransformerBlock (separate q/k/v) + the gated relative position bias.

    Gate (gru_rel_pos): from the unscaled per-head query q f32[B, H, N, head_dim],
    (a, b) = sigmoid(sum of grep_linear(q) viewed as [..., 2, 4] over the last axis);
    bias = (a * (b * grep_a[h] - 1) + 2) * position_bias. grep_a is stored as f32[H] (torch: [1, H, 1, 1]).
    """

    def __init__(self, cfg: BEATsConfig, *, rngs: nnx.Rngs):
        deep = cfg.deep_norm
        main_init = (nnx.initializers.xavier_normal() if deep
                     else nnx.initializers.normal(0.02))
        branch_init = (nnx.initializers.variance_scaling(cfg.deep_norm_beta ** 2, "fan_avg", "normal") if deep
                       else nnx.initializers.normal(0.02))
        super().__init__(cfg.encoder_embed_dim, cfg.encoder_attention_heads, cfg.encoder_ffn_embed_dim,
                         pre_norm=cfg.layer_norm_first, residual_scale=cfg.deep_norm_alpha, eps=LN_EPS,
                         qkv_bias=True, fused_qkv=False, drop=cfg.dropout, attn_drop=cfg.attention_dropout,
                         act_drop=cfg.activation_dropout, kernel_init=main_init, branch_kernel_init=branch_init,
                         rngs=rngs)
        self.gated = cfg.gru_rel_pos
        if self.gated:
            self.grep_linear = Linear(cfg.head_dim, 8, kernel_init=nnx.initializers.normal(0.02), rngs=rngs)
            self.grep_a = nnx.Param(jnp.ones((cfg.encoder_attention_heads,), jnp.float32))

    def gate(self, q: jax.Array) -> jax.Array:
        """Per-query, per-head multiplier of the position bias.  f32[B, H, N, head_dim] -> f32[B, H, N, 1]."""
        b, h, n, _ = q.shape
        g = jax.nn.sigmoid(self.grep_linear(q).reshape(b, h, n, 2, 4).sum(-1))
        ga, gb = g[..., 0:1], g[..., 1:2]
        return ga * (gb * self.grep_a[...][None, :, None, None] - 1.0) + 2.0

    def __call__(self, x: jax.Array, position_bias: jax.Array | None = None, *, key_mask: jax.Array | None = None,
                 deterministic: bool = True) -> jax.Array:
        """f32[B, N, D], position_bias f32[1 or B, H, N, N], key_mask bool[B, N] (False = padding) -> f32[B, N, D]."""
        return super().__call__(x, bias=position_bias, key_mask=key_mask, deterministic=deterministic)

    def attention_bias(self, q: jax.Array, bias: jax.Array) -> jax.Array:
        """The position bias, gated by the queries when gru_rel_pos."""
        return self.gate(q) * bias if self.gated else bias


# ------------------------------------------------------------------------------------------- encoder
class BEATsEncoder(nnx.Module):
    """BEATs: fbank f32[B, frames, mels] -> EncoderOutput (time-major patch tokens, grid (mels/16, frames/16))."""

    time_major = True  # token n = t * F + f (AST / SSAST / PaSST are frequency-major)

    def __init__(self, cfg: BEATsConfig = BEATS_BASE, *, rngs: nnx.Rngs):
        self.cfg = cfg
        p, d = cfg.input_patch_size, cfg.encoder_embed_dim
        self.patch_embedding = PatchEmbed2d(cfg.embed_dim, (p, p), use_bias=cfg.conv_bias, rngs=rngs)
        self.layer_norm = LayerNorm(cfg.embed_dim, epsilon=LN_EPS, rngs=rngs)
        self.post_extract_proj = (Linear(cfg.embed_dim, d, rngs=rngs) if cfg.embed_dim != d else None)
        self.dropout_input = nnx.Dropout(cfg.dropout_input, rngs=rngs)
        self.pos_conv = WeightNormConv1d(d, cfg.conv_pos, cfg.conv_pos_groups, rngs=rngs)
        self.encoder_layer_norm = LayerNorm(d, epsilon=LN_EPS, rngs=rngs)
        self.encoder_dropout = nnx.Dropout(cfg.dropout, rngs=rngs)
        self.relative_attention_bias = (
            nnx.Param(0.02 * jax.random.normal(rngs.params(), (cfg.num_buckets, cfg.encoder_attention_heads)))
            if cfg.relative_position_embedding else None)
        self.layers = nnx.List([BEATsLayer(cfg, rngs=rngs) for _ in range(cfg.encoder_layers)])
        self.layerdrop_rngs = rngs.fork() if cfg.encoder_layerdrop > 0 else None
        if cfg.finetuned_model:
            self.predictor_dropout = nnx.Dropout(cfg.predictor_dropout, rngs=rngs)
            self.predictor = Linear(d, cfg.predictor_class, rngs=rngs)
        else:
            self.predictor = None

    # ---- geometry
    def grid_for(self, frames: int) -> tuple[int, int]:
        """(F, T) patch grid for `frames` input frames: (mels // patch, frames // patch)."""
        return self.cfg.grid_for(frames)

    def patches(self, features: jax.Array) -> jax.Array:
        """The raw 16x16 patches the patch conv reads, in token order (time-major: token n = t * F + f).

        f32[B, frames, mels] -> f32[B, T * F, p * p], each patch's values ordered (frame, mel bin) as in the
        features; frames past the last whole patch are dropped, as the patch conv drops them. The input of the
        random-projection tokenizer in masked token prediction (pretrain/objectives.py).
        """
        p = self.cfg.input_patch_size
        f, t = self.grid_for(features.shape[1])
        b = features.shape[0]
        x = features[:, : t * p, : f * p].reshape(b, t, p, f, p)
        return x.transpose(0, 1, 3, 2, 4).reshape(b, t * f, p * p)

    # ---- relative positions
    def position_bias(self, n: int, keep: jax.Array | None = None) -> jax.Array | None:
        """T5-bucketed relative position bias.  -> f32[1, H, N, N], or f32[B, H, K, K] for kept token indices
        keep i32[B, K] (buckets of their original distances). Buckets come from an exact host-side table."""
        if self.relative_attention_bias is None:
            return None
        return relative_position_bias(self.relative_attention_bias[...], n, self.cfg.num_buckets,
                                      self.cfg.max_distance, keep)

    # ---- forward
    def embed_patches(self, features: jax.Array) -> jax.Array:
        """f32[B, frames, mels] -> f32[B, N, encoder_embed_dim] (patch conv, LayerNorm, projection), time-major."""
        if features.ndim != 3:
            raise ValueError(f"BEATs expects fbank features f32[B, frames, mels], got shape {features.shape}; "
                             f"add a batch axis for one clip.")
        if features.shape[2] != self.cfg.num_mel_bins:
            raise ValueError(f"BEATs expects {self.cfg.num_mel_bins} mel bins on the last axis, got "
                             f"{features.shape[2]} (shape {features.shape}); features must be time-major "
                             f"[B, frames, mels] from the 'beats' frontend.")
        x = self.patch_embedding(features)  # [B, T, F, C]: conv over (time, freq)
        b, t, f, c = x.shape
        x = self.layer_norm(x.reshape(b, t * f, c))
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)
        return x

    def token_valid(self, padding_mask: jax.Array) -> jax.Array:
        """Frame padding bool[B, frames] (True = padded, the official convention) -> bool[B, N] (True = a real
        token): a token is real when every frame of its time patch is.

        The official model maps the mask samples -> frames -> tokens proportionally (`forward_padding_mask`:
        frame groups, then token n takes frames 2n and 2n + 1 of the time-major order, padded when all are).
        Whenever the padding starts on a patch boundary -- every chunk the Embedder builds -- both rules mark
        the same tokens; padding that starts inside a patch makes the official rule keep that patch's first
        frequency rows, while this one drops the whole patch, so the real tokens stay those of the unpadded clip.
        """
        p, f = self.cfg.input_patch_size, self.cfg.num_mel_bins // self.cfg.input_patch_size
        t = padding_mask.shape[1] // p
        real = real_time_patches(padding_mask, p, p, t)  # [B, T]
        return jnp.repeat(real, f, axis=1)  # time-major: token n belongs to time patch n // F

    def __call__(self, features: jax.Array, *, mask: jax.Array | None = None, keep: jax.Array | None = None,
                 padding_mask: jax.Array | None = None, deterministic: bool = True,
                 return_hidden: bool = False) -> EncoderOutput:
        """f32[B, frames, mels] -> EncoderOutput(tokens f32[B, N or K, D], grid (F, T), time_major=True).

        keep: i32[B, K] distinct token indices in [0, N) that the transformer sees (MAE-style, see module doc).
        padding_mask: bool[B, frames], True on padded frames (official convention). Padded tokens are zeroed
          before the conv positional embedding and ignored as attention keys, as in the official model, so an
          end-padded clip in a batch gives the same real tokens as the clip alone (`token_valid`, and the
          output's `valid`, say which tokens are real; the padded ones hold values that must not be pooled).
        """
        if mask is not None:
            raise ValueError("BEATs has no mask embedding, so `mask` is not supported; drop masked patches "
                             "with `keep` (MAE-style, as BEATs pretraining does) instead.")
        if keep is not None and padding_mask is not None:
            raise ValueError("give either keep or padding_mask, not both (drop padded patches from keep instead).")
        cfg = self.cfg
        x = self.dropout_input(self.embed_patches(features), deterministic=deterministic)
        b, n, _ = x.shape
        grid = self.grid_for(features.shape[1])
        key_mask = None
        if padding_mask is not None:
            key_mask = self.token_valid(check_padding_mask(padding_mask, features))
            x = jnp.where(key_mask[..., None], x, 0.0)  # official: x[padding_mask] = 0 before pos_conv
        if keep is not None:
            keep = jnp.asarray(keep, jnp.int32)
            if keep.ndim != 2 or keep.shape[0] != b:
                raise ValueError(f"keep must be i32[B, K] with B={b}, got shape {keep.shape}.")
            if not isinstance(keep, jax.core.Tracer):  # concrete: check now (under jit a bad index would clamp)
                k_np = np.asarray(keep)
                if k_np.size and (k_np.min() < 0 or k_np.max() >= n):
                    raise ValueError(f"keep indices must lie in [0, {n}) for this input ({grid[1]} time x {grid[0]} "
                                     f"freq patches); got min {k_np.min()}, max {k_np.max()}.")
                if any(len(np.unique(row)) != len(row) for row in k_np):
                    raise ValueError("keep has repeated indices in a row; give K distinct token indices per example.")
            kept = jnp.zeros((b, n), bool).at[jnp.arange(b)[:, None], keep].set(True)
            x = jnp.where(kept[..., None], x, 0.0)  # as the official encoder zeroes padding before pos_conv
        x = x + self.pos_conv(x)
        if keep is not None:
            x = jnp.take_along_axis(x, keep[..., None], axis=1)
        if not cfg.layer_norm_first:
            x = self.encoder_layer_norm(x)
        x = self.encoder_dropout(x, deterministic=deterministic)
        bias = self.position_bias(n, keep)
        hidden = [x]
        drop = None
        if not deterministic and self.layerdrop_rngs is not None:
            drop = jax.random.bernoulli(self.layerdrop_rngs.dropout(), cfg.encoder_layerdrop, (len(self.layers),))
        for i, layer in enumerate(self.layers):
            x_in = _grad_multiply(x, cfg.layer_wise_gradient_decay_ratio)
            y = layer(x_in, bias, key_mask=key_mask, deterministic=deterministic)
            x = y if drop is None else jnp.where(drop[i], x_in, y)
            hidden.append(x)
        if cfg.layer_norm_first:
            x = self.encoder_layer_norm(x)
        return EncoderOutput(tokens=x, cls=None, hidden=tuple(hidden) if return_hidden else None, grid=grid,
                             time_major=True, keep=keep, valid=key_mask)

    def classify(self, features: jax.Array, *, deterministic: bool = True) -> jax.Array:
        """Fine-tuned checkpoints only: clip probabilities f32[B, predictor_class] (official: per-token logits,
        mean over tokens, sigmoid)."""
        if self.predictor is None:
            raise ValueError("this BEATs model has no predictor head (a pretrained, not fine-tuned, checkpoint); "
                             "use its tokens/embeddings, or convert an AudioSet fine-tuned checkpoint.")
        tokens = self(features, deterministic=deterministic).tokens
        logits = self.predictor(self.predictor_dropout(tokens, deterministic=deterministic))
        return jax.nn.sigmoid(logits.mean(axis=1))
