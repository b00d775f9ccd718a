"""Continual learning of a detection head over a stream of attacks: naive, joint, replay, EWC and RWM.

A deployed detector meets new generators one after another. Experience k holds bona fide clips and the clips of
attack k (`--order`); the head on frozen embeddings is trained on experience 1, then updated on experience 2, and so
on, and after every experience it is scored on the test set of every experience. `run_stream` does that for one
method on embeddings (f32[N, D], no encoder needed); `run_task` reads a detection task (records carrying
`attack_id` and a speaker), embeds it through the cache and builds the experiences (`make_experiences`).

Experiences (`make_experiences`): speakers (Record.group; the file where unknown) are split once, seeded, into a
training and a test side (`test_fraction`), so train and test never share a speaker; `split='source'` holds out
source recordings instead (a bona fide clip and the spoofs made from it: labels.csv's `source_clip`, else the file
name), for folders with so few speakers that a head cannot learn an attack on unseen ones (FSDD's six: docs/
probing.md). Bona fide clips of each side are dealt out over the K experiences (seeded), so each experience sees
its own bona fide clips, as a stream would. Embeddings are z-scored with the first experience's training statistics
(`standardise`).

Head: the probe's head shape (probes.py: Xavier-uniform Linear layers, ReLU between; `hidden` 0 = linear) with two
logits (spoof, bona fide); the detection score is logit(bona fide) - logit(spoof). BatchNorm and dropout of the
probe grid are left out: running statistics would themselves drift across experiences and blur what each method
protects. Training is Adam on mini-batches (`batch_size` clips drawn with replacement; 0 = the whole experience at
every step) for a fixed number of steps per experience (no validation split: a stream offers no held-out data of
future attacks to select on). Every seed (head initialisation, batch draws, replay draws) is one slice of a
`jax.vmap`ped, jitted scan (`train_head`).

Methods:
  naive   fine-tune on the current experience only: the forgetting baseline.
  joint   retrain from the initialisation on the training data of every experience so far: the upper bound.
  replay  experience replay (Chaudhry et al., 2019, "On Tiny Episodic Memories in Continual Learning"): fine-tune on
          the current experience plus a memory of at most `memory` past training clips; every step draws a batch of
          the experience and one as large of the memory, the memory weighted to `replay_share` of the loss (default
          0.5: the two batches weigh alike, as in the paper; by count, 100 clips would be 4 % of a 2,700-clip
          experience).
          'balanced' (default) keeps an equal share per (experience, class) cell, the remainder of the budget to
          the first cells, drawn uniformly inside each cell; 'reservoir' is Vitter's algorithm R over the stream of
          training clips in arrival order.
  ewc     elastic weight consolidation (Kirkpatrick et al., 2017) with the diagonal empirical Fisher
          F = mean_n (d log p(y_n | x_n) / d theta)^2 at the weights after each experience; Fishers of the
          experiences are summed and the anchor is the latest weights (online EWC); penalty lambda/2 sum F (theta -
          theta*)^2.
  rwm     Radian Weight Modification (Zhang et al., "What to Remember: Self-Adaptive Continual Learning for Audio
          Deepfake Detection", AAAI 2024), read from the paper and the authors' code (Cecile-hi/Evolving-FAD-CL-
          Benchmark, avalanche/training/plugins/rwm.py). Every layer keeps P, a projector away from the inputs of
          past experiences (OWM, as RAWM before it), and Q = I - P, the part of the input space they used. Each
          step's weight update u becomes (P + tan(theta) Q) u: theta = pi/4 leaves it unchanged, a smaller theta
          damps the part that would move the outputs on old inputs, a larger one amplifies it. The radian is
          computed at every step from the head's own outputs on the mini-batch (`rwm_radian`; with the whole
          experience as the batch, its mix of classes never changes and the radian only drifts with the head's
          confidence: the batch-to-batch adaptation is lost, so RWM wants mini-batches): the true-class logits are
          softmaxed over the examples, p_i, and theta = pi/4 + 1/2 sum_i s_i arcsin(p_i), with s = +1 for the class
          whose features are compact across experiences and -1 for the spread-out one; the classes are told apart
          by their in-class cosine distance across tasks (`task_shift`: the mean over pairs of experiences so far
          of 1 - cos between the class's mean unit features, on the encoder's features before z-scoring; in the
          paper's picture bona fide is the compact class). So the direction moves with the head as it trains (no
          parameters of its own; no gradient flows through theta, as in the authors' code); batches where the
          compact (genuine) class dominates are learned in the old input plane, batches dominated by fakes mostly
          orthogonally to it. Choices where the paper and code leave room or disagree:
            - P = alpha (R / m + alpha I)^-1 from the mean correlation R of a layer's inputs over all past
              experiences' training clips (computed once after each experience), m = trace(R) / D so one
              `rwm_alpha` fits every layer: directions with eigenvalues above alpha m are blocked. The default
              0.01 is from a sweep on the FSDD spoof folder (1, 0.1, 0.01: forgetting on the first attack +0.136,
              +0.117, +0.097 against naive's +0.152; docs/probing.md), not from the paper, whose alpha 1 acts on
              a Frobenius-normalised P; data with another spectrum may want another value. The authors' code
              updates P recursively from mini-batch means during training and divides P and Q by their Frobenius
              norms; its Q = I - P (P^T P)^-1 P^T is zero up to rounding for a full-rank P. Here Q = I - P, so
              theta = pi/4 is the plain step.
            - The modification applies to Adam's step, not to the raw gradient: Adam's per-coordinate scaling
              would otherwise undo most of it (for plain SGD the two are the same). Every layer's weights are
              modified (the authors' code has one linear layer); biases are not, as there.
            - Two classes (bona fide, spoof) and one radian per step, as in the authors' code.
            - "Compact across tasks" read as the class whose distribution stays put from one experience to the
              next, not as the one with the smaller spread over all its clips (`cosine_spread`, kept in
              `info`): on resyntheses of the same utterances the two classes' overall spreads are within a few
              per cent and their order depends on the encoder (the demo's SSAST-tiny puts the spoofs slightly
              tighter, and RWM then forgot far more than naive: +0.339 against +0.214 on the first attack), while
              the bona fide mean barely moves between experiences and each attack's does.
          No clips are stored: the memory is the D x D projectors and the per-class mean unit vectors.
          `StreamResult.info` records per experience the shifts (`task_shift`), the overall spreads
          (`cosine_spread`) and the class taken as compact (`compact_class`).

`to_head` turns a final head into a heads.Head (the probe head format `audiorep stream --head` loads).

Metrics (`stream_metrics`), with R[i, j] the EER after experience i on the test set of experience j (K x K, the
upper triangle is zero-shot performance on attacks not yet seen):
  average EER   mean_j R[K-1, j], the final head over every attack;
  BWT           mean_{j<K-1} (R[K-1, j] - R[j, j]), positive = forgetting (EER rose after learning later attacks);
  forgetting_j  R[K-1, j] - min_{j<=i<K-1} R[i, j], per earlier attack, and their mean.

Measured (docs/probing.md, 2026-12-05): on the FSDD spoof folder (`audiorep datasets spoof`; world, griffinlim,
lpc) with `split='source'`, over every order of the attacks x 3 seeds, naive fine-tuning forgets +0.152 EER on the
first attack with log-mel embeddings (+0.214 with the demo's pretrained SSAST-tiny); replay (100 clips) forgets
less in every run (+0.101; +0.172); RWM forgets less with log-mel (+0.097, 17 of 18 runs) and ties naive with the
demo encoder (+0.222 ± 0.119); EWC forgets least (+0.015) because it hardly learns the later attacks. With
`split='speaker'` (two unseen speakers) the head barely detects any attack (EER 0.40 on an attack just learned)
and the methods differ within the seed spread. Not yet run with a pretrained full-size encoder.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from audiorep.downstream.cache import EmbeddingCache
from audiorep.downstream.leaderboard import Result
from audiorep.downstream.metrics import eer
from audiorep.downstream.tasks.catalog import get_task
from audiorep.downstream.tasks.splits import TaskError, group_of

METHODS = ("naive", "joint", "replay", "ewc", "rwm")
REPLAY_POLICIES = ("balanced", "reservoir")
SPLITS = ("speaker", "source")  # what train and test never share (make_experiences)


@dataclass(frozen=True)
class Experience:
    """One experience: bona fide clips and one attack's clips. x f32[N, D]; y i32[N], 1 = bona fide, 0 = spoof."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class Settings:
    """How every method trains: `hidden` units of the head's hidden layer (0 = linear), `steps` Adam steps at `lr`
    per experience on mini-batches of `batch_size` clips of the experience (plus as many from replay's memory; 0 =
    every step sees the whole experience), `memory` clips for replay, `policy` of the memory, `replay_share` of the
    loss the memory gets, `ewc_lambda`, `rwm_alpha` (the projector's regulariser, relative to the mean eigenvalue of
    the input correlation; larger = less protection)."""

    hidden: int = 64
    steps: int = 600
    lr: float = 1e-3
    batch_size: int = 64
    memory: int = 100
    policy: str = "balanced"
    ewc_lambda: float = 1e4
    rwm_alpha: float = 0.01
    replay_share: float = 0.5

    def __post_init__(self):
        if self.policy not in REPLAY_POLICIES:
            raise TaskError(f"replay policy must be one of {REPLAY_POLICIES}, got {self.policy!r}.")
        if self.hidden < 0 or self.steps < 1 or not self.lr > 0 or self.batch_size < 0 or self.memory < 0 or \
                self.ewc_lambda < 0 or not self.rwm_alpha > 0 or not 0 < self.replay_share < 1:
            raise TaskError(f"invalid continual settings {self}: need hidden >= 0, steps >= 1, lr > 0, "
                            "batch_size >= 0, memory >= 0, ewc_lambda >= 0, rwm_alpha > 0 and 0 < replay_share < 1.")


