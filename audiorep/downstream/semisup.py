"""Semi-supervised heads on frozen embeddings: FixMatch, MixMatch, Mean Teacher, and supervised-only on the same
labels, across labelled fractions.

What is left of the semi-supervised gain on top of a frozen encoder? Every method trains the probe grid's heads
(downstream/probes.py: Linear -> BatchNorm -> Dropout -> ReLU blocks, its init, Adam) on `labelled` clips and, for
the semi-supervised ones, on the rest of the training split without labels. Views are augmented audio through the
frozen encoder: `embed_views` embeds K weak and K strong views of every training clip once, through the embedding
cache, so an epoch costs no encoder pass. A view is a waveform augmentation (gain, noise, time shift, time masks)
and, where the source exposes its frontend (encoders and the log-mel baseline: `with_feature_transform`),
SpecAugment-style frequency and time masks on the features between the frontend and the frozen encoder. The
methods follow the papers, as SSLH (Cances, Labbé, Pellegrini 2022, github.com/Labbeti/SSLH) trains them end to
end:

- supervised: cross-entropy on a weak view of the labelled clips.
- FixMatch (Sohn et al. 2020): CE(labelled weak) + lambda_u * mean_u[mask * CE(strong view, argmax of the weak view)],
  mask = max softmax(weak) >= 0.95, pseudo-labels without gradient; lambda_u 1.
- MixMatch (Berthelot et al. 2019): the guess is the mean softmax over K=2 weak views of an unlabelled clip,
  sharpened with T=0.5; labelled (one weak view, one-hot) and unlabelled (both views, the guess) rows are mixed with
  partners from a shuffle of their union, lam ~ Beta(0.75, 0.75), lam = max(lam, 1 - lam) (one per batch);
  soft CE on the labelled mix + lambda_u * soft CE against the mixed guess on the unlabelled mix, lambda_u 1 (SSLH's
  defaults; the paper's L2 term needs lambda_u ~ 100).
- Mean Teacher (Tarvainen & Valpola 2017): CE(student, labelled) + w(t) * MSE(softmax(student(view a)),
  softmax(teacher(view b))) over labelled and unlabelled rows, w(t) = exp(-5 (1 - t/T)^2) for t < T (sigmoid
  ramp-up, t in epochs), teacher = EMA of the student after every step, BatchNorm statistics likewise, with the
  official code's warm-up decay min(1 - 1/(step + 1), 0.999) (a plain mean of the students early on); the teacher
  is the model selected and scored, as SSLH predicts with it.

Training mirrors probes.train_grid: the points of one head shape are stacked and `jax.vmap`ped inside one jitted
round (`check_every` epochs as `lax.scan` over steps, then validation accuracy, keeping the best weights); a step
draws `batch` labelled and `batch` unlabelled rows with replacement (SSLH's equal batches), an epoch is
ceil(max(labelled, unlabelled) / batch) steps, and Adam's learning rate follows FixMatch's cosine
lr * cos(7 pi t / 16 T) (SSLH's CosineScheduler). The 'semi' grid trains 60 epochs without early stopping
(`make_semisup_grid`). Selection: the configuration with the best validation
score averaged over its seeds (the task's validation split, fully labelled); the test split is scored once with it.
Labelled subsets (`labelled_subset`) are stratified and seeded from the record keys alone, so every method and every
encoder sees the same labelled clips, and a smaller fraction's clips are part of a larger one's.

Not yet: multi-label tasks (refused with a TaskError); feature masks for hand-crafted baselines (lfcc / mfcc /
cqcc get waveform views only); MixMatch's linear lambda_u ramp-up over 16k steps (SSLH, the paper) is left out,
as a head's whole run is a few hundred steps. Measured gains over supervised-only (synthetic corpus, log-mel and a
pretrained encoder): docs/probing.md; not yet on real tasks with full-size pretrained encoders.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from audiorep.audio import augment as A
from audiorep.downstream import metrics as M
from audiorep.downstream import probes as P
from audiorep.downstream.cache import EmbeddingCache, source_spec
from audiorep.downstream.leaderboard import Result
from audiorep.downstream.metrics import HIGHER_IS_BETTER
from audiorep.downstream.tasks.catalog import get_task
from audiorep.downstream.tasks.splits import TaskError
from audiorep.errors import AudiorepError

METHODS = ("supervised", "fixmatch", "mixmatch", "meanteacher")
FRACTIONS = (0.01, 0.05, 0.1, 0.25, 1.0)


class SemiSupError(AudiorepError, ValueError):
    """A semi-supervised run that cannot go as asked (unknown method, bad fraction, unusable data)."""


@dataclass(frozen=True)
class Hyper:
    """The methods' hyperparameters (SSLH / the papers' values)."""

    threshold: float = 0.95  # FixMatch confidence
    lambda_u: float = 1.0  # FixMatch and MixMatch unlabelled weight
    temperature: float = 0.5  # MixMatch sharpening
    alpha: float = 0.75  # MixMatch mixup Beta(alpha, alpha)
    ema: float = 0.999  # Mean Teacher decay
    lambda_cons: float = 1.0  # Mean Teacher consistency weight after ramp-up
    rampup_epochs: float = 10.0  # Mean Teacher sigmoid ramp-up length
    batch: int = 64  # labelled and unlabelled rows per step
    lr_schedule: str = "cosine"  # FixMatch's lr * cos(7 pi t / (16 T)) over the run (SSLH's), or "constant"


def parse_methods(text: str) -> tuple[str, ...]:
    """'fixmatch,mixmatch' -> ('fixmatch', 'mixmatch'); SemiSupError naming the choices otherwise."""
    names = tuple(dict.fromkeys(m.strip().lower().replace("-", "").replace("_", "") for m in text.split(",")
                                if m.strip()))
    bad = [m for m in names if m not in METHODS]
    if bad or not names:
        raise SemiSupError(f"--semi-supervised {text!r}: unknown method(s) {bad}; choose from "
                           f"{', '.join(METHODS[1:])} (comma-separated).")
    return names


def parse_fractions(text: str) -> tuple[float, ...]:
    """'0.05,0.1,1.0' -> (0.05, 0.1, 1.0), each in (0, 1]."""
    try:
        fr = tuple(sorted({float(f) for f in text.split(",") if f.strip()}))
    except ValueError:
        fr = ()
    if not fr or not all(0 < f <= 1 for f in fr):
        raise SemiSupError(f"--labelled-fraction {text!r}: give comma-separated fractions in (0, 1], "
                           "e.g. 0.01,0.05,0.1,0.25,1.0.")
    return fr


# ------------------------------------------------------------------------------------------- subsets
def labelled_subset(keys: Sequence[str], labels: Sequence[int], fraction: float, seed: int = 0) -> np.ndarray:
    """Indices (sorted) of a stratified, seeded labelled subset: per class round(fraction * n_c) clips, at least one.

    Each class's clips are ordered by a hash of (seed, key), so the subset depends on the record keys and the seed
    only (the same for every method and encoder), and a smaller fraction's subset lies inside a larger one's.
    """
    if not 0 < fraction <= 1:
        raise SemiSupError(f"labelled fraction must be in (0, 1], got {fraction}.")
    labels = np.asarray(labels)
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        order = sorted(idx, key=lambda i: (zlib.crc32(f"{seed}\t{keys[i]}".encode()), keys[i]))
        out += order[:max(1, int(round(fraction * len(idx))))]
    return np.sort(np.asarray(out, np.int64))


# ------------------------------------------------------------------------------------------- views
VIEWS = {
    # waveform: gain (dB), noise SNR (dB) or None, max shift and time-mask width as fractions of the clip, masks;
    # features (SpecAugment-style, between the frontend and the frozen encoder, `feature_masks`): masks per axis,
    # each up to `spec_freq` of the mel bins / `spec_time` of the frames. Weak views stay close to the clean clip
    # the heads are scored on (FixMatch's flip-and-shift): masks only in the strong views.
    "weak": {"gain_db": 6.0, "snr_db": None, "shift": 0.05, "mask": 0.0, "masks": 0,
             "spec_masks": 0, "spec_freq": 0.0, "spec_time": 0.0},
    "strong": {"gain_db": 6.0, "snr_db": (10.0, 30.0), "shift": 0.25, "mask": 0.1, "masks": 2,
               "spec_masks": 2, "spec_freq": 0.2, "spec_time": 0.2},
}


def feature_masks(kind: str, index: int, seed: int = 0) -> Callable:
    """The feature-domain part of view `index` of kind 'weak' | 'strong': (feats f32[B, frames, mels], the rows'
    samples f32[B, L]) -> f32[B, frames, mels], with VIEWS[kind]['spec_masks'] frequency bands (each up to
    'spec_freq' of the bins) and as many time spans (up to 'spec_time' of the frames) per row set to that row's
    mean feature value (SpecAugment, Park et al. 2019, drawn as torchaudio draws it; SSLH cuts spectrogram patches
    out the same way). Each row's draw comes from (seed, kind, index, the wrapping sum of its samples' bit
    patterns: exact, so zero padding and the batch it is in do not change it). Traceable: runs inside the
    encoder's jit (Embedder / LogMelBaseline `with_feature_transform`)."""
    v = VIEWS[kind]
    base = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), index), zlib.crc32(kind.encode()))

    def one(key, f):  # f32[frames, mels]
        frames, mels = f.shape
        return A.spec_augment(key, f[None], max(1, int(v["spec_freq"] * mels)), max(1, int(v["spec_time"] * frames)),
                              v["spec_masks"], v["spec_masks"], jnp.mean(f))[0]

    def transform(feats, waves):
        digest = jnp.sum(jax.lax.bitcast_convert_type(waves.astype(jnp.float32), jnp.uint32), 1, dtype=jnp.uint32)
        keys = jax.vmap(lambda d: jax.random.fold_in(base, d))(digest)
        return jax.vmap(one)(keys, feats)

    return transform


