"""`run`: embed a task's data with a model (through the cache), probe every split, summarise as a Result."""

from __future__ import annotations

import datetime as _dt
import math
import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from audiorep.data.sources import Record
from audiorep.downstream.cache import EmbeddingCache, source_spec
from audiorep.downstream.leaderboard import Result
from audiorep.downstream.metrics import COST_MODELS, HIGHER_IS_BETTER, bonafide_score
from audiorep.downstream.tasks.catalog import get_task
from audiorep.downstream.tasks.groups import group_report
from audiorep.downstream.tasks.protocols import cross_domain_splits, protocol_column, summarise
from audiorep.downstream.tasks.songs import SongTaskSpec, run_songs
from audiorep.downstream.tasks.spec import TaskSpec, resolve_grid
from audiorep.downstream.tasks.splits import TaskError


def targets(records: Sequence[Record], num_classes: int, multilabel: bool) -> np.ndarray:
    """The probe targets of `records`: int32[N] class ids, or f32[N, num_classes] multi-hot when multilabel."""
    if multilabel:
        y = np.zeros((len(records), num_classes), np.float32)
        for i, r in enumerate(records):
            y[i, list(r.labels)] = 1.0
        return y
    return np.array([r.labels[0] for r in records], np.int32)


def run(task: str | TaskSpec, embedder, data_root: str | os.PathLike, cache: EmbeddingCache | None = None, *,
        grid="fast", probe: str = "mlp", seed: int = 0, max_folds: int | None = None,
        model_name: str | None = None, progress: bool = True, log: Callable[[str], None] | None = None,
        reader_options: dict | None = None, repeats: int = 1, allow_missing: bool = False,
        scores_dir: str | os.PathLike | None = None, protocol: str | None = None,
        folds: int | None = None, heads: list | None = None) -> Result:
    """Embed the task's data with `embedder` (through the cache), probe every split, and summarise.

    Args:
      embedder: an Embedder, LogMelBaseline, or any object with scene(clips) / sample_rate / name.
      data_root: the dataset's folder (fsdd: the folder holding recordings/ or the recordings themselves).
      grid: 'fast' | 'full' | 'linear' | a probes.Grid (MLP/linear probes); ignored by probe='knn'.
      probe: 'mlp' (the grid, linear points included) or 'knn'.
      max_folds: probe only the first k splits (quick runs); recorded in the Result.
      repeats: train every configuration of a named grid this many times with other seeds; selection and
        scores average over them (probes.Grid), so the probe's own initialisation noise shrinks.
      allow_missing: probe what is on disk when files the dataset lists are missing (default: raise
        IncompleteDatasetError). The Result's extra['files'] records expected / present / missing either way.
      scores_dir: for a 2-class detection task (`spec.positive` set), write this run's test scores, DET curve
        and score histograms into a new folder under it (downstream/plots.py); extra['detection'] records the
        paths. extra['cost_models'] names the cost model of every cost metric (min-DCF) the scores hold.
      protocol: None / 'in-domain' (the task's own splits) or a cross-domain protocol ('cross-attack',
        'cross-speaker', 'cross-language', 'cross-source'; downstream/tasks/protocols.py): every held-out value
        is probed twice (in-domain reference, cross-domain), the row's task is '<task>@<protocol>', its folds the
        cross-domain scores and extra['protocol'] the side-by-side table with the gaps. max_folds then counts
        held-out values.
      folds: the number of group folds of a group-fold task (default: the task's).
      heads: a list that gets, per probed split (MLP/linear probes), a dict: split (its name), head (the selected
        trained head, probes.ProbeResult.head), classes (names), positive, multilabel, crop_s; for
        downstream/heads.py to save.
    Every row whose test data has speaker / gender / language / source metadata (and, for detection, attack
    ids) gets extra['groups']: the metric per group, the worst group and the max-min gap (tasks/groups.py).
    Returns:
      a leaderboard Result: primary metric mean/std over splits, every split's score, every metric's mean.
    """
    from audiorep.downstream import probes as P  # JAX/optax: imported on use, `audiorep --help` stays fast

    spec = get_task(task) if isinstance(task, str) else task
    if isinstance(spec, SongTaskSpec):  # songs: heads over each song's chunk embeddings; the whole-song row
        if probe != "mlp" or protocol not in (None, "in-domain"):
            raise TaskError(f"{spec.name} trains song-level heads (mean, max, attention pooling) on its official "
                            f"split; {'--probe ' + probe if probe != 'mlp' else '--protocol ' + str(protocol)} does "
                            "not apply. Leave it out.")
        return run_songs(spec, embedder, data_root, cache, grid=grid, seed=seed, repeats=repeats,
                         model_name=model_name, progress=progress, log=log, reader_options=reader_options,
                         allow_missing=allow_missing).primary
    say = log or (lambda s: None)
    if scores_dir is not None and Path(scores_dir).exists() and not Path(scores_dir).is_dir():
        raise TaskError(f"scores_dir {scores_dir} is a file; it names the folder the detection scores and plots "
                        "go in. Pass a folder path.")
    cache = cache or EmbeddingCache()
    index = spec.read(data_root, **(reader_options or {}))
    spec.check_complete(index, allow_missing)  # before the problems are logged: the error says it all
    for p in index.problems:
        say(f"{spec.name}: {p}")
    spec = spec.for_index(index)  # a folder task: detection or classification, from its classes
    column = protocol_column(protocol) if protocol else None
    held, skipped = [], {}
    if column is None:
        splits = spec.splits(index, seed, n_folds=folds)
        if max_folds is not None:
            splits = splits[:max_folds]
    else:
        held, skipped = cross_domain_splits([r for r in index.records if r.labels], column, seed)
        for value, why in skipped.items():
            say(f"{spec.name} {protocol}: {column} {value!r} not held out ({why})")
        held = held[:max_folds] if max_folds is not None else held
        splits = [sp for h in held for sp in (h.in_domain, h.cross)]
    used = sorted({r.key: r for sp in splits for part in sp.parts().values() for r in part}.values(),
                  key=lambda r: r.key)
    row = {r.key: i for i, r in enumerate(used)}
    say(f"{spec.name}: {len(used):,} clips, {len(index.classes)} classes, {len(splits)} split(s)")
    emb = cache.embed(embedder, used, crop_s=spec.crop_s, progress=progress, desc=f"embed {spec.name}")
    emb = np.asarray(emb, np.float32)
    n_cls = len(index.classes)
    grid_obj = resolve_grid(grid, P.make_grid, seed, repeats, "probes.Grid")
    per_split, sizes, detection, tests = [], [], [], []
    detecting = spec.positive is not None and n_cls == 2 and not index.multilabel
    bar = _bar(len(splits), f"probe {spec.name}", progress)
    for sp in splits:
        data = []
        for part in (sp.train, sp.validation, sp.test):
            data += [emb[[row[r.key] for r in part]], targets(part, n_cls, index.multilabel)]
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
        if heads is not None and res.head is not None:
            heads.append({"split": sp.name, "head": res.head, "classes": [str(c) for c in index.classes],
                          "positive": spec.positive, "multilabel": index.multilabel, "crop_s": spec.crop_s})
        if not index.multilabel:
            tests.append((sp.test, data[5], res.test_scores))
        if detecting and scores_dir is not None and not sp.name.startswith("in-domain:"):
            detection.append(split_scores(sp.name, sp.test, data[5], res.test_scores, spec.positive))
        sizes.append({"train": len(sp.train), "validation": len(sp.validation), "test": len(sp.test)})
        say(f"{spec.name} {sp.name}: {spec.metric} {res.test[spec.metric]:.4f} (val {res.val_score:.4f}, "
            f"{res.kind} {res.selected})")
        bar.update(1)
    bar.close()
    everything, extra = per_split, {}
    if held:  # the row scores the cross-domain splits; the in-domain references go into its protocol table
        in_values = [r.test[spec.metric] for r in per_split[0::2]]
        per_split, splits, sizes = per_split[1::2], splits[1::2], sizes[1::2]
        tests = tests[1::2] if tests else tests
    values = [r.test[spec.metric] for r in per_split]
    keys = set.intersection(*(set(r.test) for r in per_split))
    if tests:
        extra["groups"] = group_report(tests, spec.metric, spec.positive)
    if held:
        extra["protocol"] = {"name": protocol, "probes": len(everything), **summarise(
            held, in_values, values, spec.metric, HIGHER_IS_BETTER.get(spec.metric, True), skipped)}
    src = source_spec(embedder)
    name = model_name or getattr(embedder, "name", "model")
    task_name = f"{spec.name}@{protocol}" if held else spec.name
    if detection:
        from audiorep.downstream.plots import write_detection_outputs  # matplotlib: `audiorep --help` stays fast

        extra["detection"] = write_detection_outputs(run_folder(scores_dir, task_name, name), detection,
                                                     title=f"{name} · {task_name}")
        say(f"{spec.name}: scores, DET curve and histograms in {Path(extra['detection']['scores']).parent}")
    return Result(
        model=name, task=task_name, metric=spec.metric,
        mean=float(np.mean(values)), std=float(np.std(values)) if len(values) > 1 else 0.0,
        folds=[float(v) for v in values], checkpoint=str(src.get("checkpoint", "")),
        higher_is_better=HIGHER_IS_BETTER.get(spec.metric, True),
        scores={k: float(np.mean([r.test[k] for r in per_split])) for k in sorted(keys)
                if all(math.isfinite(r.test[k]) for r in per_split)},
        probe=probe, grid=grid_obj.to_dict() if probe == "mlp" else per_split[0].grid, seed=seed,
        extra={"splits": [sp.name for sp in splits], "sizes": sizes, "selected": [r.selected for r in per_split],
               "val_scores": [r.val_score for r in per_split], "classes": len(index.classes),
               "multilabel": index.multilabel, "data_root": str(data_root), "max_folds": max_folds,
               "files": index.file_counts(), "model_dir": model_dir(embedder),
               "embedding_dim": int(emb.shape[1]),
               "embedding": {k: v for k, v in src.items() if k in ("layer", "pooling", "sample_rate", "crop_s")},
               "cost_models": {k: v for k, v in COST_MODELS.items() if k in keys}, **extra},
    )