@dataclass
class StreamResult:
    """One method over one stream: eer f[S, K, K] per seed (after experience i, on test set j)."""

    method: str
    experiences: list[str]
    seeds: list[int]
    eer: np.ndarray
    metrics: list[dict] = field(default_factory=list)  # stream_metrics per seed
    info: dict = field(default_factory=dict)  # what a method measured on the way (RWM: the in-class spreads)

    def summary(self) -> dict:
        """Mean and std over seeds of average EER, BWT and mean forgetting, plus forgetting on the first attack."""
        out = {}
        for k in ("average_eer", "bwt", "forgetting", "forgetting_first"):
            v = np.array([m[k] for m in self.metrics], float)
            out[k] = float(v.mean())
            out[k + "_std"] = float(v.std())
        return out


# --------------------------------------------------------------------------------------------- metrics
def eer_matrix(score_fn: Callable[[int, np.ndarray], np.ndarray], experiences: Sequence[Experience]) -> np.ndarray:
    """f[K, K]: entry [i, j] is the EER of `score_fn(i, x)` (bona fide scores of the head after experience i) on
    the test set of experience j."""
    k = len(experiences)
    out = np.zeros((k, k))
    for i in range(k):
        for j, e in enumerate(experiences):
            s = np.asarray(score_fn(i, e.x_test), np.float64)
            out[i, j] = eer(s[e.y_test == 1], s[e.y_test == 0])[0]
    return out


