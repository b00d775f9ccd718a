"""Building blocks shared by the encoders (BEATs, SSAST/AST, PaSST) and the encoder output contract.

Every encoder maps time-major features f32[B, frames, mels] to an `EncoderOutput`; poolers, timestamp
embeddings and pretraining objectives only ever look at that structure.

The layers: `LayerNorm`, `MultiHeadAttention` (fused timm-style qkv or separate q/k/v, additive bias or a bias hook that
sees the queries), `Mlp`, `SmallHead`, `PatchEmbed2d`, `TransformerBlock` (pre-LN ViT/DeiT or post-LN DeepNorm, timm
attribute names norm1/attn/norm2/mlp), `DropPath`, T5 `relative_position_buckets`, and positional-embedding
cropping / interpolation (`crop_axis`, `interpolate_axes`, `fit_pos_embed`). GELU is the exact (erf) one,
as in PyTorch.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import warnings
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax
from jax.ad_checkpoint import checkpoint_name


class JsonConfig:
    """Mixin for frozen encoder-config dataclasses: JSON round trip (tuples as lists) and strict loading."""

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields {unknown}; known fields: {sorted(known)}.")
        return cls(**d)

    @classmethod
    def from_official_cfg(cls, cfg: dict, *, official_defaults: dict, what: str, local: tuple[str, ...] = ()):
        """From the `cfg` dict stored in an official checkpoint: missing fields take the official class
        defaults `official_defaults` (as the official loader does, before ours), fields the official model never
        reads are ignored with a warning naming `what`, values are cast to the field types. `local`: our own
        fields, never read from `cfg`."""
        names = {f.name for f in dataclasses.fields(cls)} - set(local)
        unknown = sorted(set(cfg) - names)
        if unknown:
            warnings.warn(f"{what} cfg fields {unknown} are not used by the {what} model; ignored.", stacklevel=3)
        values = {**official_defaults, **{k: v for k, v in cfg.items() if k in names}}
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        cast = {"int": int, "float": float, "bool": bool, "str": str}
        return cls(**{k: cast[types[k]](v) for k, v in values.items()})


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class EncoderOutput:
    """What every encoder returns.

    Attributes:
      tokens: f32[B, N, D] final patch tokens (no cls/dist tokens). N = F * T for the full grid, or
        K when patchout/`keep` selected K patches.
      cls: f32[B, C, D] the C special tokens (AST/PaSST cls + dist), or None (BEATs has none).
      hidden: per-layer patch tokens, a tuple of f32[B, N, D] (index 0 = input to the first block,
        index L = output of the last block, before any final norm), or None unless asked for.
      grid: (F, T) patch grid: frequency patches x time patches of the full (un-dropped) input.
      time_major: True when token n sits at (t, f) = divmod(n, F) (BEATs); False when (f, t) =
        divmod(n, T) (AST, PaSST).
      keep: i32[B, K] grid indices of the tokens that were kept, or None when all N were.
      valid: bool[B, N or K] True for the tokens of real (unpadded) time patches, or None when the encoder was
        given no `padding_mask` (every token real). Padded tokens hold values that must not be pooled; they
        were never attended to, so the real tokens equal those of the unpadded input.
    """

    tokens: jax.Array
    cls: jax.Array | None
    hidden: tuple[jax.Array, ...] | None
    grid: tuple[int, int] = dataclasses.field(metadata=dict(static=True))
    time_major: bool = dataclasses.field(metadata=dict(static=True))
    keep: jax.Array | None = None
    valid: jax.Array | None = None

    def token_time_index(self) -> jax.Array:
        """i32[N] (or i32[B, K] with `keep`): the time-patch index of every token."""
        f, t = self.grid
        idx = jnp.arange(f * t) if self.keep is None else self.keep
        return idx // f if self.time_major else idx % t

    def tokens_by_time(self, tokens: jax.Array | None = None) -> jax.Array:
        """Full-grid tokens arranged as f32[B, T, F, D] (requires keep=None)."""
        if self.keep is not None:
            raise ValueError("tokens_by_time needs the full patch grid; this output kept a subset (patchout).")
        x = self.tokens if tokens is None else tokens
        f, t = self.grid
        b, n, d = x.shape
        if n != f * t:
            raise ValueError(f"expected {f}x{t}={f * t} tokens, got {n}.")
        if self.time_major:
            return x.reshape(b, t, f, d)
        return x.reshape(b, f, t, d).transpose(0, 2, 1, 3)


def real_time_patches(padding_mask: jax.Array, kernel: int, stride: int, count: int) -> jax.Array:
    """Which time patches hold no padded frame.  bool[B, frames] (True = padded frame, the official BEATs
    convention) -> bool[B, count] (True = a real patch).

    Patch t covers frames [t * stride, t * stride + kernel). A patch is real when every one of its frames is, so
    for an end-padded clip exactly the patches of the unpadded clip are real (with overlapping patches too).
    """
    frames = padding_mask.shape[1]
    if (count - 1) * stride + kernel > frames:
        raise ValueError(f"{count} time patches of {kernel} frames (stride {stride}) need "
                         f"{(count - 1) * stride + kernel} frames; the padding mask has {frames}.")
    index = np.arange(count)[:, None] * stride + np.arange(kernel)[None, :]  # [count, kernel]
    return ~jnp.asarray(padding_mask, bool)[:, index].any(axis=-1)


def check_padding_mask(padding_mask, features: jax.Array) -> jax.Array:
    """The padding mask as bool[B, frames], checked against features f32[B, frames, mels]."""
    padding_mask = jnp.asarray(padding_mask)
    if padding_mask.shape != features.shape[:2]:
        raise ValueError(f"padding_mask must be bool[B, frames] = {tuple(features.shape[:2])} (True on padded "
                         f"frames), got shape {tuple(padding_mask.shape)}.")
    return padding_mask.astype(bool)


# ------------------------------------------------------------------------------------------ initialisers
def torch_linear_init(fan_in: int) -> tuple[nnx.Initializer, nnx.Initializer]:
    """PyTorch's default nn.Linear/Conv init (kaiming-uniform a=sqrt(5) == U(+-1/sqrt(fan_in))): (kernel, bias)."""
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    return _uniform(bound), _uniform(bound)