def split_scores(name: str, records: Sequence[Record], labels: np.ndarray, probabilities: np.ndarray,
                 positive: int):
    """A split's test scores for downstream/plots.py: the detection score of each record (higher = class
    `positive`, as the metrics score it), whether it is bona fide, its key and, when the data names attacks,
    its `attack_id` ('' for bona fide)."""
    from audiorep.downstream.plots import SplitScores  # matplotlib: `audiorep --help` stays fast

    attacks = [r.info.get("attack_id", "") for r in records]
    return SplitScores(name, bonafide_score(probabilities, positive), np.asarray(labels) == positive,
                       np.array([r.key for r in records], dtype=str),
                       np.array(attacks, dtype=str) if any(attacks) else None)


def run_folder(scores_dir: str | os.PathLike, task: str, model: str) -> Path:
    """A new folder for one run's detection outputs: SCORES_DIR/<task>-<model>-<UTC time>-<random>."""
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)[:60]
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path(scores_dir).expanduser() / f"{task}-{slug}-{stamp}-{secrets.token_hex(3)}"


def model_dir(embedder) -> str | None:
    """The absolute model directory an Embedder was loaded from (None for a registered name or a baseline): the
    leaderboard finds a pretrained model's training curves there."""
    source = getattr(getattr(embedder, "bundle", None), "source", None)
    return str(Path(source).resolve()) if source and source != "registry" and Path(source).is_dir() else None


def _bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm  # ~40 ms; imported on use, `audiorep --help` stays fast

    return tqdm(total=total, desc=desc, unit="split", disable=not enabled, leave=False)