def stream_metrics(r: np.ndarray) -> dict:
    """Average EER, backward transfer and forgetting from an EER matrix f[K, K] (see the module docstring)."""
    r = np.asarray(r, float)
    k = r.shape[0]
    last = r[-1]
    forget = [float(last[j] - r[j:k - 1, j].min()) for j in range(k - 1)]
    return {"average_eer": float(last.mean()),
            "bwt": float(np.mean([last[j] - r[j, j] for j in range(k - 1)])) if k > 1 else 0.0,
            "forgetting": float(np.mean(forget)) if forget else 0.0,
            "forgetting_per_experience": forget,
            "forgetting_first": forget[0] if forget else 0.0,
            "seen_average_eer": [float(r[i, :i + 1].mean()) for i in range(k)]}


# ------------------------------------------------------------------------------------------------- head
def init_head(key, dim: int, hidden: int) -> list[dict]:
    """Layers [{'w': f32[in, out], 'b': f32[out]}]: Xavier-uniform weights (gain 1, sqrt 2 after a ReLU) and
    PyTorch's uniform biases, as the probe's head; two logits (spoof, bona fide)."""
    sizes = [dim] + ([hidden] if hidden else []) + [2]
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        key, kw, kb = jax.random.split(key, 3)
        bound = (1.0 if i == 0 else math.sqrt(2.0)) * math.sqrt(6.0 / (a + b))
        layers.append({"w": jax.random.uniform(kw, (a, b), jnp.float32, -bound, bound),
                       "b": jax.random.uniform(kb, (b,), jnp.float32, -1 / math.sqrt(a), 1 / math.sqrt(a))})
    return layers


def layer_inputs(params: list[dict], x):
    """The input of every layer for x f32[N, D]: [x, relu(x W1 + b1), ...] and the logits f32[N, 2]."""
    ins, h = [], x
    for i, layer in enumerate(params):
        ins.append(h)
        h = h @ layer["w"] + layer["b"]
        if i < len(params) - 1:
            h = jax.nn.relu(h)
    return ins, h


def logits(params, x):
    return layer_inputs(params, x)[1]


def bonafide_scores(params, x) -> jnp.ndarray:
    """f32[N]: logit(bona fide) - logit(spoof)."""
    z = logits(params, x)
    return z[:, 1] - z[:, 0]


def nll(params, x, y, w):
    """Weighted mean cross-entropy; w f32[N] (0 = padding)."""
    per = optax.softmax_cross_entropy_with_integer_labels(logits(params, x), y)
    return jnp.sum(per * w) / jnp.maximum(jnp.sum(w), 1.0)


def fisher_diagonal(params, x, y):
    """The diagonal empirical Fisher at `params`: mean over examples of the squared gradient of log p(y_n | x_n)."""
    def logp(p, xi, yi):
        return -optax.softmax_cross_entropy_with_integer_labels(logits(p, xi[None]), yi[None])[0]

    g = jax.vmap(jax.grad(logp), in_axes=(None, 0, 0))(params, jnp.asarray(x), jnp.asarray(y))
    return jax.tree.map(lambda a: jnp.mean(a ** 2, 0), g)


def ewc_penalty(params, anchor, fisher, lam):
    """lam / 2 * sum F (theta - theta*)^2 over every parameter."""
    terms = jax.tree.map(lambda p, a, f: jnp.sum(f * (p - a) ** 2), params, anchor, fisher)
    return 0.5 * lam * sum(jax.tree.leaves(terms))


