"""Song-level heads over chunk embeddings (multiple-instance learning): mean, max and attention pooling.

A song minutes long is embedded as a bag of chunk embeddings f32[K, D] (downstream/tasks/songs.py); a head
pools the bag into one vector and classifies it. Three poolings:
  mean       the average of the song's chunks;
  max        the element-wise maximum over the song's chunks;
  attention  attention-MIL (Ilse, Tomczak and Welling, ICML 2018): a score s_k = w . tanh(V h_k + c) per chunk,
             softmaxed over the song's valid chunks, weights the chunks' sum.
The pooled vector goes through `hidden_layers` Linear -> ReLU layers and a Linear layer to class logits.

Songs have different numbers of chunks, so a split is stored flat: the chunk embeddings of every song f32[C, D]
plus, per song, the row indices of its chunks padded to a bucket of K slots, i32[S, K], and a mask bool[S, K].
Padded slots never enter a song's score (masked out of all three poolings before anything else sees them), so a
song scores the same whatever bucket it is padded to and whatever the padded rows hold (tests/test_songs.py).

Training follows downstream/probes.py: every grid point of one shape (its hidden_layers) is stacked along a
leading axis and `jax.vmap`ped inside one jitted round of `check_every` epochs (`lax.scan` over epochs and
minibatches of songs), followed by the validation score and the early-stopping update; the pooling is a per-point
integer, so mean, max and attention heads train in the same vmapped program. Adam, softmax cross-entropy,
selection on validation F1 of the positive class (SONICS' primary metric).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from audiorep.downstream.probes import HEAR_LRS, Grid, ProbeError, Schedule, bucket

POOLINGS = ("mean", "max", "attention")


@dataclass(frozen=True)
class HeadPoint:
    """One song-head configuration; `seed` fixes its initial weights and minibatch order."""

    pooling: str = "attention"
    hidden_layers: int = 0
    hidden_dim: int = 256
    lr: float = 1e-3
    seed: int = 0

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise ProbeError(f"song-head pooling must be one of {POOLINGS}, got {self.pooling!r}.")
        if self.hidden_layers < 0 or self.hidden_dim < 1 or not self.lr > 0:
            raise ProbeError(f"invalid song-head point {self}: need hidden_layers >= 0, hidden_dim >= 1, lr > 0.")


@dataclass(frozen=True)
class HeadGrid(Grid):
    """Song-head configurations trained together: a probes.Grid of `HeadPoint`s (`repeats` as there: repeat-major
    copies that differ only in their seeds). attention_dim: width A of the attention scorer V (D -> A)."""

    points: tuple[HeadPoint, ...]
    attention_dim: int = 128

    kind = "song-head grid"

    def to_dict(self) -> dict:
        return {**super().to_dict(), "attention_dim": self.attention_dim}


def make_head_grid(name: str = "fast", seed: int = 0, repeats: int = 1, poolings=POOLINGS, **schedule) -> HeadGrid:
    """A named song-head grid; every configuration exists once per pooling. Seeds as probes.make_grid.

    'fast': linear and one hidden layer of 256 at lr 1e-3 (x 3 poolings: 6 points); at most 60 epochs,
      validation every 3, patience 5 checks.
    'full': linear and one hidden layer of 256 at the four HEAR learning rates (24 points); 300 epochs, patience 10.
    'linear': linear heads at the four HEAR learning rates (12 points); 200 epochs, patience 10.
    `schedule` overrides Schedule fields (songs per minibatch: batch_size, default 64).
    """
    if name == "fast":
        shapes, sched = [(h, 1e-3) for h in (0, 1)], Schedule(max_epochs=60, check_every=3, patience=5, batch_size=64)
    elif name == "full":
        shapes = [(h, lr) for h in (0, 1) for lr in HEAR_LRS]
        sched = Schedule(max_epochs=300, check_every=3, patience=10, batch_size=64)
    elif name == "linear":
        shapes, sched = [(0, lr) for lr in HEAR_LRS], Schedule(max_epochs=200, check_every=3, patience=10,
                                                               batch_size=64)
    else:
        raise ProbeError(f"unknown song-head grid {name!r}; choose 'fast', 'full' or 'linear'.")
    unknown = [p for p in poolings if p not in POOLINGS]
    if unknown or not poolings:
        raise ProbeError(f"song-head poolings must be a non-empty subset of {POOLINGS}, got {list(poolings)}.")
    configs = [(pool, h, lr) for pool in poolings for h, lr in shapes]
    if not 1 <= repeats <= 1000 // len(configs):
        raise ProbeError(f"repeats must be in [1, {1000 // len(configs)}] for the {name!r} song grid, got {repeats}.")
    points = tuple(HeadPoint(pooling=pool, hidden_layers=h, lr=lr, seed=seed * 1000 + r * len(configs) + i)
                   for r in range(repeats) for i, (pool, h, lr) in enumerate(configs))
    return HeadGrid(name, points, dataclasses.replace(sched, **schedule), repeats)


# ------------------------------------------------------------------------------------------ the head
def init_head(point: HeadPoint, dim: int, classes: int, attention_dim: int = 128) -> dict:
    """Parameters of one head from its seed: the attention scorer {v f32[D, A], c f32[A], w f32[A]} (present for
    every pooling, so heads of one shape stack) and the layers [{w, b}] (Xavier-uniform weights, zero biases)."""
    key = jax.random.fold_in(jax.random.PRNGKey(point.seed), 0)
    key, kv, kw = jax.random.split(key, 3)
    bound = math.sqrt(6.0 / (dim + attention_dim))
    attn = {"v": jax.random.uniform(kv, (dim, attention_dim), jnp.float32, -bound, bound),
            "c": jnp.zeros(attention_dim, jnp.float32),
            "w": jax.random.uniform(kw, (attention_dim,), jnp.float32, -bound, bound)}
    sizes = [dim] + [point.hidden_dim] * point.hidden_layers + [classes]
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        key, k = jax.random.split(key)
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        layers.append({"w": jax.random.uniform(k, (fan_in, fan_out), jnp.float32, -bound, bound),
                       "b": jnp.zeros(fan_out, jnp.float32)})
    return {"attn": attn, "layers": layers}


def attention_weights(attn: dict, x: jax.Array, mask: jax.Array) -> jax.Array:
    """Attention-MIL weights: softmax over each song's valid chunks of w . tanh(V h + c); 0 on padding.
    x f32[B, K, D], mask bool[B, K] -> f32[B, K] (rows sum to 1; a song with no valid chunk: all 0)."""
    s = jnp.tanh(x @ attn["v"] + attn["c"]) @ attn["w"]
    s = jnp.where(mask, s, -jnp.inf)
    top = jnp.max(s, axis=1, keepdims=True)
    e = jnp.where(mask, jnp.exp(s - jnp.where(jnp.isfinite(top), top, 0.0)), 0.0)
    return e / jnp.maximum(jnp.sum(e, axis=1, keepdims=True), 1e-30)


def pool_chunks(attn: dict, x: jax.Array, mask: jax.Array, pooling: int | jax.Array) -> jax.Array:
    """Pool each song's valid chunks: pooling 0 = mean, 1 = max, 2 = attention (an index into POOLINGS; may be a
    traced per-point value under vmap). x f32[B, K, D] (padded slots may hold anything), mask bool[B, K] ->
    f32[B, D]. A song with no valid chunk (a padded row of the batch) pools to 0."""
    m = mask[..., None]
    x = jnp.where(m, x, 0.0)  # padding's content never reaches a song's score
    n = jnp.maximum(jnp.sum(mask, axis=1), 1)[:, None].astype(x.dtype)
    mean = jnp.sum(x, axis=1) / n
    top = jnp.max(jnp.where(m, x, -jnp.inf), axis=1)
    top = jnp.where(jnp.any(mask, axis=1)[:, None], top, 0.0)
    att = jnp.einsum("bk,bkd->bd", attention_weights(attn, x, mask), x)
    return jnp.stack([mean, top, att])[pooling]


def head_logits(params: dict, x: jax.Array, mask: jax.Array, pooling: int | jax.Array) -> jax.Array:
    """Class logits of a bag of chunks.  x f32[B, K, D], mask bool[B, K] -> f32[B, classes]."""
    h = pool_chunks(params["attn"], x, mask, pooling)
    for layer in params["layers"][:-1]:
        h = jax.nn.relu(h @ layer["w"] + layer["b"])
    return h @ params["layers"][-1]["w"] + params["layers"][-1]["b"]


# --------------------------------------------------------------------------------------- song tables
def device_table(chunks) -> jax.Array:
    """Chunk embeddings f32[C, D] as one device array, checked finite; pass it to train_heads and predict_heads
    so a large table moves to the accelerator once."""
    table = jnp.asarray(chunks, jnp.float32)
    if table.ndim != 2 or not bool(jnp.all(jnp.isfinite(table))):
        raise ProbeError(f"chunk embeddings must be finite f32[C, D], got shape {tuple(table.shape)} (or NaN/Inf); "
                         "re-embed (the cache may hold a broken shard).")
    return table


@dataclass
class Bags:
    """The songs of one split as indices into a shared chunk table: idx i32[S, K] (rows of the table; padded
    slots point at row 0), mask bool[S, K], y i32[S]."""

    idx: np.ndarray
    mask: np.ndarray
    y: np.ndarray

    @classmethod
    def from_lists(cls, rows: list[list[int]], y, slots: int | None = None) -> Bags:
        """Bags from each song's chunk rows, padded to `slots` (default: the longest song, rounded up to a
        power of two so similar splits share a compile)."""
        if not rows or min(len(r) for r in rows) == 0:
            raise ProbeError("every song needs at least one chunk embedding; check the chunking of the songs.")
        longest = max(len(r) for r in rows)
        k = slots if slots is not None else 1 << max(0, (longest - 1).bit_length())
        if k < longest:
            raise ProbeError(f"{k} slots cannot hold a song of {longest} chunks.")
        idx = np.zeros((len(rows), k), np.int32)
        mask = np.zeros((len(rows), k), bool)
        for i, r in enumerate(rows):
            idx[i, :len(r)] = r
            mask[i, :len(r)] = True
        return cls(idx, mask, np.asarray(y, np.int32))

    def __len__(self) -> int:
        return int(self.idx.shape[0])


def _pad_songs(bags: Bags, n: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    pad = n - len(bags)
    return (jnp.asarray(np.pad(bags.idx, ((0, pad), (0, 0)))), jnp.asarray(np.pad(bags.mask, ((0, pad), (0, 0)))),
            jnp.asarray(np.pad(bags.y, (0, pad))))


# ---------------------------------------------------------------------------------- vmapped training
_adam = optax.scale_by_adam()


def _f1(pred_pos, true_pos, real):
    tp = jnp.sum(real & pred_pos & true_pos)
    denom = jnp.sum(real & pred_pos) + jnp.sum(real & true_pos)
    return jnp.where(denom > 0, 2.0 * tp / jnp.maximum(denom, 1), 0.0)


def _batched_logits(params, pooling, table, idx, mask, batch: int):
    """Logits of every song of a padded split, `batch` songs at a time (bounded memory). -> f32[S_pad, C]."""
    s = idx.shape[0]
    out = jax.lax.map(lambda b: head_logits(params, table[b[0]], b[1], pooling),
                      (idx.reshape(s // batch, batch, -1), mask.reshape(s // batch, batch, -1)))
    return out.reshape(s, -1)


@functools.lru_cache(maxsize=16)
def _make_round(n_pad: int, vbatch: int, batch_size: int, check_every: int, positive: int):
    """One jitted round for a stacked group of heads: `check_every` epochs, then validation F1 and the
    early-stopping update. Shapes only are cache keys, so folds/durations of similar size share a compile."""
    batch = min(batch_size, n_pad)
    steps = -(-n_pad // batch)
    slots = jnp.arange(steps * batch).reshape(steps, batch)

    def point_round(st, hp, table, idx, mask, y, n_real, vidx, vmask, vy, v_real, first_epoch, patience):
        def epoch(carry, e):
            u = jax.random.uniform(jax.random.fold_in(hp["data_key"], e), (n_pad,))
            perm = jnp.argsort(jnp.where(jnp.arange(n_pad) < n_real, u, 2.0))
            order = jnp.pad(perm, (0, steps * batch - n_pad)).reshape(steps, batch)

            def step(carry, s):
                params, opt = carry
                rows, w = order[s], (slots[s] < n_real).astype(jnp.float32)

                def loss_fn(p):
                    logits = head_logits(p, table[idx[rows]], mask[rows], hp["pooling"])
                    per = optax.softmax_cross_entropy_with_integer_labels(logits, y[rows])
                    return jnp.sum(per * w) / jnp.maximum(jnp.sum(w), 1.0)

                grads = jax.grad(loss_fn)(params)
                updates, new_opt = _adam.update(grads, opt)
                new_params = jax.tree.map(lambda p, u: p - hp["lr"] * u, params, updates)
                live = jnp.sum(w) > 0
                keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(live, a, b), new, old)
                return keep((new_params, new_opt), (params, opt)), None

            carry, _ = jax.lax.scan(step, carry, jnp.arange(steps))
            return carry, None

        (params, opt), _ = jax.lax.scan(epoch, (st["params"], st["opt"]), first_epoch + jnp.arange(check_every))
        logits = _batched_logits(params, hp["pooling"], table, vidx, vmask, vbatch)
        score = _f1(jnp.argmax(logits, -1) == positive, vy == positive, v_real)
        active = st["active"]
        improved = active & (score > st["best_score"])
        pick = lambda new, old: jax.tree.map(lambda a, b: jnp.where(active, a, b), new, old)
        bad = jnp.where(improved, 0, st["bad"] + active.astype(jnp.int32))
        return {"params": pick(params, st["params"]), "opt": pick(opt, st["opt"]),
                "best_params": jax.tree.map(lambda a, b: jnp.where(improved, a, b), params, st["best_params"]),
                "best_score": jnp.where(improved, score, st["best_score"]),
                "best_epoch": jnp.where(improved, first_epoch + check_every, st["best_epoch"]),
                "epochs": st["epochs"] + jnp.where(active, check_every, 0),
                "bad": bad, "active": active & (bad < patience)}

    in_axes = (0, 0) + (None,) * 11

    def run(*args):
        new = jax.vmap(point_round, in_axes=in_axes)(*args)
        return new, new["active"] + 0

    return jax.jit(run, donate_argnums=(0,))


@dataclass
class HeadRun:
    """The trained song-head grid: per point (grid order) its best validation F1, epochs and best weights."""

    grid: HeadGrid
    val_scores: np.ndarray  # f32[P]
    best_epochs: np.ndarray  # i32[P]
    epochs: np.ndarray  # i32[P]
    params: list  # per point: params at its best validation score


def train_heads(table, train: Bags, val: Bags, grid: HeadGrid, *, num_classes: int = 2, positive: int = 1,
                progress: bool = False) -> HeadRun:
    """Train every point of `grid` on the bags of a shared chunk table; same-shape points as one vmapped group.

    table: f32[C, D] chunk embeddings (standardised by the caller); train/val: Bags indexing it.
    positive: the class whose validation F1 selects epochs and points.
    """
    table = device_table(table)
    sched = grid.schedule
    n_pad, vbatch = bucket(len(train)), min(256, bucket(len(val)))
    nv_pad = -(-bucket(len(val)) // vbatch) * vbatch  # validation is scored vbatch songs at a time
    idx, mask, y = _pad_songs(train, n_pad)
    vidx, vmask, vy = _pad_songs(val, nv_pad)
    v_real = jnp.arange(nv_pad) < len(val)
    round_fn = _make_round(n_pad, vbatch, sched.batch_size, sched.check_every, positive)
    rounds = max(1, sched.max_epochs // sched.check_every)
    n_points = len(grid.points)
    val_scores = np.full(n_points, -np.inf, np.float32)
    best_ep, ran = np.zeros(n_points, np.int32), np.zeros(n_points, np.int32)
    params: list = [None] * n_points
    groups: dict[tuple[int, int], list[int]] = {}
    for i, p in enumerate(grid.points):
        groups.setdefault((p.hidden_layers, p.hidden_dim if p.hidden_layers else 0), []).append(i)
    from tqdm.auto import tqdm  # ~40 ms; imported on use, `audiorep --help` stays fast

    bar = tqdm(total=rounds * len(groups), desc="song heads", unit="round", disable=not progress, leave=False)
    for members in groups.values():
        pts = [grid.points[i] for i in members]
        p0 = jax.tree.map(lambda *a: jnp.stack(a),
                          *[init_head(p, table.shape[1], num_classes, grid.attention_dim) for p in pts])
        hp = {"lr": jnp.array([p.lr for p in pts], jnp.float32),
              "pooling": jnp.array([POOLINGS.index(p.pooling) for p in pts], jnp.int32),
              "data_key": jnp.stack([jax.random.fold_in(jax.random.PRNGKey(p.seed), 1) for p in pts])}
        n = len(pts)
        state = {"params": p0, "opt": jax.vmap(_adam.init)(p0), "best_params": p0,
                 "best_score": jnp.full(n, -jnp.inf, jnp.float32), "best_epoch": jnp.zeros(n, jnp.int32),
                 "epochs": jnp.zeros(n, jnp.int32), "bad": jnp.zeros(n, jnp.int32), "active": jnp.ones(n, bool)}
        state = jax.tree.map(jnp.array, state)  # own buffers: the round donates its input
        previous = None
        for r in range(rounds):  # the host reads the previous round's mask while this one runs (as probes.py)
            state, latest = round_fn(state, hp, table, idx, mask, y, jnp.int32(len(train)), vidx, vmask, vy, v_real,
                                     jnp.int32(r * sched.check_every), jnp.int32(sched.patience))
            bar.update(1)
            if previous is not None and not np.asarray(previous).any():
                bar.update(rounds - r - 1)
                break
            previous = latest
        host = jax.device_get({k: state[k] for k in ("best_score", "best_epoch", "epochs")})
        for j, i in enumerate(members):
            val_scores[i], best_ep[i], ran[i] = host["best_score"][j], host["best_epoch"][j], host["epochs"][j]
            params[i] = jax.tree.map(lambda a, j=j: a[j], state["best_params"])
    bar.close()
    return HeadRun(grid, val_scores, best_ep, ran, params)


@jax.jit
def _logits(params, table, idx, mask, pooling):
    return head_logits(params, table[idx], mask, pooling)


def predict_heads(run: HeadRun, index: int, table, bags: Bags, batch: int = 256) -> np.ndarray:
    """Class probabilities of grid point `index` (its best weights) for every song.  -> f32[S, classes]."""
    pooling = jnp.int32(POOLINGS.index(run.grid.points[index].pooling))
    table = jnp.asarray(table, jnp.float32)
    batch = min(batch, bucket(len(bags)))
    idx, mask, _ = _pad_songs(bags, -(-len(bags) // batch) * batch)  # one batch shape: one compile
    z = np.concatenate([np.asarray(_logits(run.params[index], table, idx[i:i + batch], mask[i:i + batch], pooling))
                        for i in range(0, idx.shape[0], batch)])[:len(bags)]
    z = z - z.max(-1, keepdims=True)
    return (np.exp(z) / np.exp(z).sum(-1, keepdims=True)).astype(np.float32)