def masked_source(source, kind: str, index: int, seed: int = 0):
    """`source` with view `index`'s feature masks between its frontend and its encoder, or None when the source
    does not expose its features (no `with_feature_transform`: hand-crafted baselines, plain callables)."""
    hook = getattr(source, "with_feature_transform", None)
    if hook is None or not VIEWS[kind]["spec_masks"]:
        return None
    return hook(feature_masks(kind, index, seed))


def view_length(n: int) -> int:
    """The padded length views of an n-sample clip are drawn at: the next power of two, at least 4096 (few shapes,
    so few compiles, on datasets of varied clip lengths)."""
    return max(4096, 1 << max(0, int(n) - 1).bit_length())


@functools.lru_cache(maxsize=64)
def _view_fn(kind: str, n: int):
    """Jitted (keys u32[B, 2], waves f32[B, n] zero-padded, lengths i32[B]) -> augmented f32[B, n]; one draw per
    clip. Shifts are fractions of each clip's real length; noise is at the SNR of its real samples' power."""
    v = VIEWS[kind]

    def one(key, w, length):
        kg, kn, ks, km = jax.random.split(key, 4)
        w = A.random_gain(kg, w[None], -v["gain_db"], v["gain_db"])
        if v["snr_db"] is not None:  # add_noise measures the power over the padding too: undo that dilution
            w = w + (A.add_noise(kn, w, *v["snr_db"]) - w) * jnp.sqrt(n / length)
        w = A.time_shift(ks, w, (v["shift"] * length).astype(jnp.int32), roll=False)
        if v["masks"]:
            w = A.time_mask(km, w[..., None], max(1, int(v["mask"] * n)), v["masks"])[..., 0]
        return w[0]

    return jax.jit(jax.vmap(one))