def projector(inputs: np.ndarray, alpha: float, previous: np.ndarray | None = None, seen: int = 0) -> tuple:
    """The OWM projector P = alpha (R / m + alpha I)^-1 for R the mean input correlation over all past inputs
    (f32[N, D] inputs added to the running mean of `seen` earlier rows, whose correlation is `previous`) and m =
    trace(R) / D its mean eigenvalue, so that one alpha fits layers whatever the scale of their inputs: directions
    old inputs used much (eigenvalue >> alpha m) are blocked, unused ones pass. Returns (P f32[D, D], R, n)."""
    inputs = np.asarray(inputs, np.float64)
    n = seen + len(inputs)
    r = (inputs.T @ inputs + (previous * seen if previous is not None else 0.0)) / max(n, 1)
    m = max(float(np.trace(r)) / r.shape[0], 1e-12)
    p = alpha * np.linalg.inv(r / m + alpha * np.eye(r.shape[0]))
    return p.astype(np.float32), r, n


def cosine_spread(unit_sum: np.ndarray, count: int) -> float:
    """In-class cosine distance 1 - |mean unit vector|^2 (the mean of 1 - cos over all ordered pairs, self-pairs
    included) from the sum of a class's unit feature vectors."""
    return float(1.0 - np.sum((unit_sum / max(count, 1)) ** 2))


def task_shift(class_means: Sequence[np.ndarray]) -> float:
    """In-class cosine distance across tasks: the mean over pairs of experiences of 1 - cos between a class's mean
    unit feature vectors f[D] in the two (0 with one experience). A class whose distribution stays put as
    experiences arrive (bona fide from one population) scores near 0; one that moves (a new generator each time)
    scores higher, however wide each experience's own spread is."""
    m = [v / max(float(np.linalg.norm(v)), 1e-12) for v in class_means]
    pairs = [1.0 - float(m[a] @ m[b]) for a in range(len(m)) for b in range(a + 1, len(m))]
    return float(np.mean(pairs)) if pairs else 0.0


# --------------------------------------------------------------------------------------------- training
def rwm_radian(z, y, w, signs):
    """RWM's radian for one step, from the head's logits z f32[N, 2] on the batch (labels y i32[N], weights w
    f32[N], 0 = padding): the true-class logits are softmaxed over the examples, p_i = exp(z_i,y_i) / sum_j
    exp(z_j,y_j); theta = pi/4 + 1/2 sum_i s_(y_i) arcsin(p_i) with s f32[2] = +1 for the compact class, -1 for the
    spread-out one. f32[], in [0, pi/2); no gradient flows through it. pi/4 leaves the step unchanged."""
    t = jnp.take_along_axis(z, y[:, None], axis=1)[:, 0]
    p = jax.nn.softmax(jnp.where(w > 0, t, -jnp.inf))
    theta = jnp.pi / 4 + 0.5 * jnp.sum(jnp.where(w > 0, signs[y] * jnp.arcsin(jnp.clip(p, 0.0, 1.0)), 0.0))
    return jax.lax.stop_gradient(jnp.clip(theta, 0.0, jnp.pi / 2 - 1e-2))


def rwm_modify(updates: list[dict], projectors: list, theta) -> list[dict]:
    """The radian-modified step: every layer's weight step u f32[in, out] becomes (P + tan(theta) Q) u, with P the
    layer's projector f32[in, in] away from the inputs of past experiences (`projector`) and Q = I - P the part
    they used; biases are left as they are."""
    out = []
    for pr, u in zip(projectors, updates):
        pu = pr @ u["w"]
        out.append({"w": pu + jnp.tan(theta) * (u["w"] - pu), "b": u["b"]})
    return out


def train_head(params, key, x, y, w, n_cur, n_mem, share, steps, lr, batch, replay, extra):
    """`steps` Adam steps of one seed's head on x f32[N, D] (the experience's n_cur clips first, then n_mem
    replayed ones, then padding). batch 0: every step sees all N rows with weights w f32[N]. batch > 0: every step
    draws `batch` clips of the experience and, with `replay` (static) and a memory, `batch` of the memory (with
    replacement, from `key`), the memory weighted to `share` of the loss, as experience replay does. extra:
    {'ewc': (anchor, fisher, lam)} or {'rwm': (projectors [per layer], signs f32[2])} or {}. RWM modifies Adam's
    step (`rwm_modify`) with the radian of the current head's outputs on the step's batch (`rwm_radian`)."""
    opt = optax.adam(lr)
    replayed = n_mem > 0
    w_cur, w_mem = jnp.where(replayed, 1.0 - share, 1.0), jnp.where(replayed, share, 0.0)

    def step(carry, i):
        p, s = carry
        if batch:
            kc, km = jax.random.split(jax.random.fold_in(key, i))
            idx = jax.random.randint(kc, (batch,), 0, n_cur)
            wb = jnp.full(batch, w_cur)
            if replay:  # an empty memory (the first experience) draws padding rows of weight 0
                idx = jnp.concatenate([idx, n_cur + jax.random.randint(km, (batch,), 0, jnp.maximum(n_mem, 1))])
                wb = jnp.concatenate([wb, jnp.full(batch, w_mem)])
            xb, yb = x[idx], y[idx]
        else:
            xb, yb, wb = x, y, w

        def loss(q):
            return nll(q, xb, yb, wb) + (ewc_penalty(q, *extra["ewc"]) if "ewc" in extra else 0.0)

        updates, s = opt.update(jax.grad(loss)(p), s, p)
        if "rwm" in extra:
            projs, signs = extra["rwm"]
            updates = rwm_modify(updates, projs, rwm_radian(logits(p, xb), yb, wb, signs))
        return (optax.apply_updates(p, updates), s), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), jnp.arange(steps))
    return params