def _uniform(bound: float) -> nnx.Initializer:
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


trunc_normal_02 = nnx.initializers.truncated_normal(stddev=0.02, lower=-2.0 / 0.02, upper=2.0 / 0.02)
"""timm's trunc_normal_(std=0.02) (cut at +-2 absolute, i.e. +-100 sigma: effectively a plain normal)."""


# ------------------------------------------------------------------------------------------- small pieces
def gelu(x: jax.Array) -> jax.Array:
    """Exact (erf) GELU, as torch.nn.GELU() / F.gelu default. jax.nn.gelu defaults to the tanh approximation."""
    return jax.nn.gelu(x, approximate=False)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float) -> jax.Array:
    """LayerNorm over the last axis, two-pass variance E[(x - E[x])^2] (as torch.nn.LayerNorm), statistics in
    float32.  x f32|bf16[..., D], scale/bias [D] -> [..., D] in x's dtype.

    Its gradient is the closed form PyTorch uses, dx = rstd * (g - mean(g) - x_hat * mean(g * x_hat)) with
    g = dy * scale, from the saved input and two per-row statistics: autodiff through the two-pass formula
    made XLA:CPU spend ~0.5 s of a 4.4 s ViT-B training step on the 25 LayerNorms (benchmarks/train_step.py).
    """
    return _layer_norm_fwd(x, scale, bias, epsilon)[0]


def _layer_norm_stats(x: jax.Array, epsilon: float) -> tuple[jax.Array, jax.Array]:
    xf = x.astype(jnp.float32)
    mean = jnp.mean(xf, axis=-1, keepdims=True)
    centred = xf - mean
    return mean, jax.lax.rsqrt(jnp.mean(centred * centred, axis=-1, keepdims=True) + epsilon)


def _layer_norm_fwd(x, scale, bias, epsilon):
    mean, rstd = _layer_norm_stats(x, epsilon)
    y = (x.astype(jnp.float32) - mean) * rstd * scale.astype(jnp.float32) + bias.astype(jnp.float32)
    return y.astype(x.dtype), (x, mean, rstd, scale, bias)