def augment_clips(clips: Sequence[np.ndarray], kind: str, index: int, seed: int = 0) -> list[np.ndarray]:
    """Waveform view `index` of kind 'weak' | 'strong' of each clip (VIEWS): same length, f32.

    Each clip's draw comes from (seed, index, a hash of its samples), so it does not depend on the batch it is in.
    Clips are zero-padded to `view_length` so few shapes compile, and cut back after (time masks are drawn over
    the padded length, so a short clip may get a wider or no mask).
    """
    base = jax.random.fold_in(jax.random.PRNGKey(seed), index)
    out: list[np.ndarray | None] = [None] * len(clips)
    by_len: dict[int, list[int]] = {}
    for i, c in enumerate(clips):
        by_len.setdefault(view_length(len(c)), []).append(i)
    for n, members in by_len.items():
        waves = np.zeros((len(members), n), np.float32)
        for j, i in enumerate(members):
            waves[j, :len(clips[i])] = clips[i]
        seeds = np.array([zlib.crc32(np.asarray(clips[i], np.float32).tobytes()) for i in members], np.uint32)
        keys = jax.vmap(lambda s: jax.random.fold_in(base, s))(jnp.asarray(seeds))
        lengths = jnp.asarray([len(clips[i]) for i in members], jnp.float32)
        aug = np.asarray(_view_fn(kind, n)(keys, jnp.asarray(waves), lengths))
        for j, i in enumerate(members):
            out[i] = aug[j, :len(clips[i])]
    return out


def embed_views(cache: EmbeddingCache, source, records: Sequence, kind: str, k: int, *, seed: int = 0,
                crop_s: float | None = None, progress: bool = False) -> np.ndarray:
    """K augmented views of every record through the frozen encoder, cached: f32[len(records), k, D].

    A view is the waveform augmentation (`augment_clips`) and, where the source exposes its features
    (`masked_source`), SpecAugment-style masks on them before the encoder. Each view is one cache entry keyed by
    the source's spec plus the view recipe, kind, index and seed, so it is computed once and every method,
    fraction and fold reads it back.
    """
    if kind not in VIEWS:
        raise SemiSupError(f"view kind must be one of {sorted(VIEWS)}, got {kind!r}.")
    spec = source_spec(source, crop_s)
    rate = int(spec["sample_rate"])
    out = []
    for j in range(k):
        masked = masked_source(source, kind, j, seed)
        view = {"kind": kind, "index": j, "seed": seed, "recipe": VIEWS[kind], "padding": "pow2-4096",
                "features": "masked" if masked is not None else "as computed"}
        fn = (lambda clips, j=j, src=masked or source: src.scene(augment_clips(clips, kind, j, seed)))
        out.append(np.asarray(cache.embed(fn, records, spec=spec | {"view": view, "sample_rate": rate},
                                          crop_s=crop_s, progress=progress, desc=f"embed {kind} view {j + 1}/{k}"),
                              np.float32))
    return np.stack(out, 1)