_train_seeds = jax.jit(jax.vmap(train_head, in_axes=(0, 0, 0, 0, 0, 0, 0, None, None, None, None, None, 0)),
                       static_argnums=(8, 9, 10, 11))


def replay_weights(current: int, memory: int, share: float) -> np.ndarray:
    """f32[current + memory] loss weights of a replay batch (the experience's clips, then the memory's): the memory
    gets `share` of the loss whatever its size (0.5: as much as the experience, as experience replay draws a memory
    batch as large as the stream batch); without a memory every clip weighs 1. They sum to current + memory."""
    if memory == 0:
        return np.ones(current, np.float32)
    n = current + memory
    return np.r_[np.full(current, (1 - share) * n / current), np.full(memory, share * n / memory)].astype(np.float32)


def _pad(arrays: list[np.ndarray], fill=0) -> np.ndarray:
    n = max(len(a) for a in arrays)
    return np.stack([np.concatenate([a, np.full((n - len(a),) + a.shape[1:], fill, a.dtype)]) for a in arrays])


def _memory_update(memory: tuple, e: Experience, k: int, settings: Settings, rng: np.random.Generator,
                   seen: int) -> tuple:
    """A seed's replay memory (x, y, cell) after experience k (`seen` training clips arrived before it)."""
    x, y, cell = memory
    if settings.policy == "reservoir":
        x, y, cell = list(x), list(y), list(cell)
        for i in range(len(e.x_train)):
            t = seen + i
            if len(x) < settings.memory:
                x.append(e.x_train[i]), y.append(e.y_train[i]), cell.append(2 * k + e.y_train[i])
            else:
                j = rng.integers(0, t + 1)
                if j < settings.memory:
                    x[j], y[j], cell[j] = e.x_train[i], e.y_train[i], 2 * k + e.y_train[i]
        d = e.x_train.shape[1]
        return (np.array(x, np.float32).reshape(-1, d), np.array(y, np.int32), np.array(cell, np.int32))
    allx = np.concatenate([x, e.x_train]) if len(x) else e.x_train
    ally = np.concatenate([y, e.y_train]) if len(y) else e.y_train
    allc = np.concatenate([cell, 2 * k + e.y_train]) if len(cell) else 2 * k + e.y_train
    cells = np.unique(allc)
    keep = []
    quota, extra = divmod(settings.memory, max(len(cells), 1))
    for i, c in enumerate(cells):
        idx = np.flatnonzero(allc == c)
        keep += rng.permutation(idx)[:quota + (i < extra)].tolist()
    keep = np.array(sorted(keep), int)
    return allx[keep], ally[keep], allc[keep]


