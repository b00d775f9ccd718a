"""Random-projection tokenizer: the targets of BEATs' first iteration (BEST-RQ's quantiser).

A frozen random matrix projects each input vector (a spectrogram patch) to a small space; the code is the
nearest of a frozen random codebook after both are L2-normalised (so: highest cosine similarity). Nothing is
trained and nothing is stored: the projection and the codebook follow from `seed`, so a config holding
(in_dim, codebook_size, code_dim, seed) is the whole tokenizer.

Construction as in BEST-RQ (Chiu et al., ICML 2022, section 2.1): Xavier-normal projection, standard-normal
codebook. BEATs (arXiv 2212.09058) names a random-projection tokenizer for iteration 1 without releasing its
code or sizes; 1024 codes match its later tokenizers' codebook, 16 dimensions match BEST-RQ.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class RandomProjectionTokenizer:
    """x f32[..., in_dim] -> codes i32[...] in [0, codebook_size).

    in_dim: size of the vectors it codes (e.g. 64 for a 16 x 4 spectrogram patch).
    codebook_size: number of codes (the prediction head's classes).
    code_dim: size of the projected space the codebook lives in.
    seed: fixes the projection and the codebook; the same seed gives the same codes on every machine.
    """

    in_dim: int
    codebook_size: int = 1024
    code_dim: int = 16
    seed: int = 0

    def __post_init__(self):
        for name in ("in_dim", "codebook_size", "code_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"RandomProjectionTokenizer.{name}={getattr(self, name)} must be >= 1.")
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size={self.codebook_size}: a tokenizer needs at least 2 codes.")

    @functools.cached_property
    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        # numpy's legacy RandomState: its stream is frozen (NEP 19), so a seed means the same tokenizer with
        # any numpy or jax version; plain numpy also keeps this out of any jit trace that first touches it
        rs = np.random.RandomState(int(self.seed))
        std = np.sqrt(2.0 / (self.in_dim + self.code_dim))  # Xavier normal
        projection = rs.standard_normal((self.in_dim, self.code_dim)) * std
        codebook = rs.standard_normal((self.codebook_size, self.code_dim))
        codebook /= np.linalg.norm(codebook, axis=-1, keepdims=True)
        return projection.astype(np.float32), codebook.astype(np.float32)

    @property
    def projection(self) -> np.ndarray:
        """f32[in_dim, code_dim]."""
        return self._arrays[0]

    @property
    def codebook(self) -> np.ndarray:
        """f32[codebook_size, code_dim], unit-norm rows."""
        return self._arrays[1]

    def __call__(self, x: jax.Array) -> jax.Array:
        """f32[..., in_dim] -> i32[...]. Scale-free: any positive multiple of a vector gets its code."""
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"this tokenizer codes vectors of {self.in_dim} values, got shape {x.shape}; "
                             f"build it with in_dim={x.shape[-1]} (the patch size of the encoder it serves).")
        z = jnp.einsum("...i,ic->...c", x.astype(jnp.float32), self.projection)
        # cosine similarity: the norm of z does not change the argmax, so it is never divided out
        return jnp.argmax(jnp.einsum("...c,kc->...k", z, self.codebook), axis=-1).astype(jnp.int32)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RandomProjectionTokenizer:
        return cls(**{k: int(v) for k, v in d.items()})