# ------------------------------------------------------------------------------------------- the methods' parts
def fixmatch_targets(weak_logits, threshold: float):
    """FixMatch pseudo-labels: (argmax i32[B], mask f32[B] = 1 where max softmax >= threshold), no gradient."""
    p = jax.nn.softmax(jax.lax.stop_gradient(weak_logits), -1)
    return jnp.argmax(p, -1), (jnp.max(p, -1) >= threshold).astype(jnp.float32)


def sharpen(p, temperature: float):
    """MixMatch sharpening p^(1/T), renormalised over the last axis."""
    q = p ** (1.0 / temperature)
    return q / jnp.sum(q, -1, keepdims=True)


def mixmatch_mix(key, x_lab, y_lab, x_unl, y_unl, alpha: float):
    """MixMatch's mixup: each row of X = concat(x_lab, x_unl) mixed with the row at the same position of a random
    shuffle W of X. Returns (mixed x, mixed targets, lam scalar, perm i32[len(X)]: W = X[perm])."""
    k_lam, k_perm = jax.random.split(key)
    x = jnp.concatenate([x_lab, x_unl])
    y = jnp.concatenate([y_lab, y_unl])
    lam = jax.random.beta(k_lam, alpha, alpha)
    lam = jnp.maximum(lam, 1.0 - lam)
    perm = jax.random.permutation(k_perm, x.shape[0])
    return lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm], lam, perm


def ema_update(teacher, student, decay: float):
    """teacher <- decay * teacher + (1 - decay) * student, leaf by leaf."""
    return jax.tree.map(lambda t, s: decay * t + (1.0 - decay) * s, teacher, student)


def sigmoid_rampup(t, length: float):
    """exp(-5 (1 - t/length)^2) for t < length, then 1 (Laine & Aila; Tarvainen & Valpola)."""
    if length <= 0:
        return jnp.ones_like(jnp.asarray(t, jnp.float32))
    phase = 1.0 - jnp.clip(jnp.asarray(t, jnp.float32) / length, 0.0, 1.0)
    return jnp.exp(-5.0 * phase * phase)


def lr_factor(progress, schedule: str):
    """The learning rate's factor at `progress` = t / T of the run: cos(7 pi progress / 16) for 'cosine'
    (FixMatch, Sohn et al. 2020; SSLH's CosineScheduler), 1 for 'constant'."""
    if schedule == "constant":
        return jnp.float32(1.0)
    if schedule != "cosine":
        raise SemiSupError(f"lr_schedule must be 'cosine' or 'constant', got {schedule!r}.")
    return jnp.cos(7.0 * jnp.pi / 16.0 * jnp.clip(progress, 0.0, 1.0))


def _ce(logits, y):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))


def _fwd(params, stats, x, rate, key):
    return P.forward(params, stats, x, train=True, weights=jnp.ones(x.shape[0]), rate=rate, key=key)


