"""Probing tasks: declarative specs of reader + protocol + probe + metric, and `run` -> a leaderboard Result.

    from audiorep.downstream import tasks
    result = tasks.run("esc50", audiorep.load("beats-tiny"), "/data/ESC-50-master", cache, grid="fast")

Tasks (`TASKS`):
  esc50 / esc10       ESC-50 (or its ESC-10 subset), 5 official folds: each fold is the test set once, the
                      next fold validates, the other three train; accuracy mean +- std over the 5 folds.
  speech_commands     Speech Commands v2, 35 words, official train/validation/test lists; accuracy.
  speech_commands12   the 12-class KWS task (10 words + _silence_ + _unknown_), official lists; accuracy.
  audioset            AudioSet balanced_train -> eval, multi-label; validation = 10 % of the balanced-train
                      videos (group-disjoint); mAP, with ROC-AUC and d' reported.
  fsdd                Free Spoken Digit Dataset (digits), speaker-disjoint folds (one speaker tests, the next
                      validates, the rest train); accuracy.
  synthetic           the demo's procedural corpus (data/synthetic.py), source-disjoint folds; accuracy.
  asvspoof2019_la     ASVspoof 2019 LA, bona fide vs spoof, official speaker-disjoint train/dev/eval; EER
                      (bona fide = target = higher score), with min-DCF, ROC-AUC, F1, sensitivity, specificity.

Every protocol returns `Split`s and passes them through `check_no_group_leakage` before anything is
embedded: a group (speaker, source recording, video) never appears in two parts of a split. Embeddings come
from downstream/cache.py (computed once per model and record list), probes from downstream/probes.py,
scores from downstream/metrics.py; the Result rows are what downstream/leaderboard.py stores.
`LogMelBaseline` is the classic reference representation (mean and std over time of a frontend's log-mel
features) and can stand in for an Embedder anywhere.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audiorep.data.sources import DatasetError, DatasetIndex, Record, read_dataset
from audiorep.downstream.cache import EmbeddingCache, source_spec
from audiorep.downstream.leaderboard import Result
from audiorep.downstream.metrics import HIGHER_IS_BETTER
from audiorep.errors import AudiorepError


class TaskError(AudiorepError, ValueError):
    """A task that cannot run as asked (unknown name, empty split, unusable data)."""


class LeakageError(TaskError):
    """A group (speaker, source clip, video) found in two parts of one split."""


# ---------------------------------------------------------------------------------------- splits
@dataclass
class Split:
    """One train/validation/test partition (one fold of a k-fold protocol)."""

    name: str
    train: list[Record]
    validation: list[Record]
    test: list[Record]

    def parts(self) -> dict[str, list[Record]]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


def group_of(r: Record) -> str:
    """The leakage unit of a record: its group, else its file (windows of one file stay together)."""
    return f"group:{r.group}" if r.group is not None else f"file:{r.path}"


def check_no_group_leakage(splits: Split | Sequence[Split]) -> None:
    """Raise LeakageError when a group or a file sits in two parts of any split, or a part is empty."""
    for sp in [splits] if isinstance(splits, Split) else splits:
        seen: dict[str, str] = {}
        for part, recs in sp.parts().items():
            if not recs:
                raise TaskError(f"split {sp.name!r}: the {part} part is empty; the dataset is too small for this "
                                "protocol (or the reader found no records of that split).")
            for g in {group_of(r) for r in recs} | {f"file:{r.path}" for r in recs if r.group is not None}:
                other = seen.setdefault(g, part)
                if other != part:
                    raise LeakageError(
                        f"split {sp.name!r}: {g.split(':', 1)[0]} {g.split(':', 1)[1]!r} is in both {other} and "
                        f"{part}. Scores would be inflated; fix the split lists or the reader's group option.")


def fold_splits(records: Sequence[Record], folds: Sequence[int] | None = None) -> list[Split]:
    """k-fold protocol on `Record.fold` (HEAR/ESC-50): fold k tests, fold k+1 (cyclic) validates, the rest train."""
    ks = sorted({r.fold for r in records if r.fold is not None}) if folds is None else sorted(folds)
    if len(ks) < 3:
        raise TaskError(f"the fold protocol needs at least 3 folds, found {ks}.")
    by = {k: [r for r in records if r.fold == k] for k in ks}
    out = []
    for i, k in enumerate(ks):
        val = ks[(i + 1) % len(ks)]
        out.append(Split(f"fold{k}", [r for j in ks if j not in (k, val) for r in by[j]], by[val], by[k]))
    return out


def assign_group_folds(records: Sequence[Record], n_folds: int, seed: int = 0) -> list[Record]:
    """Records with `fold` set: each group lies in one fold, and every class is spread evenly over the folds.

    Stratified group k-fold: groups are visited class by class (a group's class is its records' most common
    first label), largest first with a seeded tie-break, and each goes to the fold holding the fewest records
    of its class (then the fewest records overall). Without stratification a small dataset can put all of a
    class's groups into the test and validation folds, leaving nothing to learn it from.
    """
    if n_folds < 3:
        raise TaskError(f"n_folds must be >= 3 (test, validation, train), got {n_folds}.")
    sizes: dict[str, int] = {}
    labels: dict[str, dict[int, int]] = {}
    for r in records:
        g = group_of(r)
        sizes[g] = sizes.get(g, 0) + 1
        if r.labels:
            counts = labels.setdefault(g, {})
            counts[r.labels[0]] = counts.get(r.labels[0], 0) + 1
    if len(sizes) < n_folds:
        raise TaskError(f"{len(sizes)} groups cannot fill {n_folds} group-disjoint folds; lower n_folds.")
    cls = {g: max(c, key=lambda k: (c[k], -k)) if (c := labels.get(g)) else -1 for g in sizes}
    order = list(sizes)
    np.random.default_rng(seed).shuffle(order)
    order.sort(key=lambda g: (cls[g], -sizes[g]))  # stable: the shuffle breaks ties
    total = np.zeros(n_folds, np.int64)
    per_class: dict[int, np.ndarray] = {}
    fold_of = {}
    for g in order:
        pc = per_class.setdefault(cls[g], np.zeros(n_folds, np.int64))
        k = int(np.lexsort((total, pc))[0])  # fewest of this class, then fewest overall
        fold_of[g] = k + 1
        pc[k] += sizes[g]
        total[k] += sizes[g]
    return [dataclasses.replace(r, fold=fold_of[group_of(r)]) for r in records]


def official_splits(records: Sequence[Record], val_fraction: float = 0.1, seed: int = 0) -> list[Split]:
    """The dataset's own train/validation/test; without a validation split, `val_fraction` of the training
    groups (seeded) become validation."""
    parts = {s: [r for r in records if r.split == s] for s in ("train", "validation", "test")}
    if not parts["validation"] and parts["train"]:
        groups = sorted({group_of(r) for r in parts["train"]})
        rng = np.random.default_rng(seed)
        n_val = max(1, int(round(val_fraction * len(groups))))
        val_groups = set(rng.choice(groups, size=min(n_val, len(groups) - 1), replace=False).tolist())
        parts["validation"] = [r for r in parts["train"] if group_of(r) in val_groups]
        parts["train"] = [r for r in parts["train"] if group_of(r) not in val_groups]
    return [Split("official", parts["train"], parts["validation"], parts["test"])]


# ----------------------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class TaskSpec:
    """A probing task: which reader (and options), which protocol, which probe target and metric."""

    name: str
    description: str
    reader: str
    protocol: str  # 'folds' | 'group_folds' | 'official'
    metric: str  # primary metric, a key of the probe's test report
    reader_options: dict = field(default_factory=dict)
    protocol_options: dict = field(default_factory=dict)
    subdir: str | None = None  # used when DATA_ROOT/subdir exists (fsdd: recordings/)
    crop_s: float | None = None  # clips longer than this are cut (embedding protocol)
    default_root: str | None = None
    positive: int | None = None  # 2-class detection tasks: the bona fide class (EER, min-DCF, sens./spec.)

    def read(self, data_root: str | os.PathLike, **overrides) -> DatasetIndex:
        root = Path(data_root).expanduser()
        if self.subdir and (root / self.subdir).is_dir():
            root = root / self.subdir
        return read_dataset(self.reader, root, **(self.reader_options | overrides))

    def splits(self, index: DatasetIndex, seed: int = 0) -> list[Split]:
        """The protocol's splits, checked for group leakage."""
        records = [r for r in index.records if r.labels]
        if not records:
            raise TaskError(f"{self.name}: no labelled records in {index.root}; check the reader options.")
        if self.protocol == "folds":
            splits = fold_splits(records, self.protocol_options.get("folds"))
        elif self.protocol == "group_folds":
            splits = fold_splits(assign_group_folds(records, self.protocol_options.get("n_folds", 5), seed))
        elif self.protocol == "official":
            splits = official_splits(records, self.protocol_options.get("val_fraction", 0.1), seed)
        else:
            raise TaskError(f"{self.name}: unknown protocol {self.protocol!r}.")
        check_no_group_leakage(splits)
        return splits