def run_stream(experiences: Sequence[Experience], method: str, seeds: Sequence[int] = (0, 1, 2),
               settings: Settings = Settings(), heads: list | None = None,
               raw: Sequence[Experience] | None = None) -> StreamResult:
    """Train one method over the experiences in order, for every seed at once; the EER matrix per seed.

    heads: a list that gets, per seed, the final head's layers (numpy) for saving. raw: the same experiences before
    `standardise`, the encoder's own features, where RWM measures the in-class cosine distance (z-scored features
    are centred, which makes every class look equally spread out: cosine distances near 1); default `experiences`."""
    if method not in METHODS:
        raise TaskError(f"unknown continual method {method!r}; methods are {', '.join(METHODS)}.")
    if not experiences:
        raise TaskError("a continual stream needs at least one experience (--order names the attacks).")
    seeds = list(seeds)
    dim = experiences[0].x_train.shape[1]
    init = [init_head(jax.random.PRNGKey(s), dim, settings.hidden) for s in seeds]
    params = jax.tree.map(lambda *a: jnp.stack(a), *init)
    init_stacked = params
    rngs = [np.random.default_rng([s, 7]) for s in seeds]
    memories = [(np.zeros((0, dim), np.float32), np.zeros(0, np.int32), np.zeros(0, np.int32)) for _ in seeds]
    fisher = anchor = None
    corr: list = [None] * len(init[0])
    projs = None
    corr_n = [0] * len(corr)
    # RWM: per class, the sum and count of its unit feature vectors in every experience so far
    unit_sums: list[list[np.ndarray]] = [[], []]
    unit_counts: list[list[int]] = [[], []]
    spreads: list = []
    shifts: list = []
    seen = 0
    after = []
    for k, e in enumerate(experiences):
        extra: dict = {}
        if method == "joint":
            xs = [np.concatenate([p.x_train for p in experiences[:k + 1]])] * len(seeds)
            ys = [np.concatenate([p.y_train for p in experiences[:k + 1]])] * len(seeds)
            params = init_stacked
        elif method == "replay":
            xs = [np.concatenate([e.x_train, m[0]]) for m in memories]
            ys = [np.concatenate([e.y_train, m[1]]) for m in memories]
        else:
            xs, ys = [e.x_train] * len(seeds), [e.y_train] * len(seeds)
        w = [replay_weights(len(e.x_train), len(m[0]), settings.replay_share) for m in memories] \
            if method == "replay" else [np.ones(len(a), np.float32) for a in xs]
        if method == "ewc" and fisher is not None:
            extra = {"ewc": (anchor, fisher, jnp.full(len(seeds), settings.ewc_lambda, jnp.float32))}
        if method == "rwm":
            xr = (raw or experiences)[k].x_train
            feats = xr / np.maximum(np.linalg.norm(xr, axis=1, keepdims=True), 1e-12)
            for c in (0, 1):
                unit_sums[c].append(feats[e.y_train == c].sum(0))
                unit_counts[c].append(int(np.sum(e.y_train == c)))
            spreads.append([cosine_spread(sum(unit_sums[c]), sum(unit_counts[c])) for c in (0, 1)])
            shifts.append([task_shift([t / max(n, 1) for t, n in zip(unit_sums[c], unit_counts[c])])
                           for c in (0, 1)])
            signs = np.where(np.arange(2) == int(np.argmin(shifts[-1])), 1.0, -1.0)
            if projs is None:  # the first experience: nothing to protect yet (P = I, Q = 0: the plain step)
                projs = [np.stack([np.eye(m["w"].shape[1], dtype=np.float32)] * len(seeds)) for m in params]
            extra = {"rwm": (projs, jnp.asarray(np.stack([signs] * len(seeds)), jnp.float32))}
        n_mem = [len(m[0]) if method == "replay" else 0 for m in memories]
        keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(s), k) for s in seeds])
        params = _train_seeds(params, keys, jnp.asarray(_pad(xs)), jnp.asarray(_pad(ys)), jnp.asarray(_pad(w)),
                              jnp.asarray([len(a) - m for a, m in zip(xs, n_mem)], jnp.int32),
                              jnp.asarray(n_mem, jnp.int32), settings.replay_share, settings.steps, settings.lr,
                              settings.batch_size, method == "replay", extra)
        after.append(params)
        if method == "replay":
            memories = [_memory_update(m, e, k, settings, rng, seen) for m, rng in zip(memories, rngs)]
        if method == "ewc":
            f = jax.vmap(fisher_diagonal, in_axes=(0, None, None))(params, e.x_train, e.y_train)
            fisher = f if fisher is None else jax.tree.map(jnp.add, fisher, f)
            anchor = params
        if method == "rwm":
            new_projs = []
            for li in range(len(params)):
                ps = []
                for si in range(len(seeds)):
                    ins = layer_inputs(jax.tree.map(lambda a, si=si: a[si], params), e.x_train)[0][li]
                    prev = corr[li][si] if corr[li] is not None else None
                    p, r, n = projector(np.asarray(ins), settings.rwm_alpha, prev, corr_n[li])
                    ps.append((p, r, n))
                corr[li] = [t[1] for t in ps]
                corr_n[li] = ps[0][2]
                new_projs.append(np.stack([t[0] for t in ps]))
            projs = new_projs
        seen += len(e.x_train)
    mats = []
    for si in range(len(seeds)):
        def score(i, x, si=si):
            return np.asarray(bonafide_scores(jax.tree.map(lambda a: a[si], after[i]), jnp.asarray(x)))
        mats.append(eer_matrix(score, experiences))
        if heads is not None:
            heads.append([{k: np.asarray(v[si]) for k, v in layer.items()} for layer in after[-1]])
    mats = np.stack(mats)
    res = StreamResult(method, [e.name for e in experiences], seeds, mats, [stream_metrics(m) for m in mats])
    if spreads:  # per experience: [spoof, bona fide], over every experience so far
        res.info["cosine_spread"] = spreads
        res.info["task_shift"] = shifts
        res.info["compact_class"] = [int(np.argmin(v)) for v in shifts]  # 1 = bona fide, 0 = spoof
    return res


# ---------------------------------------------------------------------------------------- from a task
def source_of(r) -> str:
    """The bona fide recording a clip was made from: labels.csv's `source_clip` where given, else the file name (a
    spoof made by `audiorep datasets spoof` keeps its source's name in the folders layout)."""
    return r.info.get("source_clip") or os.path.basename(r.path)