def method_loss(method: str, hyper: Hyper, num_classes: int):
    """loss(params, stats, teacher, batch, key, t) -> (loss, new BatchNorm stats) of one method, for one point.

    batch: 'xl' f32[B, K, D] weak views of labelled rows, 'yl' i32[B], 'xu' f32[B, K, D] weak and 'su' f32[B, K, D]
    strong views of unlabelled rows, 'rate' dropout. t: training time in epochs (Mean Teacher's ramp-up).
    """
    def loss(params, stats, teacher, b, key, t):
        kv, kd, km, kt = jax.random.split(key, 4)
        bsz, k = b["xl"].shape[:2]
        va, vb, vs = (jax.random.randint(jax.random.fold_in(kv, i), (bsz,), 0, k) for i in range(3))
        take = lambda x, v: jnp.take_along_axis(x, v[:, None, None], 1)[:, 0]
        xl = take(b["xl"], va)
        if method == "supervised":
            logits, st = _fwd(params, stats, xl, b["rate"], kd)
            return _ce(logits, b["yl"]), st
        if method == "fixmatch":
            x = jnp.concatenate([xl, take(b["xu"], va), take(b["su"], vs)])
            logits, st = _fwd(params, stats, x, b["rate"], kd)
            ll, lw, ls = jnp.split(logits, 3)
            pseudo, mask = fixmatch_targets(lw, hyper.threshold)
            unl = jnp.mean(mask * optax.softmax_cross_entropy_with_integer_labels(ls, pseudo))
            return _ce(ll, b["yl"]) + hyper.lambda_u * unl, st
        if method == "mixmatch":
            xu = jnp.concatenate([b["xu"][:, i] for i in range(k)])  # [K*B, D], view-major
            guess_logits, _ = _fwd(params, stats, xu, b["rate"], kt)
            guess = jax.nn.softmax(jax.lax.stop_gradient(guess_logits), -1).reshape(k, bsz, -1).mean(0)
            guess = sharpen(guess, hyper.temperature)
            xm, ym, _, _ = mixmatch_mix(km, xl, jax.nn.one_hot(b["yl"], num_classes), xu, jnp.tile(guess, (k, 1)),
                                        hyper.alpha)
            logits, st = _fwd(params, stats, xm, b["rate"], kd)
            sup = jnp.mean(optax.softmax_cross_entropy(logits[:bsz], ym[:bsz]))
            unl = jnp.mean(optax.softmax_cross_entropy(logits[bsz:], ym[bsz:]))  # SSLH's criterion_u
            return sup + hyper.lambda_u * unl, st
        if method == "meanteacher":
            xa = jnp.concatenate([xl, take(b["xu"], va)])
            xb = jnp.concatenate([take(b["xl"], vb), take(b["xu"], vb)])
            logits, st = _fwd(params, stats, xa, b["rate"], kd)
            t_logits, _ = _fwd(teacher["params"], teacher["stats"], xb, b["rate"], kt)
            t_prob = jax.nn.softmax(jax.lax.stop_gradient(t_logits), -1)
            cons = jnp.mean((jax.nn.softmax(logits, -1) - t_prob) ** 2)
            w = hyper.lambda_cons * sigmoid_rampup(t, hyper.rampup_epochs)
            return _ce(logits[:bsz], b["yl"]) + w * cons, st
        raise SemiSupError(f"unknown method {method!r}; choose from {METHODS}.")

    return loss


_adam = optax.scale_by_adam()


def make_step(method: str, hyper: Hyper, num_classes: int):
    """One training step of one point: (state, batch, key, t) -> state. state: params, opt, stats, step (i32, steps
    taken), teacher
    ({'params', 'stats'}, the EMA of the student after the update; unused but carried for the other methods)."""
    loss = method_loss(method, hyper, num_classes)

    def step(state, b, lr, key, t):
        grads, stats = jax.grad(loss, has_aux=True)(state["params"], state["stats"], state["teacher"], b, key, t)
        updates, opt = _adam.update(grads, state["opt"])
        params = jax.tree.map(lambda p, u: p - lr * u, state["params"], updates)
        teacher = state["teacher"]
        if method == "meanteacher":
            decay = jnp.minimum(1.0 - 1.0 / (state["step"] + 1.0), hyper.ema)
            teacher = ema_update(teacher, {"params": params, "stats": stats}, decay)
        return state | {"params": params, "opt": opt, "stats": stats, "teacher": teacher, "step": state["step"] + 1}

    return step


@functools.lru_cache(maxsize=32)
def _make_round(method: str, hyper: Hyper, num_classes: int, check_every: int):
    """A jitted round over a stacked group: `check_every` epochs of `steps` steps per point (a traced count, so
    every fraction and fold of one padded size shares a compile), validation accuracy, early-stopping update (as
    probes.train_grid)."""
    step = make_step(method, hyper, num_classes)
    bsz = hyper.batch

    def point_round(st, hp, data, first_epoch, patience, steps, total_epochs):
        def one(i, carry):
            e, s = first_epoch + i // steps, i % steps
            t = e + s / steps
            key = jax.random.fold_in(hp["key"], e * steps + s)
            kl, ku, ks = jax.random.split(key, 3)
            rl = jax.random.randint(kl, (bsz,), 0, data["n_l"])
            ru = jax.random.randint(ku, (bsz,), 0, data["n_u"])
            b = {"xl": data["xl"][rl], "yl": data["yl"][rl], "xu": data["xu"][ru], "su": data["su"][ru],
                 "rate": hp["dropout"]}
            return step(carry, b, hp["lr"] * lr_factor(t / total_epochs, hyper.lr_schedule), ks, t)

        cur = jax.lax.fori_loop(0, check_every * steps, one, st["cur"])
        model = cur["teacher"] if method == "meanteacher" else {"params": cur["params"], "stats": cur["stats"]}
        logits, _ = P.forward(model["params"], model["stats"], data["xv"], train=False)
        score = jnp.sum(data["v_real"] * (jnp.argmax(logits, -1) == data["yv"])) / jnp.sum(data["v_real"])
        active = st["active"]
        cur = jax.tree.map(lambda a, b: jnp.where(active, a, b), cur, st["cur"])
        improved = active & (score > st["best_score"])
        bad = jnp.where(improved, 0, st["bad"] + active)
        return {"cur": cur,
                "best": jax.tree.map(lambda a, b: jnp.where(improved, a, b), model, st["best"]),
                "best_score": jnp.where(improved, score, st["best_score"]),
                "bad": bad, "active": active & (bad < patience)}

    return jax.jit(jax.vmap(point_round, in_axes=(0, 0, None, None, None, None, None)))