def _layer_norm_bwd(epsilon, residuals, dy):
    del epsilon
    x, mean, rstd, scale, bias = residuals
    x_hat = (x.astype(jnp.float32) - mean) * rstd
    dy = dy.astype(jnp.float32)
    g = dy * scale.astype(jnp.float32)
    dx = rstd * (g - jnp.mean(g, axis=-1, keepdims=True) - x_hat * jnp.mean(g * x_hat, axis=-1, keepdims=True))
    rows = tuple(range(dy.ndim - 1))
    return (dx.astype(x.dtype), jnp.sum(dy * x_hat, axis=rows).astype(scale.dtype),
            jnp.sum(dy, axis=rows).astype(bias.dtype))


layer_norm.defvjp(_layer_norm_fwd, _layer_norm_bwd)


class LayerNorm(nnx.Module):
    """LayerNorm over the last axis (`layer_norm`: torch's two-pass variance, closed-form gradient).

    Parameter names match nnx.LayerNorm (`scale`, `bias`), so checkpoints and converters see no difference.
    Why not nnx.LayerNorm: its exact variant (use_fast_variance=False) differentiates through |x - mean|^2 and
    its default E[x^2] - E[x]^2 loses precision when a row's mean is large against its spread; on the 2-core CPU
    both were slower in a ViT-B training step than this one (benchmarks/train_step.py, docs/pretraining.md).
    Statistics are computed in float32; the output has the input's dtype.  f32|bf16[..., dim] -> same.
    """

    def __init__(self, dim: int, *, epsilon: float = 1e-6, rngs: nnx.Rngs | None = None):
        del rngs  # deterministic initialisation (ones, zeros); the argument keeps nnx.LayerNorm's signature
        self.epsilon = float(epsilon)
        self.scale = nnx.Param(jnp.ones((dim,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((dim,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return layer_norm(x, self.scale[...], self.bias[...], self.epsilon)


@jax.custom_vjp
def dense(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """x @ kernel over x's last axis.  x [..., D_in], kernel [D_in, D_out] (same dtype) -> [..., D_out].

    The same product as lax.dot_general, with its gradient written out so that the kernel's gradient is one
    contraction over a [1, rows, D] view of x and dy: XLA:CPU (jax 0.12) then hands all three matmuls to its fast
    (YNNPACK) kernels, where JAX's own transpose rule for inputs of rank >= 3 made it pick a layout those kernels
    refuse -- a bf16 Linear's forward + backward took 4x longer than with this gradient, fp32 1.4x
    (benchmarks/train_step.py, docs/pretraining.md).
    """
    return lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))


def _dense_fwd(x, kernel):
    return dense(x, kernel), (x, kernel)


def _dense_bwd(residuals, dy):
    x, kernel = residuals
    dx = lax.dot_general(dy, kernel, (((dy.ndim - 1,), (1,)), ((), ())))
    rows_x, rows_dy = x.reshape(1, -1, x.shape[-1]), dy.reshape(1, -1, dy.shape[-1])
    dkernel = lax.dot_general(rows_x, rows_dy, (((0, 1), (0, 1)), ((), ())))
    return dx.astype(x.dtype), dkernel.astype(kernel.dtype)


dense.defvjp(_dense_fwd, _dense_bwd)


def dense_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None, **kwargs):
    """lax.dot_general for nnx.Linear: its one contraction (lhs's last axis with a 2-D rhs's first) goes through
    `dense`; anything else (a precision, an output dtype or sharding) falls back to lax.dot_general."""
    plain = (dimension_numbers == (((lhs.ndim - 1,), (0,)), ((), ())) and rhs.ndim == 2 and lhs.ndim >= 1
             and lhs.dtype == rhs.dtype and precision is None and preferred_element_type is None
             and kwargs.get("out_sharding") is None)
    if plain:  # named so that remat's 'dots' policy keeps the product, as it keeps plain dot_general outputs
        return checkpoint_name(dense(lhs, rhs), "dense")
    if preferred_element_type is not None:
        kwargs["preferred_element_type"] = preferred_element_type
    return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision, **kwargs)


class Linear(nnx.Linear):
    """nnx.Linear (same parameters, initialisation and random stream) whose product is `dense`."""

    def __init__(self, in_features: int, out_features: int, **kwargs):
        kwargs.setdefault("dot_general", dense_dot_general)
        super().__init__(in_features, out_features, **kwargs)


class DropPath(nnx.Module):
    """Stochastic depth: drops the whole residual branch per example with probability `rate` (timm DropPath)."""

    def __init__(self, rate: float = 0.0, *, rngs: nnx.Rngs | None = None):
        self.rate = float(rate)
        self.rngs = rngs.fork() if (rngs is not None and rate > 0) else None

    def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
        """f32[B, ...] -> f32[B, ...]."""
        if deterministic or self.rate == 0.0:
            return x
        if self.rngs is None:
            raise ValueError("DropPath(rate > 0) in training needs rngs at construction (pass rngs=nnx.Rngs(...)).")
        keep = 1.0 - self.rate
        mask = jax.random.bernoulli(self.rngs.dropout(), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
        return jnp.where(mask, x / keep, 0.0).astype(x.dtype)


class Mlp(nnx.Module):
    """Transformer feed-forward block: fc1 -> GELU -> dropout -> fc2 -> dropout (timm `Mlp` naming).

    f32[..., dim] -> f32[..., out_dim or dim].
    """

    def __init__(self, dim: int, hidden: int, out_dim: int | None = None, *, act=gelu, drop: float = 0.0,
                 act_drop: float | None = None, kernel_init: nnx.Initializer | None = None,
                 fc2_kernel_init: nnx.Initializer | None = None, rngs: nnx.Rngs):
        kw = {} if kernel_init is None else dict(kernel_init=kernel_init)
        kw2 = dict(kernel_init=fc2_kernel_init) if fc2_kernel_init is not None else kw
        self.fc1 = Linear(dim, hidden, rngs=rngs, **kw)
        self.fc2 = Linear(hidden, out_dim or dim, rngs=rngs, **kw2)
        self.act = act
        self.act_drop = nnx.Dropout(drop if act_drop is None else act_drop, rngs=rngs)
        self.drop = nnx.Dropout(drop, rngs=rngs)

    def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
        x = self.act_drop(self.act(self.fc1(x)), deterministic=deterministic)
        return self.drop(self.fc2(x), deterministic=deterministic)


class SmallHead(nnx.Module):
    """Linear(dim, dim) -> act -> Linear(dim, out_dim), both with PyTorch's default init: the small heads of the
    official models (SSAST's pretext heads `cpredlayer` / `gpredlayer` with ReLU, the BEATs tokenizer's
    `quantize_layer` with tanh; their `.0` / `.2` are fc1 / fc2 here).

    f32[..., dim] -> f32[..., out_dim].
    """

    def __init__(self, dim: int, out_dim: int, *, act: Callable[[jax.Array], jax.Array], rngs: nnx.Rngs):
        k, b = torch_linear_init(dim)
        self.fc1 = Linear(dim, dim, kernel_init=k, bias_init=b, rngs=rngs)
        self.fc2 = Linear(dim, out_dim, kernel_init=k, bias_init=b, rngs=rngs)
        self.act = act

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(self.act(self.fc1(x)))


class PatchEmbed2d(nnx.Module):
    """Conv2d patch embedding of a one-channel 2-D input (timm `PatchEmbed` with in_chans=1).

    f32[B, H, W] -> [B, gh, gw, dim] in the kernel's dtype, with gh = (H - ph) // sh + 1,
    gw = (W - pw) // sw + 1 (VALID padding, trailing rows/columns that do not fill a patch are dropped, as
    torch's Conv2d does). The caller decides what H and W are (BEATs: time x freq; AST/PaSST: freq x time) and
    how to flatten the grid.
    The kernel is stored as f32[ph, pw, 1, dim] (flax layout; torch's weight [dim, 1, ph, pw] transposed).
    """

    def __init__(self, dim: int, patch: tuple[int, int], stride: tuple[int, int] | None = None, *,
                 use_bias: bool = True, kernel_init: nnx.Initializer | None = None, rngs: nnx.Rngs):
        self.patch = tuple(int(p) for p in patch)
        self.stride = tuple(int(s) for s in (stride or patch))
        kw = {} if kernel_init is None else dict(kernel_init=kernel_init)
        self.proj = nnx.Conv(1, dim, kernel_size=self.patch, strides=self.stride, padding="VALID",
                             use_bias=use_bias, rngs=rngs, **kw)

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """The (gh, gw) patch grid for an input of `height` x `width`."""
        (ph, pw), (sh, sw) = self.patch, self.stride
        if height < ph or width < pw:
            raise ValueError(f"input {height}x{width} is smaller than one {ph}x{pw} patch; give at least "
                             f"{ph} x {pw} (pad short clips).")
        return (height - ph) // sh + 1, (width - pw) // sw + 1

    def __call__(self, x: jax.Array) -> jax.Array:
        self.grid(x.shape[1], x.shape[2])
        # The encoder computes in its parameters' dtype: with bf16 parameters (the trainer's compute_dtype) the
        # f32 features would otherwise promote every later matmul back to f32.
        return self.proj(x[..., None].astype(self.proj.kernel.dtype))


def _conv1d(x: jax.Array, w: jax.Array, groups: int, pad: int) -> jax.Array:
    return lax.conv_general_dilated(x, w, window_strides=(1,), padding=[(pad, pad)],
                                    dimension_numbers=("NWC", "OIW", "NWC"), feature_group_count=groups)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def grouped_conv1d(x: jax.Array, w: jax.Array, groups: int, pad: int) -> jax.Array:
    """Grouped 1-D convolution, stride 1, `pad` zeros on both sides.  x [B, N, C_in], w [C_out, C_in / groups, K]
    (torch's Conv1d layout) -> [B, N + 2 * pad - K + 1, C_out].

    The same product as lax.conv_general_dilated, with the weight's gradient written out on CPU as one contraction
    per kernel tap (sum over batch and positions of dy times the input shifted by the tap): XLA:CPU (jax 0.12)
    computed BEATs' positional-conv weight gradient (768 channels, 16 groups, K = 128, 2 x 496 tokens) in 76 s,
    this in 1.2 s (benchmarks/tokenizer.py). Other platforms keep XLA's own gradient.
    """
    return _conv1d(x, w, groups, pad)


def _grouped_conv1d_fwd(x, w, groups, pad):
    return _conv1d(x, w, groups, pad), (x, w)


def _grouped_conv1d_bwd(groups, pad, residuals, dy):
    x, w = residuals
    dx = jax.vjp(lambda x: _conv1d(x, w, groups, pad), x)[1](dy)[0]

    def by_xla(dy, x):
        return jax.vjp(lambda w: _conv1d(x, w, groups, pad), w)[1](dy)[0]

    def by_taps(dy, x):
        b, n, _ = x.shape
        c_out, c_in, k = w.shape
        m = dy.shape[1]
        xp = jnp.pad(x, ((0, 0), (pad, pad), (0, 0))).reshape(b, n + 2 * pad, groups, c_in)
        dyg = dy.reshape(b, m, groups, c_out // groups)

        def tap(t):  # dw[g, o, i, t] = sum over (b, m) of dy[b, m, g, o] * xp[b, m + t, g, i]
            xs = lax.dynamic_slice_in_dim(xp, t, m, axis=1)
            return jnp.einsum("bmgo,bmgi->goi", dyg, xs, preferred_element_type=jnp.float32)

        dw = lax.map(tap, jnp.arange(k))  # [K, groups, C_out / groups, C_in]
        return dw.transpose(1, 2, 3, 0).reshape(c_out, c_in, k).astype(w.dtype)

    return dx, lax.platform_dependent(dy, x, cpu=by_taps, default=by_xla)


grouped_conv1d.defvjp(_grouped_conv1d_fwd, _grouped_conv1d_bwd)


# ------------------------------------------------------------------------------------------- attention
BiasFn = Callable[[jax.Array], jax.Array]
"""A hook that gets the per-head queries f32[B, H, Nq, head_dim] (projected, NOT scaled) and returns an additive
attention bias broadcastable to f32[B, H, Nq, Nk] (e.g. BEATs' gated relative position bias)."""


ATTENTION_IMPLS = ("auto", "einsum", "xla", "cudnn")


def fused_attention_impl(dtype) -> str | None:
    """Which `jax.nn.dot_product_attention` implementation plain attention (no bias, no key mask) uses, or None
    for the einsum path.  $AUDIOREP_ATTENTION: 'auto' (default: cuDNN's fused flash attention on NVIDIA GPUs
    for bf16/fp16, where the einsum path writes and reads back the [B, H, N, N] logits; the einsum elsewhere),
    'einsum' (never fused), 'xla' or 'cudnn' (always that implementation)."""
    impl = os.environ.get("AUDIOREP_ATTENTION", "auto")
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"AUDIOREP_ATTENTION={impl!r}: use one of {', '.join(ATTENTION_IMPLS)}.")
    if impl == "auto":
        half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
        return "cudnn" if half and jax.default_backend() == "gpu" else None
    return None if impl == "einsum" else impl


class MultiHeadAttention(nnx.Module):
    """Multi-head self-attention with an optional additive bias (or a bias hook that sees the queries).

    `fused_qkv=True` stores one `qkv` Linear(dim, 3 dim) (timm naming: attn.qkv, attn.proj); False stores
    `q`, `k`, `v` separately (fairseq/BEATs: q_proj, k_proj, v_proj). Logits = (q * head_dim^-0.5) @ k^T + bias,
    softmax in float32. f32[B, N, dim] -> f32[B, N, dim].
    """

    def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool = True, fused_qkv: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, kernel_init: nnx.Initializer | None = None,
                 v_kernel_init: nnx.Initializer | None = None, proj_kernel_init: nnx.Initializer | None = None,
                 rngs: nnx.Rngs):
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}; pick heads that divide dim.")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.fused_qkv = fused_qkv
        kw = {} if kernel_init is None else dict(kernel_init=kernel_init)
        kv = dict(kernel_init=v_kernel_init) if v_kernel_init is not None else kw
        kp = dict(kernel_init=proj_kernel_init) if proj_kernel_init is not None else kw
        if fused_qkv:
            self.qkv = Linear(dim, 3 * dim, use_bias=qkv_bias, rngs=rngs, **kw)
        else:
            self.q = Linear(dim, dim, use_bias=qkv_bias, rngs=rngs, **kw)
            self.k = Linear(dim, dim, use_bias=qkv_bias, rngs=rngs, **kw)
            self.v = Linear(dim, dim, use_bias=qkv_bias, rngs=rngs, **kv)
        self.proj = Linear(dim, dim, rngs=rngs, **kp)
        self.attn_drop = nnx.Dropout(attn_drop, rngs=rngs)
        self.proj_drop = nnx.Dropout(proj_drop, rngs=rngs)

    def heads(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """f32[B, N, dim] -> q, k, v each f32[B, H, N, head_dim] (unscaled)."""
        b, n, _ = x.shape
        if self.fused_qkv:
            qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim)
            q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        else:
            split = lambda t: t.reshape(b, n, self.num_heads, self.head_dim)
            q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        return tuple(t.transpose(0, 2, 1, 3) for t in (q, k, v))

    def __call__(self, x: jax.Array, *, bias: jax.Array | None = None, bias_fn: BiasFn | None = None,
                 key_mask: jax.Array | None = None, deterministic: bool = True) -> jax.Array:
        """f32[B, N, dim] -> f32[B, N, dim].

        bias: additive logits bias, broadcastable to f32[B, H, N, N]. bias_fn: called with the unscaled queries,
        its result is added too. key_mask: bool[B, N], False = ignore that key (padding).
        """
        b, n, _ = x.shape
        q, k, v = self.heads(x)
        impl = fused_attention_impl(q.dtype)
        plain = bias is None and bias_fn is None and key_mask is None
        if impl and plain and (deterministic or self.attn_drop.rate == 0.0):
            out = jax.nn.dot_product_attention(*(t.transpose(0, 2, 1, 3) for t in (q, k, v)), scale=self.scale,
                                               implementation=impl)  # [B, N, H, head_dim]
            return self.proj_drop(self.proj(out.reshape(b, n, self.dim)), deterministic=deterministic)
        logits = jnp.einsum("bhqd,bhkd->bhqk", q * self.scale, k).astype(jnp.float32)
        if bias is not None:
            logits = logits + bias
        if bias_fn is not None:
            logits = logits + bias_fn(q)
        if key_mask is not None:
            logits = jnp.where(key_mask[:, None, None, :], logits, jnp.finfo(logits.dtype).min)
        weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
        weights = self.attn_drop(weights, deterministic=deterministic)
        out = jnp.einsum("bhqk,bhkd->bhqd", weights, v).transpose(0, 2, 1, 3).reshape(b, n, self.dim)
        return self.proj_drop(self.proj(out), deterministic=deterministic)


class TransformerBlock(nnx.Module):
    """One transformer layer, timm naming (norm1, attn, norm2, mlp), pre-LN or post-LN.

    pre_norm=True (ViT/DeiT/AST/PaSST): x + drop_path(attn(norm1(x))); x + drop_path(mlp(norm2(x))).
    pre_norm=False (BEATs/fairseq post-LN, with DeepNorm residual scale alpha):
      x = norm1(alpha * x + attn(x)); x = norm2(alpha * x + mlp(x)).
    f32[B, N, dim] -> f32[B, N, dim].
    """

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, *, pre_norm: bool = True,
                 residual_scale: float = 1.0, eps: float = 1e-6, qkv_bias: bool = True, fused_qkv: bool = True,
                 drop: float = 0.0, attn_drop: float = 0.0, act_drop: float | None = None, drop_path: float = 0.0,
                 kernel_init: nnx.Initializer | None = None, branch_kernel_init: nnx.Initializer | None = None,
                 rngs: nnx.Rngs):
        self.pre_norm = pre_norm
        self.residual_scale = float(residual_scale)
        self.norm1 = LayerNorm(dim, epsilon=eps, rngs=rngs)
        self.attn = MultiHeadAttention(dim, num_heads, qkv_bias=qkv_bias, fused_qkv=fused_qkv, attn_drop=attn_drop,
                                       proj_drop=drop, kernel_init=kernel_init, v_kernel_init=branch_kernel_init,
                                       proj_kernel_init=branch_kernel_init, rngs=rngs)
        self.norm2 = LayerNorm(dim, epsilon=eps, rngs=rngs)
        self.mlp = Mlp(dim, mlp_hidden, drop=drop, act_drop=act_drop, kernel_init=branch_kernel_init or kernel_init,
                       rngs=rngs)
        self.drop_path = DropPath(drop_path, rngs=rngs)

    remat: str = "none"
    """Activation rematerialisation of this block in training: 'none', 'dots' (keep the matmul outputs,
    recompute the rest in the backward pass) or 'full' (keep only the block input). Set by `set_remat`."""

    def attention_bias(self, q: jax.Array, bias: jax.Array) -> jax.Array:
        """The additive attention-logits bias from `bias` and the unscaled queries f32[B, H, N, head_dim].

        A hook for subclasses (BEATs gates its relative position bias by the queries); here `bias` as given.
        """
        del q
        return bias

    def __call__(self, x: jax.Array, *, bias: jax.Array | None = None, key_mask: jax.Array | None = None,
                 deterministic: bool = True) -> jax.Array:
        """f32[B, N, dim] -> f32[B, N, dim]; bias broadcastable to f32[B, H, N, N], key_mask bool[B, N]."""
        if self.remat == "none":
            return self._forward(x, bias, key_mask, deterministic)
        forward = nnx.remat(TransformerBlock._forward, policy=REMAT_POLICIES[self.remat], static_argnums=(4,))
        return forward(self, x, bias, key_mask, deterministic)

    def _forward(self, x, bias, key_mask, deterministic):
        bias_fn = None if bias is None else (lambda q: self.attention_bias(q, bias))
        attn = lambda h: self.attn(h, bias_fn=bias_fn, key_mask=key_mask, deterministic=deterministic)
        dp = lambda h: self.drop_path(h, deterministic=deterministic)
        if self.pre_norm:
            x = x + dp(attn(self.norm1(x)))
            return x + dp(self.mlp(self.norm2(x), deterministic=deterministic))
        a = self.residual_scale
        x = self.norm1(a * x + dp(attn(x)))
        return self.norm2(a * x + dp(self.mlp(x, deterministic=deterministic)))