_SHARED_FSDD = Path(__file__).resolve().parents[3] / "shared" / "data" / "fsdd"

TASKS: dict[str, TaskSpec] = {t.name: t for t in (
    TaskSpec("esc50", "ESC-50, 50 environmental sound classes, 5 official folds", "esc50", "folds", "accuracy"),
    TaskSpec("esc10", "ESC-10 subset of ESC-50, 10 classes, 5 official folds", "esc50", "folds", "accuracy",
             reader_options={"esc10": True}),
    TaskSpec("speech_commands", "Speech Commands v2, 35 words, official splits", "speech_commands", "official",
             "accuracy", reader_options={"num_classes": 35}),
    TaskSpec("speech_commands12", "Speech Commands v2 KWS: 10 words + silence + unknown, official splits",
             "speech_commands", "official", "accuracy", reader_options={"num_classes": 12}),
    TaskSpec("audioset", "AudioSet balanced train -> eval, 527 classes, multi-label", "audioset", "official", "map",
             reader_options={"splits": ("balanced_train", "eval")}, crop_s=10.0),
    TaskSpec("fsdd", "Free Spoken Digit Dataset, 10 digits, speaker-disjoint folds", "folder", "group_folds",
             "accuracy", reader_options={"label_regex": r"^(\d)_", "group_regex": r"^\d_([A-Za-z]+)_"},
             protocol_options={"n_folds": 6}, subdir="recordings", default_root=str(_SHARED_FSDD)),
    TaskSpec("synthetic", "the demo's procedural sound-event corpus, source-disjoint folds", "folder",
             "group_folds", "accuracy", protocol_options={"n_folds": 5}),
    TaskSpec("asvspoof2019_la", "ASVspoof 2019 LA countermeasure: bona fide vs spoof, official train/dev/eval "
             "(speaker-disjoint); EER with bona fide as the target class", "asvspoof2019_la", "official", "eer",
             positive=0),
)}


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise TaskError(f"unknown task {name!r}; tasks are {', '.join(sorted(TASKS))}.")
    return TASKS[name]