@dataclass
class MethodRun:
    """Per grid point: best validation accuracy and the (params, stats) at it."""

    val_scores: np.ndarray  # f32[P]
    params: list


def train_method(method: str, xl, yl, xu, su, x_val, y_val, grid: P.Grid, *, num_classes: int,
                 hyper: Hyper = Hyper(), pad_to: int | None = None) -> MethodRun:
    """Train every point of `grid` with `method`. xl f32[L, K, D] / yl i32[L]: labelled weak views; xu, su
    f32[U, K, D]: weak and strong views of the unlabelled rows; x_val f32[V, D] / y_val i32[V] (clean embeddings).
    Points of one head shape run as one vmapped group, each with its own seed (init, batches, dropout, views).
    pad_to: rows the labelled and unlabelled arrays are padded to (default: probes.bucket of the larger), so every
    fraction of one training split shares a compile."""
    if method not in METHODS:
        raise SemiSupError(f"unknown method {method!r}; choose from {', '.join(METHODS)}.")
    nl, nu, nv = len(xl), len(xu), len(x_val)
    if nl < 1 or nu < 1 or nv < 1:
        raise SemiSupError(f"need labelled, unlabelled and validation rows, got {nl}, {nu} and {nv}.")
    n_pad = max(pad_to or 0, P.bucket(max(nl, nu)))
    data = {"xl": P.pad_rows(jnp.asarray(xl, jnp.float32), n_pad),
            "yl": P.pad_rows(jnp.asarray(yl, jnp.int32), n_pad),
            "xu": P.pad_rows(jnp.asarray(xu, jnp.float32), n_pad),
            "su": P.pad_rows(jnp.asarray(su, jnp.float32), n_pad),
            "xv": P.pad_rows(jnp.asarray(x_val, jnp.float32), P.bucket(nv)),
            "yv": P.pad_rows(jnp.asarray(y_val, jnp.int32), P.bucket(nv)),
            "v_real": (jnp.arange(P.bucket(nv)) < nv).astype(jnp.float32),
            "n_l": jnp.int32(nl), "n_u": jnp.int32(nu)}
    sched = grid.schedule
    steps = max(1, -(-max(nl, nu) // hyper.batch))
    round_fn = _make_round(method, hyper, num_classes, sched.check_every)
    dim = data["xl"].shape[-1]
    val = np.full(len(grid.points), -np.inf, np.float32)
    params: list = [None] * len(grid.points)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, p in enumerate(grid.points):
        groups.setdefault((p.hidden_layers, p.hidden_dim if p.hidden_layers else 0), []).append(i)
    for members in groups.values():
        pts = [grid.points[i] for i in members]
        inits = [P.init_params(p, dim, num_classes) for p in pts]
        p0 = jax.tree.map(lambda *a: jnp.stack(a), *[i[0] for i in inits])
        s0 = jax.tree.map(lambda *a: jnp.stack(a), *[i[1] for i in inits])
        n = len(pts)
        cur = {"params": p0, "opt": jax.vmap(_adam.init)(p0), "stats": s0, "teacher": {"params": p0, "stats": s0},
               "step": jnp.zeros(n, jnp.int32)}
        state = {"cur": cur, "best": {"params": p0, "stats": s0}, "best_score": jnp.full(n, -jnp.inf),
                 "bad": jnp.zeros(n, jnp.int32), "active": jnp.ones(n, bool)}
        hp = {"lr": jnp.array([p.lr for p in pts], jnp.float32),
              "dropout": jnp.array([p.dropout for p in pts], jnp.float32),
              "key": jnp.stack([jax.random.fold_in(jax.random.PRNGKey(p.seed), 7) for p in pts])}
        for r in range(max(1, sched.max_epochs // sched.check_every)):
            state = round_fn(state, hp, data, jnp.int32(r * sched.check_every), jnp.int32(sched.patience),
                             jnp.int32(steps), jnp.float32(sched.max_epochs))
            if not np.asarray(state["active"]).any():
                break
        scores = np.asarray(state["best_score"])
        for j, i in enumerate(members):
            val[i] = scores[j]
            params[i] = jax.tree.map(lambda a, j=j: a[j], (state["best"]["params"], state["best"]["stats"]))
    return MethodRun(val, params)


def make_semisup_grid(name: str = "semi", seeds: int = 2, seed: int = 0, **schedule) -> P.Grid:
    """The heads trained per method: 'semi' = the fast grid's MLP (1 x 1024, lr 1e-3, Xavier uniform) and linear
    (lr 1e-3) heads x `seeds` seeds, 60 epochs (an epoch covers the unlabelled set once), validation every 3,
    no early stopping (patience = every check): the best validation checkpoint is kept, as SSLH trains (300
    epochs end to end, best checkpoint). A consistency term needs many passes over the unlabelled rows, and FixMatch's
    confident pseudo-labels appear only once the head is sure, so early stopping on a few labels' validation
    accuracy cuts the semi-supervised methods short. Any probes grid name ('fast', 'full', 'linear') trains that
    grid's heads instead."""
    if name != "semi":
        return P.make_grid(name, seed, repeats=seeds, **schedule)
    shapes = [(1, 1e-3), (0, 1e-3)]
    points = tuple(P.GridPoint(hidden_layers=h, lr=lr, seed=seed * 1000 + r * len(shapes) + i)
                   for r in range(seeds) for i, (h, lr) in enumerate(shapes))
    sched = dataclasses.replace(P.Schedule(max_epochs=60, check_every=3, patience=20), **schedule)
    return P.Grid("semi", points, sched, seeds)


@dataclass
class Cell:
    """One method at one fraction on one split: test report per seed of the selected configuration."""

    method: str
    fraction: float
    split: str
    labelled: int
    unlabelled: int
    val_score: float
    selected: dict
    seed_tests: list[dict]


def fit_semisup(method: str, views_w, views_s, y_train, lab_idx, x_val, y_val, x_test, y_test, grid: P.Grid, *,
                num_classes: int, positive: int = 1, hyper: Hyper = Hyper()) -> tuple[float, dict, list[dict]]:
    """Standardise (training-split statistics of the weak views), train `method` with labelled rows `lab_idx`
    of the training split and the rest unlabelled (all of it at fraction 1), select on validation (mean over seeds),
    score the test split per seed. Returns (validation score, selected point, per-seed test reports)."""
    n, k, d = views_w.shape
    flat = np.asarray(views_w, np.float32).reshape(n * k, d)
    mean, std = flat.mean(0), flat.std(0)
    std = np.where(std < 1e-6, 1.0, std)
    z = lambda a: (np.asarray(a, np.float32) - mean) / std
    unl = np.setdiff1d(np.arange(n), lab_idx)
    unl = np.arange(n) if len(unl) == 0 else unl
    vw, vs = z(views_w), z(views_s)
    run = train_method(method, vw[lab_idx], np.asarray(y_train)[lab_idx], vw[unl], vs[unl], z(x_val), y_val, grid,
                       num_classes=num_classes, hyper=hyper, pad_to=P.bucket(n))
    c = grid.configs
    val = run.val_scores.reshape(grid.repeats, c).mean(0)
    best = int(np.argmax(val))
    tests = []
    for r in range(grid.repeats):
        params, stats = run.params[r * c + best]
        logits = np.asarray(P.forward(params, stats, jnp.asarray(z(x_test)), train=False)[0])
        probs = np.asarray(jax.nn.softmax(logits, -1))
        rep = M.multiclass_scores(np.asarray(y_test), probs)
        if num_classes == 2 and len(np.unique(y_test)) == 2:
            rep |= M.binary_scores(np.asarray(y_test), probs, positive=positive)
        tests.append({kk: float(v) for kk, v in rep.items()})
    return float(val[best]), dataclasses.asdict(grid.points[best]), tests


def row_task(task: str, method: str, fraction: float) -> str:
    """The result row's task: '<task>@semisup:<method>@<fraction>' (its own leaderboard key per method and
    fraction; the leaderboard's semi-supervised section groups them back)."""
    return f"{task}@semisup:{method}@{fraction:g}"


def run_semisup(task, embedder, data_root, cache: EmbeddingCache | None = None, *,
                methods: Sequence[str] = METHODS[1:], fractions: Sequence[float] = FRACTIONS, grid: str = "semi",
                seeds: int = 2, seed: int = 0, views: int = 2, max_folds: int | None = None,
                model_name: str | None = None, progress: bool = False, log: Callable[[str], None] | None = None,
                reader_options: dict | None = None, allow_missing: bool = False, folds: int | None = None,
                hyper: Hyper = Hyper()) -> dict:
    """Every method (and supervised-only) at every labelled fraction on every split of a classification or binary
    detection task. Returns {'cells': [Cell], 'results': [leaderboard Result per method x fraction], 'metric',
    'task', 'model'}."""
    say = log or (lambda s: None)
    spec = get_task(task) if isinstance(task, str) else task
    methods = tuple(dict.fromkeys(["supervised", *methods]))
    cache = cache or EmbeddingCache()
    index = spec.read(data_root, **(reader_options or {}))
    spec.check_complete(index, allow_missing)
    if index.multilabel:
        raise TaskError(f"{spec.name} is multi-label; the semi-supervised heads train single-label tasks "
                        "(classification and binary detection). Leave out --semi-supervised.")
    spec = spec.for_index(index)
    splits = spec.splits(index, seed, n_folds=folds)
    splits = splits[:max_folds] if max_folds is not None else splits
    used = sorted({r.key: r for sp in splits for part in sp.parts().values() for r in part}.values(),
                  key=lambda r: r.key)
    train_used = sorted({r.key: r for sp in splits for r in sp.train}.values(), key=lambda r: r.key)
    row = {r.key: i for i, r in enumerate(used)}
    trow = {r.key: i for i, r in enumerate(train_used)}
    emb = np.asarray(cache.embed(embedder, used, crop_s=spec.crop_s, progress=progress, desc=f"embed {spec.name}"),
                     np.float32)
    say(f"{spec.name}: {len(used):,} clips, {len(index.classes)} classes, {len(splits)} split(s); "
        f"{views} weak + {views} strong views of {len(train_used):,} training clips")
    vw = embed_views(cache, embedder, train_used, "weak", views, seed=seed, crop_s=spec.crop_s, progress=progress)
    vs = embed_views(cache, embedder, train_used, "strong", views, seed=seed, crop_s=spec.crop_s, progress=progress)
    n_cls = len(index.classes)
    positive = 1 if spec.positive is None else spec.positive
    grid_obj = make_semisup_grid(grid, seeds, seed)
    cells = []
    for sp in splits:
        ti = [trow[r.key] for r in sp.train]
        y_tr = np.array([r.labels[0] for r in sp.train], np.int32)
        y_va = np.array([r.labels[0] for r in sp.validation], np.int32)
        y_te = np.array([r.labels[0] for r in sp.test], np.int32)
        x_va, x_te = emb[[row[r.key] for r in sp.validation]], emb[[row[r.key] for r in sp.test]]
        for f in sorted(set(fractions) | {1.0}):  # supervised on every label: the 100 % reference
            lab = labelled_subset([r.key for r in sp.train], y_tr, f, seed)
            for m in (methods if f in fractions else ("supervised",)):
                v, sel, tests = fit_semisup(m, vw[ti], vs[ti], y_tr, lab, x_va, y_va, x_te, y_te, grid_obj,
                                            num_classes=n_cls, positive=positive, hyper=hyper)
                cells.append(Cell(m, f, sp.name, len(lab), len(sp.train) - len(lab), v, sel, tests))
                say(f"{spec.name} {sp.name} {m} @ {f:g}: {spec.metric} "
                    f"{np.mean([t[spec.metric] for t in tests]):.4f} (val {v:.4f}, {len(lab)} labelled)")
    name = model_name or getattr(embedder, "name", "model")
    src = source_spec(embedder)
    results = []
    for m, f in dict.fromkeys((c.method, c.fraction) for c in cells):
        mine = [c for c in cells if c.method == m and c.fraction == f]
        per_split = [float(np.mean([t[spec.metric] for t in c.seed_tests])) for c in mine]
        every = [t[spec.metric] for c in mine for t in c.seed_tests]
        keys = set.intersection(*(set(t) for c in mine for t in c.seed_tests))
        results.append(Result(
            model=name, task=row_task(spec.name, m, f), metric=spec.metric, mean=float(np.mean(every)),
            std=float(np.std(every)) if len(every) > 1 else 0.0, folds=per_split,
            checkpoint=str(src.get("checkpoint", "")), higher_is_better=HIGHER_IS_BETTER.get(spec.metric, True),
            scores={k: float(np.mean([t[k] for c in mine for t in c.seed_tests])) for k in sorted(keys)
                    if all(math.isfinite(t[k]) for c in mine for t in c.seed_tests)},
            probe=f"semisup:{m}", grid=grid_obj.to_dict(), seed=seed,
            extra={"semisup": {"task": spec.name, "method": m, "labelled_fraction": f,
                               "hyper": dataclasses.asdict(hyper),
                               "views": views, "seeds": seeds, "per_seed": every,
                               "labelled": [c.labelled for c in mine], "unlabelled": [c.unlabelled for c in mine],
                               "selected": [c.selected for c in mine], "val_scores": [c.val_score for c in mine]},
                   "splits": [c.split for c in mine], "classes": n_cls, "data_root": str(data_root),
                   "max_folds": max_folds, "embedding_dim": int(emb.shape[1])}))
    return {"cells": cells, "results": results, "metric": spec.metric, "task": spec.name, "model": name,
            "higher_is_better": HIGHER_IS_BETTER.get(spec.metric, True)}