REMAT_POLICIES = {"dots": jax.checkpoint_policies.save_from_both_policies(
                      jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
                      jax.checkpoint_policies.save_only_these_names("dense")),
                  "full": jax.checkpoint_policies.nothing_saveable}
"""`TransformerBlock.remat` values (besides 'none') and the jax.checkpoint policy each one means."""


def set_remat(model: nnx.Module, policy: str) -> nnx.Module:
    """Set the activation rematerialisation of every TransformerBlock in `model` ('none', 'dots', 'full').

    Per block, so the backward pass holds one block's activations at a time plus the block inputs (or the
    matmul outputs with 'dots'); returns the model.
    """
    if policy != "none" and policy not in REMAT_POLICIES:
        raise ValueError(f"remat={policy!r}: use 'none', {', '.join(repr(p) for p in REMAT_POLICIES)}.")
    for _, node in nnx.iter_graph(model):
        if isinstance(node, TransformerBlock):
            node.remat = policy
    return model


# ---------------------------------------------------------------------------------- relative positions
def relative_position_buckets(relative: np.ndarray | jax.Array, num_buckets: int, max_distance: int,
                              bidirectional: bool = True):
    """T5 relative-position buckets (as BEATs/fairseq `_relative_positions_bucket`).  int[...] -> int[...].

    `relative` = key position - query position. Bidirectional: half the buckets for positive offsets. Within a
    half, offsets < max_exact = half // 2 get their own bucket; larger ones are log-spaced up to max_distance and
    clipped to the last bucket. Works on numpy (exact host tables) or jax arrays; float32 like the original.
    """
    xp = jnp if isinstance(relative, jax.Array) else np
    rel = xp.asarray(relative).astype(xp.int32)
    buckets = xp.zeros_like(rel)
    n = num_buckets
    if bidirectional:
        n = n // 2
        buckets = buckets + (rel > 0).astype(xp.int32) * n
        rel = xp.abs(rel)
    else:
        rel = -xp.minimum(rel, 0)
    max_exact = n // 2
    is_small = rel < max_exact
    with np.errstate(divide="ignore"):
        scaled = (xp.log(rel.astype(xp.float32) / xp.float32(max_exact))
                  / xp.float32(math.log(max_distance / max_exact)) * xp.float32(n - max_exact))
    # float -> int truncates toward zero (torch .to(long)); -inf for rel=0 is masked by is_small below.
    large = max_exact + xp.where(is_small, 0, scaled).astype(xp.int32)
    large = xp.minimum(large, n - 1)
    return buckets + xp.where(is_small, rel, large)


