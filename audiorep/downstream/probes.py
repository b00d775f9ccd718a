"""Linear, MLP and kNN probes on frozen embeddings; the whole hyperparameter grid trained at once.

The MLP probe is HEAR's (hear-eval-kit `FullyConnectedPrediction`): for each hidden layer Linear ->
BatchNorm -> Dropout -> ReLU, then a Linear head; Xavier (uniform or normal) weights with gain 1 on the
first layer and sqrt(2) after a ReLU, PyTorch's default uniform biases; Adam; softmax cross-entropy
(multi-class) or sigmoid BCE (multi-label); validation every `check_every` epochs and early stopping after
`patience` checks without a strict improvement, keeping the best-on-validation weights. `hidden_layers=0`
is the linear probe.

Unlike hear-eval-kit (one PyTorch-Lightning model per grid point, one after another) every grid point of
the same shape is stacked along a leading grid axis and `jax.vmap`ped inside one jitted function that runs
`check_every` epochs (`lax.scan` over epochs and minibatches), scores validation and updates the per-point
early-stopping state (best score, best weights, patience counter, active mask). A stopped point keeps
its best weights and stops changing. The host only loops over these rounds (for the progress bar, to
end when every point has stopped, and to drop stopped points from the stack once half of a group has
stopped, so they stop costing compute). Every point carries its own seed: its initial weights, minibatch order
and dropout masks come from that seed alone, so a point trained in a grid equals the same point trained
alone (tests/test_probes.py).

Selection picks the best validation score across the grid; the test split is scored once, with that
point. The kNN probe (X-ARES style) votes among the k most cosine-similar training embeddings, k chosen
on validation. Used by downstream/tasks/; scores come from downstream/metrics.py.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from audiorep.downstream import metrics as M
from audiorep.errors import AudiorepError

INITS = ("xavier_uniform", "xavier_normal")


class ProbeError(AudiorepError, ValueError):
    """Embeddings or labels a probe cannot train on."""


# ----------------------------------------------------------------------------------------- grids
@dataclass(frozen=True)
class GridPoint:
    """One probe configuration. `seed` fixes its initial weights, minibatch order and dropout masks."""

    hidden_layers: int = 1
    hidden_dim: int = 1024
    lr: float = 1e-3
    init: str = "xavier_uniform"
    dropout: float = 0.1
    seed: int = 0

    def __post_init__(self):
        if self.init not in INITS:
            raise ProbeError(f"init must be one of {INITS}, got {self.init!r}.")
        if self.hidden_layers < 0 or self.hidden_dim < 1 or not self.lr > 0 or not 0 <= self.dropout < 1:
            raise ProbeError(f"invalid grid point {self}: need hidden_layers >= 0, hidden_dim >= 1, lr > 0 "
                             "and 0 <= dropout < 1.")


@dataclass(frozen=True)
class Schedule:
    """Training schedule shared by a grid (HEAR defaults: 500 epochs, check every 3, patience 20, batch 1024)."""

    max_epochs: int = 500
    check_every: int = 3
    patience: int = 20
    batch_size: int = 1024

    def __post_init__(self):
        if min(self.max_epochs, self.check_every, self.patience, self.batch_size) < 1:
            raise ProbeError(f"every Schedule field must be >= 1, got {self}.")


def check_repeats(what: str, points: tuple, repeats: int) -> None:
    """`points` must be `repeats` repeat-major copies of its first len(points) // repeats configurations that differ
    only in their `seed` (see `Grid`); otherwise a ProbeError that starts with `what` (e.g. "grid 'fast'")."""
    if repeats < 1 or not points or len(points) % repeats:
        raise ProbeError(f"{what}: {len(points)} points cannot hold {repeats} repeats of the same configurations "
                         "(need repeats >= 1 dividing the number of points).")
    n = len(points) // repeats
    for i, point in enumerate(points[n:], n):
        if dataclasses.replace(point, seed=0) != dataclasses.replace(points[i % n], seed=0):
            raise ProbeError(f"{what}: point {i} ({point}) should repeat configuration {i % n} ({points[i % n]}) "
                             "with another seed.")


@dataclass(frozen=True)
class Grid:
    """Probe configurations trained together. With `repeats` R > 1 the points are R copies of the first
    `configs` configurations that differ only in their seeds (repeat-major: point r * configs + i is repeat r
    of configuration i); a configuration is selected on its validation score averaged over the repeats and
    reported with its test metrics averaged over them, so one probe initialisation cannot decide a comparison.
    """

    name: str
    points: tuple[GridPoint, ...]
    schedule: Schedule
    repeats: int = 1

    kind = "grid"  # what errors call it

    def __post_init__(self):
        check_repeats(f"{self.kind} {self.name!r}", self.points, self.repeats)

    @property
    def configs(self) -> int:
        """Distinct configurations (points per repeat)."""
        return len(self.points) // self.repeats

    def to_dict(self) -> dict:
        return {"name": self.name, "points": [dataclasses.asdict(p) for p in self.points],
                "schedule": dataclasses.asdict(self.schedule), "repeats": self.repeats}


HEAR_LRS = (3.2e-3, 1e-3, 3.2e-4, 1e-4)


def make_grid(name: str = "fast", seed: int = 0, repeats: int = 1, **schedule) -> Grid:
    """A named grid. Repeat r of configuration i gets seed `seed * 1000 + r * configs + i` (repeat 0: `seed *
    1000 + i`, so one repeat is the grid as it always was).

    'full': HEAR's 16 points (1 or 2 hidden layers of 1024) x (lr 3.2e-3, 1e-3, 3.2e-4, 1e-4) x (Xavier
      uniform, normal); 500 epochs, validation every 3, patience 20.
    'fast': 1 hidden layer of 1024 x (lr 3.2e-3, 1e-3) x (uniform, normal), plus two linear probes
      (lr 3.2e-3, 1e-3); at most 60 epochs, patience 5 checks.
    'linear': linear probes at the four HEAR learning rates x two initialisations; 200 epochs.
    `schedule` overrides Schedule fields (e.g. max_epochs=20).
    """
    if name == "full":
        shapes = [(h, lr, init) for h in (1, 2) for lr in HEAR_LRS for init in INITS]
        sched = Schedule()
    elif name == "fast":
        shapes = [(1, lr, init) for lr in HEAR_LRS[:2] for init in INITS] + [(0, lr, INITS[0]) for lr in HEAR_LRS[:2]]
        sched = Schedule(max_epochs=60, check_every=3, patience=5)
    elif name == "linear":
        shapes = [(0, lr, init) for lr in HEAR_LRS for init in INITS]
        sched = Schedule(max_epochs=200, check_every=3, patience=10)
    else:
        raise ProbeError(f"unknown grid {name!r}; choose 'fast', 'full' or 'linear'.")
    if not 1 <= repeats <= 1000 // len(shapes):
        raise ProbeError(f"repeats must be in [1, {1000 // len(shapes)}] for the {name!r} grid, got {repeats}.")
    points = tuple(GridPoint(hidden_layers=h, lr=lr, init=init, seed=seed * 1000 + r * len(shapes) + i)
                   for r in range(repeats) for i, (h, lr, init) in enumerate(shapes))
    return Grid(name, points, dataclasses.replace(sched, **schedule), repeats)


# ----------------------------------------------------------------------------- the MLP, one point
def _init_params(point: GridPoint, dim: int, classes: int) -> tuple[dict, list]:
    """Parameters and BatchNorm running statistics of one grid point, from its seed (PyTorch's init scheme)."""
    key = jax.random.fold_in(jax.random.PRNGKey(point.seed), 0)
    sizes = [dim] + [point.hidden_dim] * point.hidden_layers + [classes]
    layers, stats = [], []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        key, kw, kb = jax.random.split(key, 3)
        gain = 1.0 if i == 0 else math.sqrt(2.0)  # torch calculate_gain('linear') / ('relu')
        if point.init == "xavier_uniform":
            bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
            w = jax.random.uniform(kw, (fan_in, fan_out), jnp.float32, -bound, bound)
        else:
            w = gain * math.sqrt(2.0 / (fan_in + fan_out)) * jax.random.normal(kw, (fan_in, fan_out), jnp.float32)
        b_bound = 1.0 / math.sqrt(fan_in)
        layer = {"w": w, "b": jax.random.uniform(kb, (fan_out,), jnp.float32, -b_bound, b_bound)}
        if i < point.hidden_layers:
            layer |= {"gamma": jnp.ones(fan_out), "beta": jnp.zeros(fan_out)}
            stats.append({"mean": jnp.zeros(fan_out), "var": jnp.ones(fan_out)})
        layers.append(layer)
    return {"layers": layers}, stats


def _dropout_keep(key, rate, shape):
    """bool[shape] keep-mask with P(keep) = 1 - rate, from one key.

    Threefry bits for every unit cost more than the probe's matmuls on CPU, so the key is only used to
    seed a counter-based integer hash (murmur3's 32-bit finaliser over the element index): a handful of
    integer operations per unit, deterministic, and plenty random for dropout masks.
    """
    seed = jax.random.bits(key, (), jnp.uint32)
    x = jax.lax.iota(jnp.uint32, math.prod(shape)).reshape(shape) * jnp.uint32(0x9E3779B9) + seed
    x = (x ^ (x >> 16)) * jnp.uint32(0x85EBCA6B)
    x = (x ^ (x >> 13)) * jnp.uint32(0xC2B2AE35)
    x = x ^ (x >> 16)
    threshold = jnp.minimum(jnp.asarray(rate, jnp.float32) * 4294967296.0, 4294967040.0).astype(jnp.uint32)
    return x >= threshold


def _forward(params, stats, x, *, train: bool, weights=None, rate=0.0, key=None):
    """f32[B, D] -> (logits f32[B, C], new BatchNorm stats).

    train: BatchNorm uses the statistics of the real rows (`weights` 1, padding 0) and updates the running
    ones (momentum 0.1, unbiased variance, as torch.nn.BatchNorm1d); dropout at `rate` with `key`.
    """
    layers = params["layers"]
    new_stats = []
    h = x
    for i, layer in enumerate(layers[:-1]):
        h = h @ layer["w"] + layer["b"]
        st = stats[i]
        if train:
            n = jnp.sum(weights)
            mean = jnp.sum(weights[:, None] * h, 0) / n
            var = jnp.sum(weights[:, None] * (h - mean) ** 2, 0) / n
            unbiased = var * n / jnp.maximum(n - 1.0, 1.0)
            new_stats.append({"mean": 0.9 * st["mean"] + 0.1 * mean, "var": 0.9 * st["var"] + 0.1 * unbiased})
        else:
            mean, var = st["mean"], st["var"]
            new_stats.append(st)
        h = (h - mean) * jax.lax.rsqrt(var + 1e-5) * layer["gamma"] + layer["beta"]
        if train:
            keep = _dropout_keep(jax.random.fold_in(key, i), rate, h.shape)
            h = jnp.where(keep, h / (1.0 - rate), 0.0)
        h = jax.nn.relu(h)
    return h @ layers[-1]["w"] + layers[-1]["b"], new_stats


def _loss(logits, y, weights, multilabel: bool):
    """Mean loss over real rows. y: i32[B] (multi-class) or f32[B, C] (multi-label)."""
    if multilabel:
        per = optax.sigmoid_binary_cross_entropy(logits, y).mean(-1)
    else:
        per = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    return jnp.sum(per * weights) / jnp.sum(weights)


def _val_score(logits, y, multilabel: bool, real=None):
    """Selection metric inside the jitted loop: accuracy (multi-class) or macro mAP (multi-label, ties broken
    by order; the reported test mAP in metrics.py groups ties as sklearn does). `real` bool[N] marks the real
    rows of a padded split (None: all)."""
    real = jnp.ones(logits.shape[0], bool) if real is None else real
    if not multilabel:
        return jnp.sum(real * (jnp.argmax(logits, -1) == y)) / jnp.sum(real)
    logits = jnp.where(real[:, None], logits, -jnp.inf)  # padding ranks last: it never precedes a positive
    y = y * real[:, None]
    order = jnp.argsort(-logits, axis=0)
    t = jnp.take_along_axis(y, order, axis=0)
    precision = jnp.cumsum(t, 0) / jnp.arange(1, t.shape[0] + 1, dtype=jnp.float32)[:, None]
    n_pos = t.sum(0)
    ap = jnp.sum(precision * t, 0) / jnp.maximum(n_pos, 1.0)
    has = n_pos > 0
    return jnp.sum(jnp.where(has, ap, 0.0)) / jnp.maximum(has.sum(), 1)


# ---------------------------------------------------------------------------------- vmapped training
_adam = optax.scale_by_adam()  # torch.optim.Adam defaults: b1 0.9, b2 0.999, eps 1e-8 outside the sqrt


def bucket(n: int) -> int:
    """Rows a split of n examples is padded to (at most 1/8 more), so folds of similar size share a compile."""
    m = 1 << max(0, int(n).bit_length() - 4)
    return -(-int(n) // m) * m


@functools.lru_cache(maxsize=32)
def _make_round(n_pad: int, batch_size: int, check_every: int, multilabel: bool):
    """One jitted round for a stacked group: `check_every` epochs of every point, then validation and the
    early-stopping update. All arrays of `state` carry the grid axis P first. The training split is padded to
    `n_pad` rows of which the first `n_real` are real: each epoch orders the real rows at random ahead of the
    padding, so minibatches are those of an unpadded epoch and all-padding steps leave the point unchanged.
    Only what shapes the program is a cache key (max_epochs and patience are not): every grid, fold and task
    with the same padded size reuses one compile (on a GPU the compile costs more than a whole grid)."""
    batch = min(batch_size, n_pad)
    steps = -(-n_pad // batch)
    slots = jnp.arange(steps * batch).reshape(steps, batch)

    def point_round(st, hp, x, y, n_real, xv, yv, v_real, first_epoch, patience):
        def epoch(carry, e):
            u = jax.random.uniform(jax.random.fold_in(hp["data_key"], e), (n_pad,))
            perm = jnp.argsort(jnp.where(jnp.arange(n_pad) < n_real, u, 2.0))
            idx = jnp.pad(perm, (0, steps * batch - n_pad)).reshape(steps, batch)

            def step(carry, s):
                params, opt, stats = carry
                rows, w = idx[s], (slots[s] < n_real).astype(jnp.float32)
                key = jax.random.fold_in(hp["drop_key"], e * steps + s)

                def loss_fn(p):
                    logits, new_stats = _forward(p, stats, x[rows], train=True, weights=w, rate=hp["dropout"],
                                                 key=key)
                    return _loss(logits, y[rows], w, multilabel), new_stats

                grads, new_stats = jax.grad(loss_fn, has_aux=True)(params)
                updates, new_opt = _adam.update(grads, opt)
                new_params = jax.tree.map(lambda p, u: p - hp["lr"] * u, params, updates)
                live = jnp.sum(w) > 0
                keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(live, a, b), new, old)
                return keep((new_params, new_opt, new_stats), (params, opt, stats)), None

            carry, _ = jax.lax.scan(step, carry, jnp.arange(steps))
            return carry, None

        epochs = first_epoch + jnp.arange(check_every)
        (params, opt, stats), _ = jax.lax.scan(epoch, (st["params"], st["opt"], st["stats"]), epochs)
        logits, _ = _forward(params, stats, xv, train=False)
        score = _val_score(logits, yv, multilabel, v_real)
        active = st["active"]
        improved = active & (score > st["best_score"])
        pick = lambda new, old: jax.tree.map(lambda a, b: jnp.where(active, a, b), new, old)
        keep_best = lambda new, old: jax.tree.map(lambda a, b: jnp.where(improved, a, b), new, old)
        bad = jnp.where(improved, 0, st["bad"] + active.astype(jnp.int32))
        return {
            "params": pick(params, st["params"]), "opt": pick(opt, st["opt"]), "stats": pick(stats, st["stats"]),
            "best_params": keep_best(params, st["best_params"]), "best_stats": keep_best(stats, st["best_stats"]),
            "best_score": jnp.where(improved, score, st["best_score"]),
            "best_epoch": jnp.where(improved, first_epoch + check_every, st["best_epoch"]),
            "epochs": st["epochs"] + jnp.where(active, check_every, 0),
            "bad": bad, "active": active & (bad < patience),
        }

    def run(*args):
        new = jax.vmap(point_round, in_axes=(0, 0, None, None, None, None, None, None, None, None))(*args)
        return new, new["active"] + 0  # a copy the host reads while the next round (which donates state) runs

    return jax.jit(run, donate_argnums=(0,))


def _pad_rows(a, n: int):
    a = jnp.asarray(a)
    return jnp.pad(a, [(0, n - a.shape[0])] + [(0, 0)] * (a.ndim - 1))


def _stack(trees):
    return jax.tree.map(lambda *a: jnp.stack(a), *trees)


@dataclass
class GridRun:
    """The trained grid: per point (in grid order) its best validation score, epochs and best weights."""

    points: tuple[GridPoint, ...]
    val_scores: np.ndarray  # f32[P]
    best_epochs: np.ndarray  # i32[P]
    epochs: np.ndarray  # i32[P]
    params: list  # per point: (params, stats) at its best validation score

    @property
    def best(self) -> int:
        """Index of the selected point: highest validation score, first on ties."""
        return int(np.argmax(self.val_scores))


def train_grid(x_train, y_train, x_val, y_val, grid: Grid, *, num_classes: int, multilabel: bool,
               progress: bool = False, compact: int = 8) -> GridRun:
    """Train every point of `grid` on standardised embeddings; same-shape points as one vmapped group.

    x_*: f32[N, D]; y_*: i32[N] (multi-class) or {0,1}[N, C] (multi-label).
    compact: when at most half of a group is still training and at least this many rounds remain, the
      stopped points leave the stacked group (one more compile, less work per round); 0 disables it.
    """
    x_train, x_val = jnp.asarray(x_train, jnp.float32), jnp.asarray(x_val, jnp.float32)
    y_train = jnp.asarray(y_train, jnp.float32 if multilabel else jnp.int32)
    y_val = jnp.asarray(y_val, jnp.float32 if multilabel else jnp.int32)
    dim, sched = x_train.shape[1], grid.schedule
    groups: dict[tuple[int, int], list[int]] = {}
    for i, p in enumerate(grid.points):
        groups.setdefault((p.hidden_layers, p.hidden_dim if p.hidden_layers else 0), []).append(i)
    rounds = max(1, sched.max_epochs // sched.check_every)
    n_real, nv_real = x_train.shape[0], x_val.shape[0]
    n_pad, nv_pad = bucket(n_real), bucket(nv_real)
    x_train, y_train = _pad_rows(x_train, n_pad), _pad_rows(y_train, n_pad)
    x_val, y_val = _pad_rows(x_val, nv_pad), _pad_rows(y_val, nv_pad)
    v_real = jnp.arange(nv_pad) < nv_real
    round_fn = _make_round(n_pad, sched.batch_size, sched.check_every, multilabel)

    val = np.full(len(grid.points), -np.inf, np.float32)
    best_ep = np.zeros(len(grid.points), np.int32)
    ran = np.zeros(len(grid.points), np.int32)
    params: list = [None] * len(grid.points)
    bar = _progress(total=rounds * len(groups), desc="probe grid", enabled=progress)
    for members in groups.values():
        pts = [grid.points[i] for i in members]
        inits = [_init_params(p, dim, num_classes) for p in pts]
        p0, s0 = _stack([i[0] for i in inits]), _stack([i[1] for i in inits])
        keys = [jax.random.split(jax.random.fold_in(jax.random.PRNGKey(p.seed), 1)) for p in pts]
        hp = {"lr": jnp.array([p.lr for p in pts], jnp.float32),
              "dropout": jnp.array([p.dropout for p in pts], jnp.float32),
              "data_key": jnp.stack([k[0] for k in keys]), "drop_key": jnp.stack([k[1] for k in keys])}
        n = len(pts)
        state = {"params": p0, "opt": jax.vmap(_adam.init)(p0), "stats": s0,
                 "best_params": p0, "best_stats": s0,
                 "best_score": jnp.full(n, -jnp.inf, jnp.float32), "best_epoch": jnp.zeros(n, jnp.int32),
                 "epochs": jnp.zeros(n, jnp.int32), "bad": jnp.zeros(n, jnp.int32), "active": jnp.ones(n, bool)}
        state = jax.tree.map(jnp.array, state)  # own buffers: the round donates its input

        def retire(state, members, done):
            """Record the finished points `done` (positions in the stacked group)."""
            host = jax.device_get({k: state[k] for k in ("best_score", "best_epoch", "epochs")})
            for j in done:
                i = members[j]
                val[i], best_ep[i], ran[i] = host["best_score"][j], host["best_epoch"][j], host["epochs"][j]
                params[i] = jax.tree.map(lambda a, j=j: a[j], (state["best_params"], state["best_stats"]))

        # The host reads the previous round's active mask while this round runs, so the device never waits for
        # Python: a round run after every point stopped changes nothing (stopped points are frozen), and points
        # seen stopped one round late are still stopped now.
        previous = None
        for r in range(rounds):
            state, latest = round_fn(state, hp, x_train, y_train, jnp.int32(n_real), x_val, y_val, v_real,
                                     jnp.int32(r * sched.check_every), jnp.int32(sched.patience))
            bar.update(1)
            if previous is None:
                previous = latest
                continue
            active, previous = np.asarray(previous), latest
            if not active.any():
                bar.update(rounds - r - 1)
                break
            # Stopped points still cost compute inside the vmap: once at most half of the group is active (and
            # enough rounds remain to repay a compile for the smaller group), drop the stopped ones.
            if compact and active.sum() <= len(members) // 2 and rounds - r - 1 >= compact:
                retire(state, members, [j for j in range(len(members)) if not active[j]])
                keep = jnp.asarray(np.flatnonzero(active))
                state = jax.tree.map(lambda a, keep=keep: a[keep], state)
                hp = jax.tree.map(lambda a, keep=keep: a[keep], hp)
                previous = previous[keep]
                members = [members[j] for j in np.flatnonzero(active)]
        retire(state, members, range(len(members)))
    bar.close()
    return GridRun(grid.points, val, best_ep, ran, params)


def predict(run: GridRun, index: int, x, batch: int = 8192) -> np.ndarray:
    """Logits of grid point `index` (its best weights, eval mode).  f32[N, D] -> f32[N, C]."""
    params, stats = run.params[index]
    return head_logits(params, stats, x, batch)


def head_logits(params, stats, x, batch: int = 8192) -> np.ndarray:
    """Logits of a trained probe (parameters and BatchNorm statistics, eval mode) on standardised embeddings.
    f32[N, D] -> f32[N, C]; the same jitted path as the probe's test-time scores."""
    x = np.asarray(x, np.float32)
    return np.concatenate([np.asarray(_eval_logits(params, stats, x[i:i + batch]))
                           for i in range(0, max(len(x), 1), batch)])


@jax.jit
def _eval_logits(params, stats, x):
    return _forward(params, stats, x, train=False)[0]


# ------------------------------------------------------------------------------------- the results
@dataclass
class ProbeResult:
    """What a probe run reports: test scores of the selected configuration, and how it was chosen."""

    kind: str  # 'mlp' | 'knn'
    selection_metric: str
    val_score: float
    test: dict[str, float]
    selected: dict
    grid: dict
    val_scores: list[float]
    seed: int
    epochs: list[int] = field(default_factory=list)
    test_scores: np.ndarray | None = field(default=None, repr=False)  # test probabilities (repeats: their mean)
    head: dict | None = field(default=None, repr=False)
    """MLP/linear probes: the selected configuration's trained head (its first repeat), as numpy arrays:
    {'params': {'layers': [...]}, 'stats': [...], 'mean': f32[D], 'std': f32[D]} (mean/std: the training split's
    standardisation). downstream/heads.py saves it."""

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("test_scores")
        d.pop("head")
        return d


def standardisation(x_train) -> tuple[np.ndarray, np.ndarray]:
    """The training split's per-feature mean and standard deviation (1 for constant features). f32[D] each."""
    x_train = np.asarray(x_train, np.float32)
    std = x_train.std(0)
    return x_train.mean(0), np.where(std < 1e-6, 1.0, std).astype(np.float32)


def standardise(x_train, *others):
    """Scale every split with the training mean and standard deviation (constant features left at 0)."""
    mean, std = standardisation(x_train)
    return tuple((np.asarray(x, np.float32) - mean) / std for x in (x_train, *others))


def _check_split(x, y, name: str, multilabel: bool, num_classes: int) -> None:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ProbeError(f"{name} embeddings must be f32[N > 0, D], got shape {x.shape}.")
    if not np.all(np.isfinite(x)):
        raise ProbeError(f"{name} embeddings contain NaN/Inf; re-embed (the cache may hold a broken shard).")
    y = np.asarray(y)
    if y.shape[0] != x.shape[0]:
        raise ProbeError(f"{name}: {x.shape[0]} embeddings but {y.shape[0]} labels; they must pair one to one.")
    if multilabel and (y.ndim != 2 or y.shape[1] != num_classes):
        raise ProbeError(f"{name}: multi-label targets must be {{0,1}}[N, {num_classes}], got {y.shape}.")
    if not multilabel and (y.ndim != 1 or y.min() < 0 or y.max() >= num_classes):
        raise ProbeError(f"{name}: multi-class labels must be int[N] in [0, {num_classes}).")


def _report(y, scores, multilabel: bool, num_classes: int, positive: int = 1) -> dict[str, float]:
    if multilabel:
        return M.multilabel_scores(y, scores)
    out = M.multiclass_scores(y, scores)
    if num_classes == 2 and len(np.unique(y)) == 2:
        out |= M.binary_scores(y, scores, positive=positive)
    return out


def fit_probe(x_train, y_train, x_val, y_val, x_test, y_test, *, num_classes: int, multilabel: bool = False,
              grid: Grid | str = "fast", seed: int = 0, progress: bool = False, positive: int = 1) -> ProbeResult:
    """Standardise, train the grid, select on validation, score the test split once.

    x_*: f32[N, D]; y_*: i32[N] or {0,1}[N, C]. Returns the metrics.py report of the selected configuration
    (accuracy / mAP / ...; with grid.repeats > 1 each metric is the mean over the repeats), its validation
    score, and the grid with its seeds. positive: the target class of the detection report (EER, min-DCF, ...)
    of a 2-class task.
    """
    grid = make_grid(grid, seed) if isinstance(grid, str) else grid
    for name, x, y in (("train", x_train, y_train), ("validation", x_val, y_val), ("test", x_test, y_test)):
        _check_split(x, y, name, multilabel, num_classes)
    xs = standardise(x_train, x_val, x_test)
    run = train_grid(xs[0], y_train, xs[1], y_val, grid, num_classes=num_classes, multilabel=multilabel,
                     progress=progress)
    n = grid.configs
    val = run.val_scores.reshape(grid.repeats, n).mean(0)
    best = int(np.argmax(val))  # first on ties, as GridRun.best
    members = [r * n + best for r in range(grid.repeats)]
    reports, probs = [], []
    for i in members:
        logits = predict(run, i, xs[2])
        probs.append(1 / (1 + np.exp(-logits)) if multilabel else _softmax(logits))
        reports.append(_report(np.asarray(y_test), probs[-1], multilabel, num_classes, positive))
    selected = dataclasses.asdict(grid.points[best]) | {"best_epoch": int(run.best_epochs[best])}
    if grid.repeats > 1:
        selected |= {"repeat_seeds": [grid.points[i].seed for i in members],
                     "repeat_best_epochs": [int(run.best_epochs[i]) for i in members],
                     "repeat_val_scores": [float(run.val_scores[i]) for i in members],
                     "repeat_test": [{k: float(r[k]) for k in r} for r in reports]}
    mean, std = standardisation(x_train)
    params, stats = jax.device_get(run.params[members[0]])
    head = {"params": params, "stats": stats, "mean": mean, "std": std}
    return ProbeResult(kind="mlp" if grid.points[best].hidden_layers else "linear",
                       selection_metric="map" if multilabel else "accuracy", val_score=float(val[best]),
                       test={k: float(np.mean([r[k] for r in reports])) for k in reports[0]},
                       selected=selected, grid=grid.to_dict(), val_scores=[float(v) for v in run.val_scores],
                       seed=seed, epochs=[int(e) for e in run.epochs], test_scores=np.mean(probs, axis=0),
                       head=head)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


# ---------------------------------------------------------------------------------------------- kNN
@functools.partial(jax.jit, static_argnames="k")
def _topk_cosine(q, x, k: int):
    """f32[Q, D], f32[N, D] -> (similarities f32[Q, k], indices i32[Q, k])."""
    return jax.lax.top_k(q @ x.T, k)


def _neighbours(q: np.ndarray, x: np.ndarray, k: int, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine similarities of the k nearest rows of x for each row of q (both L2-normalised)."""
    xs = jnp.asarray(x)
    out_s, out_i = [], []
    for i in range(0, q.shape[0], chunk):
        s, idx = _topk_cosine(jnp.asarray(q[i:i + chunk]), xs, k=k)
        out_s.append(np.asarray(s))
        out_i.append(np.asarray(idx))
    return np.concatenate(out_i), np.concatenate(out_s)


def _knn_scores(idx, sims, y_train_hot, ks: Sequence[int]) -> dict[int, np.ndarray]:
    """Per k: f32[Nq, C] neighbour vote fractions, ties among votes broken by summed similarity."""
    hot = y_train_hot[idx]  # [Nq, kmax, C]
    votes = np.cumsum(hot, 1)
    weighted = np.cumsum(hot * sims[..., None], 1)
    return {k: (votes[:, k - 1] + 1e-3 * weighted[:, k - 1] / k) / k for k in ks}


def knn_probe(x_train, y_train, x_val, y_val, x_test, y_test, *, num_classes: int, multilabel: bool = False,
              ks: Sequence[int] = (1, 3, 5, 10, 20, 50), seed: int = 0, positive: int = 1) -> ProbeResult:
    """Cosine kNN on standardised, L2-normalised embeddings; k chosen on validation (accuracy or mAP).
    positive: as for `fit_probe`."""
    for name, x, y in (("train", x_train, y_train), ("validation", x_val, y_val), ("test", x_test, y_test)):
        _check_split(x, y, name, multilabel, num_classes)
    xs = [x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12) for x in standardise(x_train, x_val, x_test)]
    ks = sorted({int(k) for k in ks if 1 <= k <= xs[0].shape[0]})
    if not ks:
        raise ProbeError(f"no k in the kNN grid fits {xs[0].shape[0]} training examples.")
    hot = np.asarray(y_train, np.float32) if multilabel else M.one_hot(y_train, num_classes)
    score = (lambda y, s: M.mean_average_precision(y, s)) if multilabel else M.accuracy
    val = _knn_scores(*_neighbours(xs[1], xs[0], ks[-1]), hot, ks)
    val_scores = [score(y_val, val[k]) for k in ks]
    best = int(np.argmax(val_scores))
    test = _knn_scores(*_neighbours(xs[2], xs[0], ks[-1]), hot, [ks[best]])[ks[best]]
    return ProbeResult(kind="knn", selection_metric="map" if multilabel else "accuracy",
                       val_score=float(val_scores[best]), test=_report(np.asarray(y_test), test, multilabel,
                                                                         num_classes, positive),
                       selected={"k": ks[best]}, grid={"name": "knn", "ks": ks}, val_scores=val_scores, seed=seed,
                       test_scores=test)


# ------------------------------------------------------------------------------------------- helpers
class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()

    return tqdm(total=total, desc=desc, unit="round", leave=False)


# The head's parts under public names: downstream/semisup.py trains the same heads with other losses.
init_params = _init_params
forward = _forward
pad_rows = _pad_rows