def make_experiences(records: Sequence, emb: np.ndarray, order: Sequence[str], bonafide: int, seed: int = 0,
                     test_fraction: float = 0.3, split: str = "speaker") -> list[Experience]:
    """Experiences from labelled records (Record.info['attack_id'] on spoofs) and their embeddings f32[N, D], in
    `order`; train/test disjoint by `split` (SPLITS: 'speaker', or 'source': a bona fide recording and the spoofs
    made from it) and bona fide dealt across experiences (module docstring). TaskError names a missing attack or
    an experience lacking a class."""
    if split not in SPLITS:
        raise TaskError(f"split must be one of {', '.join(SPLITS)}, got {split!r}.")
    attacks = sorted({r.info.get("attack_id") for r in records if r.labels[0] != bonafide and r.info.get("attack_id")})
    missing = [a for a in order if a not in attacks]
    if missing:
        raise TaskError(f"--order names {missing}, which the data lacks; its attacks are {attacks}.")
    if len(set(order)) != len(order):
        raise TaskError(f"--order repeats an attack: {list(order)}; name each once.")
    rng = np.random.default_rng([seed, 22])
    unit = group_of if split == "speaker" else source_of
    units = sorted({unit(r) for r in records})
    test_units = set(rng.permutation(units)[:max(1, int(round(test_fraction * len(units))))].tolist())
    out = []
    bona = {side: [i for i, r in enumerate(records) if r.labels[0] == bonafide and
                   (unit(r) in test_units) == (side == "test")] for side in ("train", "test")}
    deal = {side: np.array_split(rng.permutation(idx), len(order)) if idx else [[]] * len(order)
            for side, idx in bona.items()}
    for k, a in enumerate(order):
        parts = {}
        for side in ("train", "test"):
            spoof = [i for i, r in enumerate(records) if r.info.get("attack_id") == a and r.labels[0] != bonafide
                     and (unit(r) in test_units) == (side == "test")]
            idx = np.array(sorted(list(deal[side][k]) + spoof), int)
            y = np.array([1 if records[i].labels[0] == bonafide else 0 for i in idx], np.int32)
            if len(set(y.tolist())) < 2:
                raise TaskError(f"experience {a!r}: its {side} side holds only "
                                f"{'bona fide' if len(y) and y[0] else 'spoofed' if len(y) else 'no'} clips "
                                "(too few speakers or bona fide clips for this many attacks); use fewer attacks "
                                "in --order or more data.")
            parts[side] = (np.asarray(emb[idx], np.float32), y)
        out.append(Experience(a, *parts["train"], *parts["test"]))
    return out


def standardise(experiences: Sequence[Experience]) -> list[Experience]:
    """Every experience's embeddings z-scored per dimension with the mean and std of the first experience's training
    clips: the only data a deployed head has at its start (the probe's BatchNorm plays this part in `probe`)."""
    mean = experiences[0].x_train.mean(0)
    std = np.maximum(experiences[0].x_train.std(0), 1e-6)
    z = lambda a: ((a - mean) / std).astype(np.float32)
    return [dataclasses.replace(e, x_train=z(e.x_train), x_test=z(e.x_test)) for e in experiences]


def run_task(task, embedder, data_root: str | os.PathLike, order: Sequence[str] | None = None, *,
             methods=("naive", "replay"),
             seeds=(0, 1, 2), settings: Settings = Settings(), cache=None, reader_options: dict | None = None,
             split_seed: int = 0, split: str = "speaker", progress: bool = True,
             log: Callable[[str], None] | None = None,
             heads: dict | None = None) -> tuple[list[StreamResult], list[Experience]]:
    """Read a detection task, embed its clips (through the cache), build the experiences and run every method.

    order: the attack ids in arrival order (None: every attack of the data, sorted by name). heads: a dict that
    gets, per method, the first seed's final head as a heads.Head (for `--save-head`)."""
    spec = get_task(task) if isinstance(task, str) else task
    say = log or (lambda s: None)
    index = spec.read(data_root, **(reader_options or {}))
    spec = spec.for_index(index)
    if spec.positive is None or len(index.classes) != 2:
        raise TaskError(f"{spec.name} is not a two-class detection task; continual learning needs bona fide and "
                        "spoofed clips with attack ids (e.g. --task deepfake_folder).")
    known = sorted({r.info.get("attack_id") for r in index.records if r.labels and r.labels[0] != spec.positive
                    and r.info.get("attack_id")})
    order = list(known if order is None else order)
    if len(order) < 2:
        raise TaskError(f"a stream needs two or more attacks; {'--order names' if order != known else 'the data has'} "
                        f"{order or 'none'} (its attacks: {known or 'none: no spoofed clip carries an attack id'}).")
    if any(a not in known for a in order):  # before the embedding: a typo costs nothing
        raise TaskError(f"--order names {[a for a in order if a not in known]}, which the data lacks; its attacks "
                        f"are {known}.")
    records = [r for r in index.records if r.labels and (r.labels[0] == spec.positive or
                                                         r.info.get("attack_id") in set(order))]
    say(f"{spec.name}: {len(records):,} clips for attacks {', '.join(order)}")
    cache = cache or EmbeddingCache()
    emb = np.asarray(cache.embed(embedder, records, crop_s=spec.crop_s, progress=progress,
                                 desc=f"embed {spec.name}"), np.float32)
    raw = make_experiences(records, emb, order, spec.positive, split_seed, split=split)
    experiences = standardise(raw)
    results = []
    for m in methods:
        trained: list = []
        res = run_stream(experiences, m, seeds, settings, heads=trained, raw=raw)
        if heads is not None:
            heads[m] = to_head(trained[0], raw[0], embedder, [str(c) for c in index.classes], spec.positive,
                               {"task": spec.name, "method": m, "order": list(order), "seed": seeds[0],
                                "crop_s": spec.crop_s, "settings": dataclasses.asdict(settings)})
        s = res.summary()
        say(f"{m}: average EER {s['average_eer']:.4f}, BWT {s['bwt']:+.4f}, forgetting {s['forgetting']:+.4f}")
        results.append(res)
    return results, experiences