# -------------------------------------------------------------------------------- positional embeddings
def crop_axis(x: jax.Array, axis: int, size: int, *, align: str = "start", offset: int | jax.Array | None = None):
    """Take `size` entries of `x` along `axis`. align: 'start' (PaSST eval), 'center' (AST/SSAST fine-tune:
    start = old//2 - size//2), or give `offset` (PaSST training draws a random one; may be a traced int)."""
    old = x.shape[axis]
    if size > old:
        raise ValueError(f"cannot crop axis {axis} of length {old} to {size}; use interpolate_axes to grow it.")
    if offset is None:
        if align == "start":
            offset = 0
        elif align == "center":
            offset = old // 2 - size // 2
        else:
            raise ValueError(f"align must be 'start' or 'center', got {align!r}.")
    return jax.lax.dynamic_slice_in_dim(x, offset, size, axis=axis)


def interpolate_axes(x: jax.Array, sizes: dict[int, int]) -> jax.Array:
    """Linear resize of the given axes ({axis: new_size}), like torch F.interpolate(mode='bilinear',
    align_corners=False) without antialiasing (also for shrinking)."""
    shape = list(x.shape)
    for ax, s in sizes.items():
        shape[ax] = int(s)
    if tuple(shape) == x.shape:
        return x
    return jax.image.resize(x, tuple(shape), method="linear", antialias=False).astype(x.dtype)


def fit_pos_embed(pe: jax.Array, size: tuple[int, int], *, axes: tuple[int, int] = (-3, -2),
                  align: str = "center") -> jax.Array:
    """Fit a 2-D positional-embedding grid f32[..., h, w, D] (axes given by `axes`) to `size` = (h', w'):
    every axis that shrinks is cropped (`align`), every axis that grows is linearly interpolated — the AST/SSAST
    fine-tuning rule. f32[..., h, w, D] -> f32[..., h', w', D]."""
    for ax, new in zip(axes, size):
        if new < pe.shape[ax]:
            pe = crop_axis(pe, ax, new, align=align)
        elif new > pe.shape[ax]:
            pe = interpolate_axes(pe, {ax % pe.ndim: new})
    return pe
