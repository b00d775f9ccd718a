"""NormEMA vector quantiser: BEATs' tokenizer codebook (arXiv 2212.09058 section 3.2; official `beats/quantizer.py`).

Inputs and codewords live on the unit sphere: z is L2-normalised, the code of a vector is its nearest codeword
(the official squared distance ||e||^2 - 2 z.e, i.e. the highest cosine for unit codewords), and the quantised
output passes gradients straight through to z (z + sg(e - z)). The loss is the commitment term
beta * mean((sg(e) - z)^2). The codebook is never touched by the optimiser; each training forward updates it:

- first training batch (`kmeans_init`): spherical k-means on that batch (the official `kmeans`: seeds drawn from
  the batch, `kmeans_iters` = 10 Lloyd steps by cosine, an empty cluster keeps its old mean), then the update below
  runs on the same batch, as the official forward does;
- every training batch: per-code counts n_k and sums s_k of the unit inputs assigned to it; the batch mean
  m_k = l2norm(s_k / n_k), and e_k <- l2norm(decay * e_k + (1 - decay) * m_k) (official `norm_ema_inplace`,
  decay 0.99). A code no input chose in the batch keeps its codeword (the official code feeds e_k itself as the
  mean, and l2norm(e_k) = e_k);
- EMA statistics (decay 0.99): `cluster_size` <- EMA of n_k (the official `quantize.cluster_size` buffer) and
  `embed_avg` <- EMA of s_k. The official update never writes `embed_avg` (it keeps the buffer for its layout);
  here it is kept current so it can be read as the codes' mean directions. At k-means init `cluster_size`
  takes the k-means bin counts (the official stores those in `quantize.embedding.cluster_size`).

Sharding: counts and sums are plain reductions over every input vector of the global batch, so under `jax.jit`
with the batch sharded over the mesh's data axis XLA reduces them across devices (the official code calls
`all_reduce` on them): the update is the same on 1 and on N devices (tests/test_vq.py).

Dead-code restart (`restart_dead`, not in the official code; Jukebox's, Dhariwal et al. 2020): after the update,
every code whose EMA count is below `restart_threshold` x the average code's count (M / K for M input vectors
per batch) gets a random unit input of the current batch as its codeword and that floor as its count. A floor
relative to M / K matters: with an absolute one (Jukebox's 1.0) a 1024-code book fed 384 vectors a batch counts
every code as dead and re-rolls them all each step. Measured on the synthetic corpus (2026-12-05; 48 one-second
clips, 2304 mean-removed 16 x 16 fbank patches randomly projected to 32-d, 300 steps of 8 clips, usage = share of
codes nearest to at least one of the 2304 vectors): 1024 codes: 0.769 without restart, 0.993 with it (threshold
0.1; 0.986 with 0.01); 512 codes: 0.945 / 1.000; 128 codes: 1.000 / 1.000 (k-means init alone suffices when a
batch holds more vectors than codes). tests/test_vq.py asserts a usage floor of 0.9 with restart on half that
corpus (1152 vectors, 512 codes, 200 steps of 4 clips: measured 0.971 with restart, 0.779 without).
In tokenizer distillation, where the quantised vectors move as the tokenizer trains, the official update
collapses the codebook (2026-12-05: configs/tiny_beats.py tokenizer stage, beats-tiny tokenizer, 1024 x 256
codebook, teacher = a 6-step tiny_beats encoder, 24 synthetic clips, batch 16 x 80 patches, 400 steps; usage
of the last batch, perplexity, usage over 3456 patches of 48 held-out clips, final cosine): without restart
0.039 / 25 / 0.047 / 0.847; restart_threshold 0.1: 0.523 / 418 / 0.708 / 0.853; 0.5: 0.608 / 518 / 0.822 /
0.858. The counts are EMAs (decay 0.99), so restart starts only when a code's count has decayed below the floor:
after 150 steps nothing had been restarted yet and both runs were still identical.

State: `embedding` f32[K, D], `cluster_size` f32[K], `embed_avg` f32[K, D], `initted` f32[] are `CodebookState`
variables (not `nnx.Param`), so pretrain/trainer.py carries them as non-trained state: the loss's forward writes
them, its NaN guard keeps the old values on a bad step, and checkpoints hold them.

    vq = NormEMAVectorQuantizer(1024, 256, rngs=nnx.Rngs(0))
    out = vq(z, train=True, rng=key)    # z f32[..., 256] -> VQOutput(quantized, codes i32[...], loss, metrics)
    codes = vq.codes(z)                 # inference: i32[...]
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

L2_EPS = 1e-12  # torch.nn.functional.normalize's eps


class CodebookState(nnx.Variable):
    """Codebook state written by the quantiser's own forward pass (EMA, k-means), never by the optimiser."""


