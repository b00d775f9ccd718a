"""Building blocks shared by the encoders (BEATs, SSAST/AST, PaSST) and the encoder output contract.

Every encoder maps time-major features f32[B, frames, mels] to an `EncoderOutput`; poolers, timestamp
embeddings and pretraining objectives only ever look at that structure.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


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
    """

    tokens: jax.Array
    cls: jax.Array | None
    hidden: tuple[jax.Array, ...] | None
    grid: tuple[int, int] = dataclasses.field(metadata=dict(static=True))
    time_major: bool = dataclasses.field(metadata=dict(static=True))
    keep: jax.Array | None = None

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
