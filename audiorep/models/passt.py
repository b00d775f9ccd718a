"""PaSST encoder: a DeiT-distilled ViT with overlapping patches and patchout (Koutini et al., 2022).

Reproduces kkoutini/PaSST `models/passt.py::PaSST` so the official checkpoints load exactly (converter:
`audiorep.models.convert.passt`). Input is frontend output f32[B, frames, mels] (PaSST mel, 128 bins,
998-1000 frames for 10 s), seen as a one-channel (freq x time) image; 16x16 patches with stride 10
overlap (128 x 998 -> 12 x 99 grid). Positional embeddings are separable: `freq_new_pos_embed`
f32[1, D, F, 1] and `time_new_pos_embed` f32[1, D, 1, T] (channel-first, as stored officially) are added
to the conv output before it is flattened FREQUENCY-major (token n sits at f, t = divmod(n, T));
`new_pos_embed` f32[1, 2, D] goes onto the cls and distillation tokens. Pre-LN blocks (eps 1e-6),
final norm; `head` = LayerNorm(eps 1e-5) + Linear; logits = head((cls + dist) / 2) (`head_dist` of the
official checkpoints is never used and is not kept).

Inputs shorter than the positional grid take the first time embeddings in eval and a random window in
training (`deterministic=False`, drawn from the `dropout` stream, or `time_offset=` given); longer ones
are cut to the grid, as the official model does (embed long audio in windows instead).

Patchout = `keep`: the grid indices of the kept patches, gathered after the positional embedding.
`patchout_keep` draws them the official way (one draw shared by the batch; structured drops whole time
columns / frequency rows, unstructured drops single patches). There is no mask embedding: `mask` is an
error.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from audiorep.models import deit
from audiorep.models.layers import EncoderOutput, LayerNorm, trunc_normal_02


@dataclasses.dataclass(frozen=True)
class PaSSTConfig(deit.DeiTConfig):
    """Shape of a PaSST encoder: the DeiT trunk (`DeiTConfig`: dim, depth, num_heads, mlp_ratio, qkv_bias, eps,
    drop, attn_drop, drop_path; PaSST-S is DeiT-B) and what is PaSST's own.

    Attributes:
      patch / stride: (freq, time) patch size and stride; PaSST-S: 16 and 10 (overlapping).
      num_mel_bins / num_frames: input size; num_frames is the embedding window (PaSST-S: 1000 frames = 10 s at
        32 kHz; the official models were trained on 998, and every length from 996 to 1005 gives the 99 columns).
      pos_grid: (F, T) sizes of `freq_new_pos_embed` / `time_new_pos_embed` (PaSST-S: 12 x 99).
      distilled: cls + dist tokens (all released PaSST models) or cls only.
      num_classes: classes of `head` (0: no head). head_eps: LayerNorm eps of `head` (1e-5).
      s_patchout_t / s_patchout_f / u_patchout: the training recipe's patchout (time columns, frequency
        rows, single patches dropped), read by `patchout_keep` and the objectives; the forward pass itself
        only follows `keep`.
    """

    patch: tuple[int, int] = (16, 16)
    stride: tuple[int, int] = (10, 10)
    num_mel_bins: int = 128
    num_frames: int = 1000
    pos_grid: tuple[int, int] = (12, 99)
    distilled: bool = True
    num_classes: int = 527
    head_eps: float = 1e-5
    s_patchout_t: int = 0
    s_patchout_f: int = 0
    u_patchout: int = 0

    def __post_init__(self):
        for k in ("patch", "stride", "pos_grid"):
            object.__setattr__(self, k, deit.as_pair(getattr(self, k)))
        super().__post_init__()
        f = (self.num_mel_bins - self.patch[0]) // self.stride[0] + 1
        if f != self.pos_grid[0]:
            raise ValueError(f"{self.num_mel_bins} mel bins with patch {self.patch[0]} / stride {self.stride[0]} give "
                             f"{f} frequency patches, but pos_grid has {self.pos_grid[0]}; make them agree.")

    @property
    def num_special(self) -> int:
        return 2 if self.distilled else 1

    def grid_for(self, frames: int) -> tuple[int, int]:
        """(F, T) patch grid the encoder uses for `frames` frames (time cut to the positional grid)."""
        f, t = deit.conv_grid(self.num_mel_bins, frames, self.patch, self.stride)
        return f, min(t, self.pos_grid[1])

    @classmethod
    def preset(cls, name: str) -> PaSSTConfig:
        """A named configuration: one of `PRESETS`."""
        return deit.named_preset(PRESETS, name, "PaSST")


PRESETS: dict[str, PaSSTConfig] = {
    # passt_s_swa_p16_128_ap476 and its siblings: stride 10, 10 s at 32 kHz, AudioSet recipe patchout.
    "passt-s": PaSSTConfig(s_patchout_t=40, s_patchout_f=4),
    # CPU-sized, same input features (128 mel bins), 3 s window.
    "passt-s-tiny": PaSSTConfig(dim=64, depth=2, num_heads=4, num_frames=300, pos_grid=(12, 29), s_patchout_t=6,
                                s_patchout_f=2),
}


def patchout_keep(key: jax.Array, grid: tuple[int, int], batch: int, *, drop_t: int = 0, drop_f: int = 0,
                  drop_u: int = 0) -> jax.Array:
    """Kept grid indices, drawn as official PaSST does in training: one draw for the whole batch, sorted.

    Structured patchout drops `drop_t` random time columns and `drop_f` random frequency rows; unstructured
    patchout then drops `drop_u` random tokens of what is left. Returns i32[batch, K],
    K = (F - drop_f) * (T - drop_t) - drop_u, frequency-major grid indices in increasing order.
    """
    f, t = grid
    if drop_t >= t or drop_f >= f:
        raise ValueError(f"cannot drop {drop_t} of {t} time columns / {drop_f} of {f} frequency rows.")
    kt, kf, ku = jax.random.split(key, 3)
    cols = jnp.sort(jax.random.permutation(kt, t)[: t - drop_t])
    rows = jnp.sort(jax.random.permutation(kf, f)[: f - drop_f])
    idx = (rows[:, None] * t + cols[None, :]).reshape(-1)
    n = idx.shape[0]
    if drop_u >= n:
        raise ValueError(f"cannot drop {drop_u} of {n} tokens (unstructured patchout).")
    if drop_u:
        idx = idx[jnp.sort(jax.random.permutation(ku, n)[: n - drop_u])]
    return jnp.broadcast_to(idx.astype(jnp.int32), (batch, idx.shape[0]))


class PaSSTEncoder(deit.DeiTEncoder):
    """PaSST encoder.  f32[B, frames, mels] -> EncoderOutput (tokens frequency-major, cls = [cls, dist]).

    Parameters mirror the official names: `patch_embed.proj`, `cls_token`, `dist_token`, `new_pos_embed`,
    `freq_new_pos_embed` f32[1, D, F, 1], `time_new_pos_embed` f32[1, D, 1, T],
    `blocks[i].{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}`, `norm`, `head` (LayerNorm + Linear).
    """

    def __init__(self, cfg: PaSSTConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d, (f, t) = cfg.dim, cfg.pos_grid
        self.patch_embed = deit.conv_patch_embed(d, cfg.patch, cfg.stride, rngs=rngs)
        init = lambda shape: nnx.Param(trunc_normal_02(rngs.params(), shape))  # noqa: E731
        self.cls_token = init((1, 1, d))
        self.dist_token = init((1, 1, d)) if cfg.distilled else None
        self.new_pos_embed = init((1, cfg.num_special, d))
        self.freq_new_pos_embed = init((1, d, f, 1))
        self.time_new_pos_embed = init((1, d, 1, t))
        self.pos_drop = nnx.Dropout(cfg.drop, rngs=rngs)
        self.blocks = deit.deit_blocks(cfg, rngs=rngs)
        self.norm = LayerNorm(d, epsilon=cfg.eps, rngs=rngs)
        # timm's _init_vit_weights via .apply(): trunc_normal(0.02) weights, zero bias for every Linear, head included.
        self.head = deit.ClassifierHead(d, cfg.num_classes, eps=cfg.head_eps, kernel_init=trunc_normal_02,
                                        bias_init=nnx.initializers.zeros_init(), rngs=rngs) if cfg.num_classes else None
        self.rngs = rngs.fork()

    def grid_for(self, frames: int) -> tuple[int, int]:
        """(F, T) patch grid for an input of `frames` frames (time cut to the positional grid)."""
        return self.cfg.grid_for(frames)

    def patchout_keep(self, key: jax.Array, grid: tuple[int, int], batch: int) -> jax.Array:
        """`patchout_keep` with this model's recipe (s_patchout_t, s_patchout_f, u_patchout).  -> i32[batch, K]."""
        c = self.cfg
        return patchout_keep(key, grid, batch, drop_t=c.s_patchout_t, drop_f=c.s_patchout_f, drop_u=c.u_patchout)

    def logits(self, out: EncoderOutput) -> jax.Array:
        """Official PaSST logits: head((cls + dist) / 2) (head(cls) when not distilled).  -> f32[B, classes]."""
        if self.head is None:
            raise ValueError("this PaSST model has no head; build it with PaSSTConfig(num_classes=K).")
        return self.head(out.cls.mean(axis=1))

    def __call__(self, features: jax.Array, *, mask: jax.Array | None = None, keep: jax.Array | None = None,
                 padding_mask: jax.Array | None = None, deterministic: bool = True, return_hidden: bool = False,
                 time_offset: int | jax.Array | None = None) -> EncoderOutput:
        """Encode features.  f32[B, frames, mels] -> EncoderOutput.

        keep: i32[B, K] frequency-major grid indices kept after the positional embedding (patchout).
        padding_mask: bool[B, frames], True on padded frames. The tokens of time patches with a padded frame are
          ignored as attention keys (the cls/dist tokens never are), and the output's `valid` marks the real ones;
          with the eval positions (the first time embeddings) a padded clip's tokens equal the unpadded clip's.
        time_offset: first time positional embedding used by an input shorter than the grid; default 0 in
          eval, random in training.
        """
        cfg = self.cfg
        if mask is not None:
            raise ValueError("PaSST has no mask embedding, so it cannot take `mask`; drop patches with `keep` "
                             "(patchout) instead, or use an SSAST/BEATs model for masked prediction.")
        deit.check_features(features, cfg.num_mel_bins, "PaSST", "the PaSST frontend")
        b, frames, _ = features.shape
        grid = cfg.grid_for(frames)
        f, t = grid
        x = self.patch_embed(features.transpose(0, 2, 1))  # [B, F, T_all, D]
        x = x[:, :, :t]  # the official model cuts inputs longer than its time embeddings
        tpe = self.time_new_pos_embed[...][0, :, 0].T  # [T_pos, D]
        if t < cfg.pos_grid[1]:
            if time_offset is None:
                time_offset = 0 if deterministic else jax.random.randint(
                    self.rngs.dropout(), (), 0, cfg.pos_grid[1] - t + 1)
            tpe = jax.lax.dynamic_slice_in_dim(tpe, time_offset, t, axis=0)
        fpe = self.freq_new_pos_embed[...][0, :, :, 0].T  # [F, D]
        x = x + tpe[None, None].astype(x.dtype)
        x = x + fpe[None, :, None].astype(x.dtype)
        x = x.reshape(b, f * t, cfg.dim)
        return self.encode_grid(x, features, self.new_pos_embed[...], grid=grid, padding_mask=padding_mask, keep=keep,
                                deterministic=deterministic, return_hidden=return_hidden)