class VQOutput(NamedTuple):
    """quantized f32[..., D] (straight-through: gradients reach z), codes i32[...], loss f32[] (commitment),
    metrics {vq_usage, vq_perplexity, ...: f32[]}."""

    quantized: jax.Array
    codes: jax.Array
    loss: jax.Array
    metrics: dict[str, jax.Array]


def l2norm(x: jax.Array) -> jax.Array:
    """x / max(||x||, 1e-12) over the last axis (torch F.normalize).  f32[..., D] -> f32[..., D]."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), L2_EPS)


def nearest_code(z: jax.Array, embedding: jax.Array) -> jax.Array:
    """Index of the nearest codeword by squared distance (official: ||z||^2 + ||e||^2 - 2 z.e; the ||z||^2 term is
    the same for every code and dropped).  z f32[M, D], embedding f32[K, D] -> i32[M]."""
    d = jnp.sum(embedding * embedding, axis=-1)[None, :] - 2.0 * z @ embedding.T
    return jnp.argmin(d, axis=-1).astype(jnp.int32)


def code_counts_and_sums(z: jax.Array, codes: jax.Array, num_codes: int) -> tuple[jax.Array, jax.Array]:
    """Per-code counts f32[K] and sums f32[K, D] of z f32[M, D] under codes i32[M].

    A one-hot contraction over the M axis: under jit with z sharded over devices XLA sums across them."""
    onehot = jax.nn.one_hot(codes, num_codes, dtype=z.dtype)
    return onehot.sum(0), onehot.T @ z


def sample_rows(key: jax.Array, x: jax.Array, num: int) -> jax.Array:
    """`num` rows of x f32[M, D]: distinct ones when M >= num (a random permutation), else drawn with replacement
    (the official `sample_vectors`)."""
    m = x.shape[0]
    if m >= num:
        idx = jax.random.permutation(key, m)[:num]
    else:
        idx = jax.random.randint(key, (num,), 0, m)
    return x[idx]


def spherical_kmeans_init(key: jax.Array, z: jax.Array, num_codes: int, iters: int) -> tuple[jax.Array, jax.Array]:
    """The official codebook initialisation (`kmeans(..., use_cosine_sim=True)`) on unit rows z f32[M, D].

    Seeds: `sample_rows`; each of `iters` steps assigns every row to the mean of highest dot product, and each
    mean becomes the l2-normalised average of its rows (an empty cluster keeps its mean). Returns the means
    f32[K, D] and the counts f32[K] of the last assignment (made before the last mean update, as officially)."""
    means = sample_rows(key, z, num_codes)

    def step(_, carry):
        means, _ = carry
        buckets = jnp.argmax(z @ means.T, axis=-1)
        bins, sums = code_counts_and_sums(z, buckets, num_codes)
        new = l2norm(sums / jnp.maximum(bins, 1.0)[:, None])
        return jnp.where((bins == 0)[:, None], means, new), bins

    return jax.lax.fori_loop(0, int(iters), step, (means, jnp.zeros((num_codes,), z.dtype)))


class NormEMAVectorQuantizer(nnx.Module):
    """Cosine codebook of `num_codes` unit vectors of size `dim`, updated by EMA (see module docstring).

    decay: EMA decay of the codewords and statistics (official 0.99). beta: commitment weight (official 1.0).
    kmeans_init: codebook from k-means on the first training batch (official True); False starts from random
      unit vectors. restart_dead / restart_threshold: re-seed codes whose EMA count falls below restart_threshold
      x the average code's count (module docstring).
    """

    def __init__(self, num_codes: int, dim: int, *, decay: float = 0.99, beta: float = 1.0, kmeans_init: bool = True,
                 kmeans_iters: int = 10, restart_dead: bool = False, restart_threshold: float = 0.1,
                 rngs: nnx.Rngs):
        if num_codes < 2 or dim < 1:
            raise ValueError(f"a codebook needs num_codes >= 2 and dim >= 1, got num_codes={num_codes}, dim={dim}.")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay={decay} must lie in [0, 1) (official 0.99).")
        self.num_codes, self.dim = int(num_codes), int(dim)
        self.decay, self.beta = float(decay), float(beta)
        self.kmeans_init, self.kmeans_iters = bool(kmeans_init), int(kmeans_iters)
        self.restart_dead, self.restart_threshold = bool(restart_dead), float(restart_threshold)
        if kmeans_init:
            weight = jnp.zeros((num_codes, dim), jnp.float32)
        else:
            weight = l2norm(jax.random.normal(rngs.params(), (num_codes, dim), jnp.float32))
        self.embedding = CodebookState(weight)
        self.cluster_size = CodebookState(jnp.zeros((num_codes,), jnp.float32))
        self.embed_avg = CodebookState(weight)
        self.initted = CodebookState(jnp.asarray(0.0 if kmeans_init else 1.0, jnp.float32))

    @property
    def codebook_size(self) -> int:
        return self.num_codes

    def _flat(self, z: jax.Array) -> jax.Array:
        if z.shape[-1] != self.dim:
            raise ValueError(f"this codebook quantises vectors of {self.dim} values, got shape {z.shape}.")
        return l2norm(z.astype(jnp.float32)).reshape(-1, self.dim)

    def codes(self, z: jax.Array) -> jax.Array:
        """Inference: the code of each vector (L2-normalised first; no state changes).  f32[..., D] -> i32[...]."""
        return nearest_code(self._flat(z), self.embedding[...]).reshape(z.shape[:-1])

    def __call__(self, z: jax.Array, *, train: bool, rng: jax.Array | None = None) -> VQOutput:
        """Quantise z f32[..., D]. With train=True the codebook state is updated from this batch (k-means on the
        first one); `rng` draws the k-means seeds and restarted codes (a fixed key when None)."""
        zf = self._flat(z)
        emb = self.embedding[...]
        if train:
            rng = jax.random.PRNGKey(0) if rng is None else rng
            k_init, k_restart = jax.random.split(rng)
            cluster_size = self.cluster_size[...]
            if self.kmeans_init:
                zs = jax.lax.stop_gradient(zf)
                emb, cluster_size = jax.lax.cond(
                    self.initted[...] > 0, lambda: (emb, cluster_size),
                    lambda: spherical_kmeans_init(k_init, zs, self.num_codes, self.kmeans_iters))
                self.initted[...] = jnp.ones((), jnp.float32)
        codes = nearest_code(zf, emb)
        z_q = emb[codes]
        bins, sums = code_counts_and_sums(jax.lax.stop_gradient(zf), codes, self.num_codes)
        metrics = usage_metrics(bins)
        if train:
            d = self.decay
            self.cluster_size[...] = d * cluster_size + (1.0 - d) * bins
            self.embed_avg[...] = d * self.embed_avg[...] + (1.0 - d) * sums
            means = jnp.where((bins == 0)[:, None], emb, l2norm(sums / jnp.maximum(bins, 1.0)[:, None]))
            new_emb = l2norm(d * emb + (1.0 - d) * means)
            if self.restart_dead:
                new_emb, restarted = self._restart(k_restart, jax.lax.stop_gradient(zf), new_emb)
                metrics["vq_restarted"] = restarted
            self.embedding[...] = new_emb
        loss = self.beta * jnp.mean((jax.lax.stop_gradient(z_q) - zf) ** 2)
        quantized = zf + jax.lax.stop_gradient(z_q - zf)
        metrics["vq_loss"] = loss
        return VQOutput(quantized.reshape(z.shape).astype(z.dtype), codes.reshape(z.shape[:-1]), loss, metrics)

    def _restart(self, key: jax.Array, zf: jax.Array, emb: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Codes whose EMA count is below the threshold get a random current input; -> (codebook, count f32[])."""
        floor = self.restart_threshold * zf.shape[0] / self.num_codes  # a fraction of the average code's count
        dead = self.cluster_size[...] < floor
        fresh = zf[jax.random.randint(key, (self.num_codes,), 0, zf.shape[0])]
        self.cluster_size[...] = jnp.where(dead, floor, self.cluster_size[...])
        self.embed_avg[...] = jnp.where(dead[:, None], fresh * floor, self.embed_avg[...])
        return jnp.where(dead[:, None], fresh, emb), dead.sum().astype(jnp.float32)


def usage_metrics(bins: jax.Array) -> dict[str, jax.Array]:
    """Codebook usage of one batch from per-code counts f32[K]: `vq_usage` (fraction of codes used) and
    `vq_perplexity` (exp of the entropy of the code frequencies; K when all are equally used, 1 for one code)."""
    p = bins / jnp.maximum(bins.sum(), 1.0)
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
    return {"vq_usage": jnp.mean((bins > 0).astype(jnp.float32)), "vq_perplexity": jnp.exp(entropy)}
