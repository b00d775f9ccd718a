"""Teacher tokenizer: the targets of a later BEATs iteration, from an encoder pretrained in an earlier one.

Each patch's code is the nearest (cosine) of K centroids fitted by spherical k-means to a frozen teacher
encoder's outputs, computed on the whole (unmasked) window, so a code says what the teacher made of the patch
in its context rather than what the patch looks like. Iterating (random-projection codes -> encoder 1 ->
teacher codes -> encoder 2 -> ...) is BEATs' recipe for moving the targets from acoustics towards semantics.

BEATs trains its later tokenizers by self-distillation (a Transformer tokenizer with a VQ codebook whose codes
let an estimator reconstruct the teacher's outputs; arXiv 2212.09058, section 3.2); this module uses HuBERT's
way of turning a teacher into targets (k-means over its features; arXiv 2106.07447) instead, which costs
seconds rather than a training run. The teacher must read the student's features and patch grid.

    tok = TeacherTokenizer.fit(teacher_encoder, feature_batches, codebook_size=256, seed=0)
    codes = tok(feats)            # f32[B, frames, mels] -> i32[B, N]
"""

from __future__ import annotations

from collections.abc import Iterable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def _unit(x: jax.Array) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


@jax.jit
def _assign(x: jax.Array, centroids: jax.Array) -> jax.Array:
    """Unit rows x f32[M, D], unit centroids f32[K, D] -> nearest centroid i32[M] (highest cosine)."""
    return jnp.argmax(x @ centroids.T, axis=-1).astype(jnp.int32)


def _kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of k seeds among unit rows x f32[M, D]: greedy k-means++ (Arthur & Vassilvitskii, 2007; as in
    scikit-learn, 2 + log k candidates per seed, keeping the one that lowers the total squared distance most)."""
    trials = 2 + int(np.log(k))
    chosen = [int(rng.integers(len(x)))]
    dist = np.maximum(2.0 - 2.0 * (x @ x[chosen[0]]), 0.0)  # squared distance of unit vectors
    for _ in range(1, k):
        total = dist.sum()
        cand = rng.choice(len(x), size=trials, p=dist / total) if total > 0 else rng.integers(len(x), size=trials)
        new = np.minimum(dist[None], np.maximum(2.0 - 2.0 * (x[cand] @ x.T), 0.0))  # [trials, M]
        best = int(np.argmin(new.sum(axis=1)))
        chosen.append(int(cand[best]))
        dist = new[best]
    return np.asarray(chosen)


def spherical_kmeans(x: np.ndarray, k: int, *, iters: int = 25, seed: int = 0) -> np.ndarray:
    """Cluster unit vectors by cosine similarity.  x f32[M, D] -> centroids f32[k, D] (unit rows).

    Greedy k-means++ seeding, then Lloyd iterations; a cluster that loses all its points is re-seeded with the point its
    centroid explains worst, so every code stays in use. Deterministic for (x, k, iters, seed) on one machine.
    """
    x = np.asarray(x, np.float32)
    if x.ndim != 2 or len(x) < k:
        raise ValueError(f"k-means needs at least k={k} vectors of shape [M, D], got {x.shape}; fit on more "
                         f"batches (objective.kmeans_batches) or use fewer codes (objective.codebook_size).")
    xj = _unit(jnp.asarray(x))
    centroids = xj[_kmeans_plus_plus(np.asarray(xj), k, np.random.default_rng(seed))]
    for _ in range(int(iters)):
        codes = _assign(xj, centroids)
        sums = jax.ops.segment_sum(xj, codes, num_segments=k)
        counts = np.asarray(jnp.bincount(codes, length=k))
        empty = np.flatnonzero(counts == 0)
        centroids = _unit(sums)
        if len(empty):
            fit = np.asarray(jnp.sum(xj * centroids[codes], axis=-1))
            worst = np.argsort(fit)[: len(empty)]
            centroids = centroids.at[empty].set(xj[worst])
    return np.asarray(centroids, np.float32)


class TeacherTokenizer:
    """feats f32[B, frames, mels] -> codes i32[B, N] from a frozen teacher encoder and a k-means codebook.

    teacher: an encoder (nnx) whose `__call__(feats).tokens` gives f32[B, N, D] patch outputs on the same grid
      as the student; `layer` picks another hidden output (0 = patch embeddings, -1 = the final, normed one).
    centroids: f32[K, D] unit-norm rows (`fit` computes them).
    """

    input = "features"  # MaskedTokens hands this tokenizer the features, not the raw patches

    def __init__(self, teacher: nnx.Module, centroids: np.ndarray, *, layer: int = -1):
        depth = getattr(getattr(teacher, "cfg", None), "depth", None)
        if depth is not None and not -1 <= int(layer) <= int(depth):
            raise ValueError(f"teacher_layer={layer}: -1 (the final output), 0 (patch embeddings) or 1..{depth} "
                             f"(after that block) for this {depth}-block teacher.")
        self.graphdef, self.state = nnx.split(teacher)
        self.layer = int(layer)
        self.centroids = np.asarray(centroids, np.float32)

    @property
    def codebook_size(self) -> int:
        return int(self.centroids.shape[0])

    def embed(self, feats: jax.Array) -> jax.Array:
        """The teacher's unit-norm patch outputs, never differentiated.  f32[B, frames, mels] -> f32[B, N, D]."""
        teacher = nnx.merge(self.graphdef, self.state)
        if self.layer == -1:
            tokens = teacher(feats, deterministic=True).tokens
        else:
            tokens = teacher(feats, deterministic=True, return_hidden=True).hidden[self.layer]
        return jax.lax.stop_gradient(_unit(tokens.astype(jnp.float32)))

    def __call__(self, feats: jax.Array) -> jax.Array:
        return jnp.argmax(jnp.einsum("bnd,kd->bnk", self.embed(feats), self.centroids), axis=-1).astype(jnp.int32)

    @classmethod
    def fit(cls, teacher: nnx.Module, feature_batches: Iterable[jax.Array], *, codebook_size: int, layer: int = -1,
            iters: int = 25, seed: int = 0) -> TeacherTokenizer:
        """Fit the codebook to the teacher's outputs on `feature_batches` (each f32[B, frames, mels])."""
        tok = cls(teacher, np.zeros((codebook_size, 0), np.float32), layer=layer)  # centroids come last
        embed = jax.jit(tok.embed)
        chunks = []
        for f in feature_batches:
            e = np.asarray(embed(jnp.asarray(f)))
            chunks.append(e.reshape(-1, e.shape[-1]))
        if not chunks:
            raise ValueError("no feature batches to fit the teacher tokenizer's codebook on.")
        tok.centroids = spherical_kmeans(np.concatenate(chunks), codebook_size, iters=iters, seed=seed)
        return tok