# ----------------------------------------------------------------------------------------- running
def _targets(records: Sequence[Record], num_classes: int, multilabel: bool) -> np.ndarray:
    if multilabel:
        y = np.zeros((len(records), num_classes), np.float32)
        for i, r in enumerate(records):
            y[i, list(r.labels)] = 1.0
        return y
    return np.array([r.labels[0] for r in records], np.int32)


def run(task: str | TaskSpec, embedder, data_root: str | os.PathLike, cache: EmbeddingCache | None = None, *,
        grid="fast", probe: str = "mlp", seed: int = 0, max_folds: int | None = None,
        model_name: str | None = None, progress: bool = True, log: Callable[[str], None] | None = None,
        reader_options: dict | None = None, repeats: int = 1) -> Result:
    """Embed the task's data with `embedder` (through the cache), probe every split, and summarise.

    Args:
      embedder: an Embedder, LogMelBaseline, or any object with scene(clips) / sample_rate / name.
      data_root: the dataset's folder (fsdd: the folder holding recordings/ or the recordings themselves).
      grid: 'fast' | 'full' | 'linear' | a probes.Grid (MLP/linear probes); ignored by probe='knn'.
      probe: 'mlp' (the grid, linear points included) or 'knn'.
      max_folds: probe only the first k splits (quick runs); recorded in the Result.
      repeats: train every configuration of a named grid this many times with other seeds; selection and
        scores average over them (probes.Grid), so the probe's own initialisation noise shrinks.
    Returns:
      a leaderboard Result: primary metric mean/std over splits, every split's score, every metric's mean.
    """
    from audiorep.downstream import probes as P

    spec = get_task(task) if isinstance(task, str) else task
    say = log or (lambda s: None)
    cache = cache or EmbeddingCache()
    index = spec.read(data_root, **(reader_options or {}))
    for p in index.problems:
        say(f"{spec.name}: {p}")
    splits = spec.splits(index, seed)
    if max_folds is not None:
        splits = splits[:max_folds]
    used = sorted({r.key: r for sp in splits for part in sp.parts().values() for r in part}.values(),
                  key=lambda r: r.key)
    row = {r.key: i for i, r in enumerate(used)}
    say(f"{spec.name}: {len(used):,} clips, {len(index.classes)} classes, {len(splits)} split(s)")
    emb = cache.embed(embedder, used, crop_s=spec.crop_s, progress=progress, desc=f"embed {spec.name}")
    emb = np.asarray(emb, np.float32)
    n_cls = len(index.classes)
    if isinstance(grid, str):
        grid_obj = P.make_grid(grid, seed, repeats=repeats)
    elif repeats != 1:
        raise TaskError("repeats applies to a named grid; a probes.Grid carries its own (Grid.repeats).")
    else:
        grid_obj = grid
    per_split, sizes = [], []
    bar = _bar(len(splits), f"probe {spec.name}", progress)
    for sp in splits:
        data = []
        for part in (sp.train, sp.validation, sp.test):
            data += [emb[[row[r.key] for r in part]], _targets(part, n_cls, index.multilabel)]
        positive = 1 if spec.positive is None else spec.positive  # a detection task's target: its bona fide class
        if probe == "knn":
            res = P.knn_probe(*data, num_classes=n_cls, multilabel=index.multilabel, seed=seed, positive=positive)
        elif probe == "mlp":
            res = P.fit_probe(*data, num_classes=n_cls, multilabel=index.multilabel, grid=grid_obj, seed=seed,
                              progress=progress, positive=positive)
        else:
            raise TaskError(f"probe must be 'mlp' or 'knn', got {probe!r}.")
        if spec.metric not in res.test:
            raise TaskError(f"{spec.name}: the probe report has no {spec.metric!r} (it has {sorted(res.test)}).")
        per_split.append(res)
        sizes.append({"train": len(sp.train), "validation": len(sp.validation), "test": len(sp.test)})
        say(f"{spec.name} {sp.name}: {spec.metric} {res.test[spec.metric]:.4f} (val {res.val_score:.4f}, "
            f"{res.kind} {res.selected})")
        bar.update(1)
    bar.close()
    values = [r.test[spec.metric] for r in per_split]
    keys = set.intersection(*(set(r.test) for r in per_split))
    src = source_spec(embedder)
    return Result(
        model=model_name or getattr(embedder, "name", "model"), task=spec.name, metric=spec.metric,
        mean=float(np.mean(values)), std=float(np.std(values)) if len(values) > 1 else 0.0,
        folds=[float(v) for v in values], checkpoint=str(src.get("checkpoint", "")),
        higher_is_better=HIGHER_IS_BETTER.get(spec.metric, True),
        scores={k: float(np.mean([r.test[k] for r in per_split])) for k in sorted(keys)
                if all(math.isfinite(r.test[k]) for r in per_split)},
        probe=probe, grid=grid_obj.to_dict() if probe == "mlp" else per_split[0].grid, seed=seed,
        extra={"splits": [sp.name for sp in splits], "sizes": sizes, "selected": [r.selected for r in per_split],
               "val_scores": [r.val_score for r in per_split], "classes": len(index.classes),
               "multilabel": index.multilabel, "data_root": str(data_root), "max_folds": max_folds,
               "embedding_dim": int(emb.shape[1]),
               "embedding": {k: v for k, v in src.items() if k in ("layer", "pooling", "sample_rate", "crop_s")}},
    )