def to_head(layers: list[dict], first: Experience, embedder, classes: list[str], positive: int, info: dict):
    """A heads.Head (what `audiorep stream --head` loads) from a continual head's layers: the z-scoring of the first
    experience, identity BatchNorm between layers (gamma 1, beta 0, running mean 0, var 1 - 1e-5 against the
    eps 1e-5) and the logits reordered from (spoof, bona fide) to the task's class order."""
    from audiorep.downstream.heads import Head, model_of  # heads -> probes: loaded with the head only

    mean = first.x_train.mean(0).astype(np.float32)
    std = np.maximum(first.x_train.std(0), 1e-6).astype(np.float32)
    out, stats = [], []
    for i, layer in enumerate(layers):
        w, b = np.asarray(layer["w"], np.float32), np.asarray(layer["b"], np.float32)
        if i == len(layers) - 1:
            order = [1, 0] if positive == 0 else [0, 1]  # column `positive` = bona fide = our logit 1
            w, b = w[:, order], b[order]
            out.append({"w": w, "b": b})
        else:
            n = w.shape[1]
            out.append({"w": w, "b": b, "gamma": np.ones(n, np.float32), "beta": np.zeros(n, np.float32)})
            stats.append({"mean": np.zeros(n, np.float32), "var": np.full(n, 1.0 - 1e-5, np.float32)})
    return Head(out, stats, mean, std, classes, positive, False, model_of(embedder), info)


def to_result_row(res: StreamResult, model: str, task: str, settings: Settings, data_root: str = "",
                  split: str = "speaker"):
    """A leaderboard Result for one method: the final average EER over attacks (mean +- std over seeds), its seeds
    as folds, the EER matrices, BWT, forgetting and the train/test `split` in extra."""
    s = res.summary()
    finals = [m["average_eer"] for m in res.metrics]
    return Result(model=model, task=f"{task}@continual:{res.method}", metric="eer", mean=s["average_eer"],
                  std=s["average_eer_std"], folds=finals, higher_is_better=False,
                  scores={"eer": s["average_eer"], "bwt": s["bwt"], "forgetting": s["forgetting"],
                          "forgetting_first": s["forgetting_first"]},
                  probe="continual", grid=dataclasses.asdict(settings), seed=res.seeds[0],
                  extra={"method": res.method, "order": res.experiences, "seeds": res.seeds,
                         "eer_matrix": res.eer.tolist(), "metrics": res.metrics, "data_root": str(data_root),
                         "split": split,
                         **({"info": res.info} if res.info else {})})


def write_heatmaps(results: Sequence[StreamResult], path: str | os.PathLike, title: str = "") -> Path:
    """A PNG with one heatmap per method of the seed-mean EER matrix (rows: after experience i; columns: test
    set j), written atomically (temp file + os.replace)."""
    import matplotlib  # matplotlib: imported on use, `audiorep --help` stays fast

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, axes = plt.subplots(1, len(results), figsize=(3.2 * len(results) + 0.8, 3.4), squeeze=False)
    for ax, res in zip(axes[0], results):
        m = res.eer.mean(0)
        ax.imshow(m, vmin=0, vmax=0.5, cmap="viridis_r")
        names = res.experiences
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if m[i, j] > 0.25 else "black")
        s = res.summary()
        ax.set_title(f"{res.method}\navg {s['average_eer']:.3f} · BWT {s['bwt']:+.3f}", fontsize=8)
        ax.set_xlabel("test set of experience", fontsize=7)
    axes[0][0].set_ylabel("after experience", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


__all__ = ["METHODS", "REPLAY_POLICIES", "SPLITS", "Experience", "Settings", "StreamResult", "bonafide_scores",
           "cosine_spread", "eer_matrix", "ewc_penalty", "fisher_diagonal", "init_head", "make_experiences",
           "projector", "replay_weights", "run_stream", "run_task", "rwm_modify", "rwm_radian", "source_of",
           "standardise", "stream_metrics", "task_shift", "to_head", "to_result_row", "train_head", "write_heatmaps"]