def _bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="split", disable=not enabled, leave=False)


# ------------------------------------------------------------------------------------- log-mel baseline
class LogMelBaseline:
    """Statistics over time of a frontend's normalised log-mel features: the baseline every encoder must beat.

    frontend: a preset name ('beats', 'ssast', 'passt') or a frontend object (e.g. an encoder's own, so that
    the baseline sees exactly the encoder's input).
    pooling: 'mean+std' (mean and standard deviation per mel bin) or 'mean+std+delta' (plus the standard
    deviation of each bin's delta over frames; downstream/embed.py `delta_std`), so a baseline is pooled the
    same way as the encoders it is compared with.

    scene(list of f32[n] clips at `sample_rate`) -> f32[B, k * mels] (k = 2 or 3). Clips are zero-padded to a
    shared length (a multiple of 0.5 s) and only each clip's own frames enter its statistics.
    """

    POOLINGS = ("mean+std", "mean+std+delta")

    def __init__(self, frontend="beats", batch_size: int = 32, pooling: str = "mean+std"):
        from audiorep.audio.frontends import get_frontend

        if pooling not in self.POOLINGS:
            raise TaskError(f"the log-mel baseline pools with {' or '.join(map(repr, self.POOLINGS))}, "
                             f"not {pooling!r}.")
        self.frontend = get_frontend(frontend) if isinstance(frontend, str) else frontend
        self.frontend_name = frontend if isinstance(frontend, str) else self.frontend.name
        self.sample_rate = int(self.frontend.sample_rate)
        self.name = f"logmel-{self.frontend_name}"
        self.batch_size = int(batch_size)
        self.pooling = pooling
        self.scene_embedding_size = len(pooling.split("+")) * int(self.frontend.num_mel_bins)
        self._fn = None

    def cache_spec(self) -> dict:
        return {"model": self.name, "checkpoint": "none", "frontend": self.frontend.to_dict(),
                "pooling": self.pooling, "layer": "features", "sample_rate": self.sample_rate}

    def _stats(self):
        if self._fn is None:
            import jax
            import jax.numpy as jnp

            frontend = self.frontend

            @jax.jit
            def stats(waves, n_frames):
                feats = frontend(waves)  # f32[B, T, M]
                mask = (jnp.arange(feats.shape[1])[None, :] < n_frames[:, None])[..., None]
                n = jnp.maximum(n_frames, 1)[:, None].astype(jnp.float32)
                mean = jnp.sum(feats * mask, 1) / n
                var = jnp.sum(((feats - mean[:, None]) * mask) ** 2, 1) / n
                return jnp.concatenate([mean, jnp.sqrt(var + 1e-8)], -1), feats

            self._fn = stats
        return self._fn

    def scene(self, clips) -> np.ndarray:
        from audiorep.downstream.embed import delta_std

        clips = [np.asarray(c, np.float32).reshape(-1) for c in ([clips] if np.ndim(clips[0]) == 0 else clips)]
        step = self.sample_rate // 2
        out = []
        for i in range(0, len(clips), self.batch_size):
            group = clips[i:i + self.batch_size]
            length = max(max(len(c) for c in group), step)
            length = -(-length // step) * step
            waves = np.zeros((len(group), length), np.float32)
            for j, c in enumerate(group):
                waves[j, :len(c)] = c
            frames = np.array([max(1, self.frontend.num_frames(len(c))) for c in group], np.int32)
            stats, feats = self._stats()(waves, frames)
            parts = [np.asarray(stats)]
            if "delta" in self.pooling:
                feats = np.asarray(feats)
                parts.append(delta_std(feats[np.arange(feats.shape[1])[None, :] < frames[:, None]], frames))
            out.append(np.concatenate(parts, -1))
        return np.concatenate(out).astype(np.float32)


def resolve_model(name_or_dir: str, **load_options):
    """'logmel' / 'logmel-<frontend>' -> LogMelBaseline (load_options: only `pooling`); anything else ->
    audiorep.load(name_or_dir, **load_options)."""
    if name_or_dir == "logmel" or name_or_dir.startswith("logmel-"):
        unknown = set(load_options) - {"pooling"}
        if unknown:
            raise TaskError(f"the log-mel baseline takes no {', '.join(sorted(unknown))} option; only pooling.")
        return LogMelBaseline(name_or_dir.split("-", 1)[1] if "-" in name_or_dir else "beats", **load_options)
    import audiorep

    return audiorep.load(name_or_dir, **load_options)


__all__ = ["TASKS", "TaskSpec", "Split", "run", "check_no_group_leakage", "fold_splits", "official_splits",
           "assign_group_folds", "LogMelBaseline", "resolve_model", "get_task", "TaskError", "LeakageError",
           "DatasetError"]
