"""Corruption x severity sweeps of a trained probe: how much of a task's score survives noisy, modified and
compressed audio ("Measuring the Robustness of Audio Deepfake Detectors": 16 corruptions in three families).

    report = sweep("fsdd", embedder, data_root, corruptions="noise", severities=(1, 3, 5))
    report.result.extra["robustness"]   # the table: metric per corruption x severity, the clean score, drops

For every split of the task the probe grid is trained on clean embeddings and selected on clean validation
exactly as `audiorep probe` trains it (tasks/runner.py: same splits, grid, seeds; probes.fit_probe), then the
selected head scores the split's test clips once per cell, with every test clip corrupted
(audio/corruptions.py) before embedding. A cell's value is the mean over splits, as a probe row's score.

Corrupted embeddings go through the embedding cache (downstream/cache.py) with the cell's
`corruptions.corruption_key` in the key, next to the clean ones: a rerun or another task over the same clips
reuses them, another model or another seed computes its own. Each clip's corruption seed is derived from the
sweep's seed and the clip's key (`clip_seed`), so a clip is corrupted the same way whichever split or shard it
falls in.

`train_augment` (a family or names): the probes are trained on the clean training clips plus one corrupted
copy of each, with a corruption and a severity drawn per clip (seeded) from the augmentation set x the
sweep's severities; validation stays clean; the cells are the held-out corruptions only (those not in the
set): the paper's targeted-augmentation experiment.

Resumable: each finished cell is written to a per-sweep state file (JSON, rewritten atomically after every
cell) whose name carries a fingerprint of everything the cells depend on (model and embedding spec, task,
records, seed, grid, folds, augmentation). A killed sweep rerun with the same arguments retrains the (cheap,
deterministic) probes and continues at the first missing cell; a finished one only re-reads its state.

The result row (one per sweep; `task` = '<task>@robustness' or '<task>@robustness+<augmentation>'): `mean` is
the metric averaged over every corrupted cell (per split in `folds`), `scores['clean']` the clean score, and
`extra['robustness']` the whole table, the heatmap's path and the state file's. One row, not one per cell: the
leaderboard's score table then gains one readable 'robustness' column per task, and its Robustness section
draws the full table and heatmap from that row.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiorep.audio import corruptions as C
from audiorep.downstream import metrics as M
from audiorep.downstream.cache import EmbeddingCache, records_hash, source_spec
from audiorep.downstream.leaderboard import Result
from audiorep.downstream.metrics import HIGHER_IS_BETTER
from audiorep.downstream.tasks.catalog import get_task
from audiorep.downstream.tasks.runner import model_dir, targets
from audiorep.downstream.tasks.songs import SongTaskSpec
from audiorep.downstream.tasks.spec import TaskSpec
from audiorep.downstream.tasks.splits import TaskError
from audiorep.paths import write_atomically

STATE_FORMAT = 1
CLIP_SEEDING = "clip-seed-v1"  # how per-clip seeds derive from the sweep seed (part of the cache key)
CONTEXT_CORRUPTIONS = ("background_noise", "babble")  # the corruptions that read the context (its hash is keyed)
BABBLE_POOL = 100  # clips of the task (spread over its sorted file list) that babble draws its talkers from


class RobustnessError(TaskError):
    """A sweep that cannot run as asked (bad severities, no held-out corruption, unusable state file)."""


def parse_severities(text: str | Sequence[int]) -> tuple[int, ...]:
    """'1-5' | '1,3,5' | '3' | a sequence -> sorted distinct severities, each in 1..5."""
    if not isinstance(text, str):
        values = [int(v) for v in text]
    else:
        values = []
        try:
            for part in (p.strip() for p in text.split(",") if p.strip()):
                lo, _, hi = part.partition("-")
                values += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
        except ValueError:
            values = []
    if not values or any(not 1 <= v <= 5 for v in values):
        raise RobustnessError(f"--severities {text!r}: give levels in 1..5 as a range (1-5) or a list (1,3,5).")
    return tuple(sorted(set(values)))


def clip_seed(seed: int, key: str) -> int:
    """The corruption seed of one clip: from the sweep's seed and the clip's record key (stable, 31 bits)."""
    return int(hashlib.sha256(f"{seed}\0{key}".encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


def transform_key(name: str, severity: int, seed: int, context: dict | None = None) -> str:
    """The cache key part of one corruption x severity: corruptions.corruption_key, the per-clip seeding and, for
    the corruptions that read it, a hash of the context (background folder, babble pool)."""
    key = f"{C.corruption_key(name, severity, seed)}|{CLIP_SEEDING}"
    return key + f"|context-{context_hash(context)}" if name in CONTEXT_CORRUPTIONS else key


def context_hash(context: dict | None) -> str:
    """A short hash of a corruption context (the background folder, the babble pool's paths)."""
    ctx = {k: [str(v) for v in val] if isinstance(val, (list, tuple)) else str(val)
           for k, val in sorted((context or {}).items())}
    return hashlib.sha256(json.dumps(ctx, sort_keys=True).encode()).hexdigest()[:12]


def corrupting(name: str, severity: int, seed: int, rate: int, context: dict | None = None) -> Callable:
    """A cache transform: clips (f32[n] at `rate`) and their records -> the clips corrupted, each seeded by
    `clip_seed(seed, record.key)`."""
    def transform(clips, records):
        return [C.corrupt(np.asarray(c, np.float32), rate, name, severity, seed=clip_seed(seed, r.key),
                          context=context) for c, r in zip(clips, records)]
    return transform


def augmenting(names: Sequence[str], severities: Sequence[int], seed: int, rate: int,
               context: dict | None = None) -> tuple[Callable, str]:
    """(transform, key) of the targeted augmentation: each clip corrupted by one (corruption, severity) drawn
    from names x severities with its own seed."""
    cells = [(n, s) for n in names for s in severities]

    def transform(clips, records):
        out = []
        for c, r in zip(clips, records):
            s = clip_seed(seed, r.key)
            name, severity = cells[s % len(cells)]
            out.append(C.corrupt(np.asarray(c, np.float32), rate, name, severity, seed=s, context=context))
        return out
    key = "augment:" + "+".join(transform_key(n, s, seed, context) for n, s in cells)
    return transform, key


def score_head(head: dict, x, y, *, num_classes: int, multilabel: bool, positive: int) -> dict[str, float]:
    """The metrics report of a trained head (probes.ProbeResult.head) on test embeddings f32[N, D] with labels
    y (i32[N] or {0,1}[N, C]): standardised with the head's training statistics, scored as fit_probe scores its
    test split."""
    from audiorep.downstream import probes as P  # JAX: imported on use, `audiorep --help` stays fast

    z = P.head_logits(head["params"], head["stats"], (np.asarray(x, np.float32) - head["mean"]) / head["std"])
    z = np.asarray(z, np.float64)
    if multilabel:
        return M.multilabel_scores(y, 1 / (1 + np.exp(-z)))
    e = np.exp(z - z.max(-1, keepdims=True))
    probs = e / e.sum(-1, keepdims=True)
    out = M.multiclass_scores(y, probs)
    if num_classes == 2 and len(np.unique(y)) == 2:
        out |= M.binary_scores(y, probs, positive=positive)
    return out


@dataclass
class SweepReport:
    """A sweep's result row and where its files are."""

    result: Result
    state: Path
    heatmap: Path | None
    computed: int  # cells computed by this call (the rest came from the state file)
    cell_seconds: float = 0.0  # wall time of those cells (corrupting, embedding, scoring), without the probes


def _slug(text: str, n: int = 60) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:n]


def read_state(path: Path, fingerprint: str) -> dict:
    """A sweep's state file ({'format', 'fingerprint', 'clean': per-split scores, 'cells': {'name@severity': ...}}),
    empty when there is none; RobustnessError when it is unreadable or another sweep's."""
    if not path.is_file():
        return {"format": STATE_FORMAT, "fingerprint": fingerprint, "cells": {}}
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise RobustnessError(f"{path}: unreadable sweep state ({err}); delete it to start the sweep over.") from None
    if state.get("fingerprint") != fingerprint or state.get("format") != STATE_FORMAT:
        raise RobustnessError(f"{path} belongs to another sweep; delete it to start this one over.")
    return state


def write_state(path: Path, state: dict) -> None:
    """Merge `state` into the file (cells another process of the same sweep stored meanwhile are kept; the
    file's clean scores win) under an exclusive lock, and write it atomically; `state` gets the merged cells."""
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            on_disk = read_state(path, state["fingerprint"])
            state["cells"] = on_disk["cells"] | state["cells"]
            if "clean" in on_disk:
                state["clean"] = on_disk["clean"]
            write_atomically(path, json.dumps(state, indent=1, sort_keys=True).encode())
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def sweep(task: str | TaskSpec, embedder, data_root: str | os.PathLike, cache: EmbeddingCache | None = None, *,
          corruptions: str | Sequence[str] = "all", severities: str | Sequence[int] = (1, 2, 3, 4, 5),
          train_augment: str | None = None, out_dir: str | os.PathLike = "robustness",
          heatmap: str | os.PathLike | None = None, grid="fast", seed: int = 0, max_folds: int | None = None,
          folds: int | None = None, model_name: str | None = None, progress: bool = True,
          log: Callable[[str], None] | None = None, reader_options: dict | None = None,
          allow_missing: bool = False, context: dict | None = None) -> SweepReport:
    """Train the task's probes on clean (or clean + augmented) embeddings and score them on every corruption x
    severity of the test clips.

    Args:
      embedder: an Embedder or anything the embedding cache takes (scene / sample_rate / name or cache_spec).
      corruptions: 'all' | a family ('noise', 'modification', 'compression') | 'a,b,c' | a list of names.
      severities: '1-5' | '1,3,5' | a sequence of levels in 1..5.
      train_augment: a family or names: train on clean + corrupted training clips, test the other corruptions.
      out_dir: where the sweep's state file and (by default) its heatmap go.
      heatmap: the heatmap PNG's path (default: out_dir/<task>-<model>-<fingerprint>.png; None-like '' = none).
      grid, seed, max_folds, folds, reader_options, allow_missing: as for tasks.run (`audiorep probe`).
      context: what some corruptions need ({'background_dir': ...}; see audio/corruptions.py).
    Returns:
      SweepReport: the result row (extra['robustness'] holds the table), the state file, the heatmap path.
    """
    from tqdm.auto import tqdm  # ~40 ms; imported on use with the probes (JAX), `audiorep --help` stays fast

    from audiorep.downstream import probes as P

    say = log or (lambda s: None)
    levels = parse_severities(severities)
    names = list(corruptions) if not isinstance(corruptions, str) else C.select(corruptions)
    for n in names:
        C.corruption(n)  # CorruptionError naming the known corruptions, before any work
    augment = C.select(train_augment) if train_augment else []
    context = dict(context or {})
    if not context.get("background_dir") and "background_noise" in names + augment:
        named = [p.strip() for p in ([corruptions] if isinstance(corruptions, str) else corruptions)]
        named += [p.strip() for p in (train_augment or "").split(",")]
        if "background_noise" in ",".join(named).split(","):
            raise RobustnessError("background_noise needs a folder of noise recordings: pass --background-dir (e.g. "
                                  "speech_commands/_background_noise_), or leave background_noise out.")
        names, augment = [n for n in names if n != "background_noise"], [n for n in augment if n != "background_noise"]
        say("background_noise left out: no --background-dir (a folder of noise recordings) given")
    held = [n for n in names if n not in augment]
    if not held:
        raise RobustnessError(f"every corruption asked for ({', '.join(names)}) is in --train-augment "
                              f"{train_augment}; test on others (widen --corruptions).")
    spec = get_task(task) if isinstance(task, str) else task
    if isinstance(spec, SongTaskSpec):
        raise RobustnessError(f"{spec.name} scores songs from chunk embeddings with song-level heads; the robustness "
                              "sweep takes clip tasks (classification or detection). Choose another --task.")
    cache = cache or EmbeddingCache()
    index = spec.read(data_root, **(reader_options or {}))
    spec.check_complete(index, allow_missing)
    for p in index.problems:
        say(f"{spec.name}: {p}")
    spec = spec.for_index(index)
    splits = spec.splits(index, seed, n_folds=folds)
    if max_folds is not None:
        splits = splits[:max_folds]
    used = sorted({r.key: r for sp in splits for part in sp.parts().values() for r in part}.values(),
                  key=lambda r: r.key)
    if "babble" in names + augment and not context.get("babble_pool"):  # other clips of the same set
        paths = sorted({r.path for r in used})
        context["babble_pool"] = paths[::max(1, len(paths) // BABBLE_POOL)][:BABBLE_POOL]
    tested = sorted({r.key: r for sp in splits for r in sp.test}.values(), key=lambda r: r.key)
    row, trow = {r.key: i for i, r in enumerate(used)}, {r.key: i for i, r in enumerate(tested)}
    n_cls, multilabel = len(index.classes), index.multilabel
    positive = 1 if spec.positive is None else spec.positive
    src = source_spec(embedder, spec.crop_s)
    rate = int(src["sample_rate"])
    name = model_name or getattr(embedder, "name", "model")
    grid_obj = P.make_grid(grid, seed) if isinstance(grid, str) else grid
    aug_tag = f"+{train_augment}" if augment else ""
    fingerprint = hashlib.sha256(json.dumps({
        "source": src, "task": spec.name, "metric": spec.metric, "records": records_hash(used),
        "splits": [[sp.name, records_hash(sp.test)] for sp in splits], "seed": seed, "grid": grid_obj.to_dict(),
        "augment": [augment, list(levels) if augment else []], "seeding": CLIP_SEEDING,
        "context": context_hash(context)},
        sort_keys=True, default=str).encode()).hexdigest()[:16]
    out = Path(out_dir).expanduser()
    stem = f"{_slug(spec.name)}{_slug(aug_tag)}-{_slug(name)}-{fingerprint}"
    state_path = out / f"{stem}.json"
    png = Path(heatmap).expanduser() if heatmap else (None if heatmap == "" else out / f"{stem}.png")
    state = read_state(state_path, fingerprint)
    out.mkdir(parents=True, exist_ok=True)
    cells = [(n, s) for n in held for s in levels]
    todo = [(n, s) for n, s in cells if f"{n}@{s}" not in state["cells"]]
    say(f"{spec.name}: {len(used):,} clips ({len(tested):,} tested), {len(splits)} split(s); {len(cells)} cells "
        f"({len(cells) - len(todo)} done in {state_path})")

    if todo or "clean" not in state:
        emb = np.asarray(cache.embed(embedder, used, crop_s=spec.crop_s, progress=progress,
                                     desc=f"embed {spec.name}"), np.float32)
        aug_emb = None
        if augment:
            fn, key = augmenting(augment, levels, seed, rate, context)
            aug_emb = np.asarray(cache.embed(embedder, used, crop_s=spec.crop_s, progress=progress,
                                             desc=f"embed {spec.name} augmented", transform=fn,
                                             transform_key=key), np.float32)
        heads, clean = [], []
        for sp in splits:
            tr = [row[r.key] for r in sp.train]
            x_train, y_train = emb[tr], targets(sp.train, n_cls, multilabel)
            if aug_emb is not None:
                x_train, y_train = np.concatenate([x_train, aug_emb[tr]]), np.concatenate([y_train, y_train])
            res = P.fit_probe(x_train, y_train, emb[[row[r.key] for r in sp.validation]],
                              targets(sp.validation, n_cls, multilabel), emb[[row[r.key] for r in sp.test]],
                              targets(sp.test, n_cls, multilabel), num_classes=n_cls, multilabel=multilabel,
                              grid=grid_obj, seed=seed, progress=progress, positive=positive)
            if spec.metric not in res.test:
                raise TaskError(f"{spec.name}: the probe report has no {spec.metric!r} (it has {sorted(res.test)}).")
            heads.append(res.head)
            clean.append(res.test[spec.metric])
            say(f"{spec.name} {sp.name}: clean {spec.metric} {res.test[spec.metric]:.4f} ({res.kind} {res.selected})")
        if "clean" in state and not np.allclose(state["clean"], clean, atol=1e-6):
            say(f"note: the retrained probes score {np.mean(clean):.4f} clean, the stored cells' probes "
                f"{np.mean(state['clean']):.4f}; the stored cells are kept")
        state.setdefault("clean", [float(v) for v in clean])
        write_state(state_path, state)
        bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc=f"robustness {spec.name}", unit="cell",
                   disable=not progress, leave=False)
        for n, s in todo:
            started = time.perf_counter()
            bar.set_postfix_str(f"{n} @ {s}")
            x = np.asarray(cache.embed(embedder, tested, crop_s=spec.crop_s, progress=progress,
                                       desc=f"embed {n}@{s}", transform=corrupting(n, s, seed, rate, context),
                                       transform_key=transform_key(n, s, seed, context)), np.float32)
            per = [score_head(h, x[[trow[r.key] for r in sp.test]], targets(sp.test, n_cls, multilabel),
                              num_classes=n_cls, multilabel=multilabel, positive=positive)
                   for h, sp in zip(heads, splits)]
            state["cells"][f"{n}@{s}"] = {"folds": [float(r[spec.metric]) for r in per],
                                          "scores": {k: float(np.mean([r[k] for r in per])) for k in per[0]},
                                          "seconds": round(time.perf_counter() - started, 3)}
            write_state(state_path, state)
            bar.update(1)
        bar.close()
    computed = len(todo)
    seconds = sum(state["cells"][f"{n}@{s}"].get("seconds", 0.0) for n, s in todo)
    result = _result(spec, name, embedder, src, data_root, splits, state, held, levels, augment, train_augment,
                     grid_obj, seed, max_folds, state_path)
    if png is not None:
        draw_heatmap(result.extra["robustness"], png, title=f"{name} · {result.task}")
        result.extra["robustness"]["heatmap_png"] = str(png.resolve())
    return SweepReport(result, state_path, png, computed, seconds)


def _result(spec, name, embedder, src, data_root, splits, state, held, levels, augment, train_augment, grid_obj,
            seed, max_folds, state_path) -> Result:
    hib = HIGHER_IS_BETTER.get(spec.metric, True)
    clean = float(np.mean(state["clean"]))
    table, per_fold = {}, []
    for n in held:
        values = {str(s): float(np.mean(state["cells"][f"{n}@{s}"]["folds"])) for s in levels}
        table[n] = {"family": C.corruption(n).family, "unit": C.corruption(n).unit,
                    "levels": [C.corruption(n).levels[s - 1] for s in levels], "values": values,
                    "drop": {s: drop(clean, v, hib) for s, v in values.items()}}
        per_fold += [state["cells"][f"{n}@{s}"]["folds"] for s in levels]
    folds = np.mean(np.asarray(per_fold, np.float64), axis=0)
    cells = [v for r in table.values() for v in r["values"].values()]
    return Result(
        model=name, task=f"{spec.name}@robustness" + (f"+{train_augment}" if augment else ""), metric=spec.metric,
        mean=float(np.mean(cells)), std=float(np.std(folds)) if len(folds) > 1 else 0.0,
        folds=[float(v) for v in folds], checkpoint=str(src.get("checkpoint", "")), higher_is_better=hib,
        scores={"clean": clean}, probe="mlp", grid=grid_obj.to_dict(), seed=seed,
        extra={"robustness": {"clean": clean, "clean_folds": state["clean"], "severities": list(levels),
                              "table": table, "train_augment": augment, "mean_drop": drop(clean, float(np.mean(cells)),
                                                                                        hib),
                              "state": str(state_path.resolve())},
               "splits": [sp.name for sp in splits], "data_root": str(data_root), "max_folds": max_folds,
               "model_dir": model_dir(embedder),
               "embedding": {k: v for k, v in src.items() if k in ("layer", "pooling", "sample_rate", "crop_s")}})


def drop(clean: float, value: float, higher_is_better: bool = True) -> float:
    """How much worse `value` is than `clean`: relative for higher-is-better metrics ((clean - value) / clean;
    0.25 = a quarter of the score lost), absolute for error rates such as EER (value - clean; a clean EER is
    often 0)."""
    if not higher_is_better:
        return value - clean
    return (clean - value) / clean if clean else float("nan")


def draw_heatmap(rob: dict, path: str | os.PathLike, *, title: str = "") -> None:
    """The sweep's table as a PNG: a row per corruption (grouped by family), the clean score then a column per
    severity, each cell coloured by its metric and printed; written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # matplotlib: `audiorep --help` stays fast
    from matplotlib.figure import Figure

    rows = sorted(rob["table"], key=lambda n: (rob["table"][n]["family"], n))
    sev = [str(s) for s in rob["severities"]]
    data = np.array([[rob["clean"]] + [rob["table"][n]["values"][s] for s in sev] for n in rows])
    fig = Figure(figsize=(1.2 + 0.9 * (len(sev) + 1), 0.8 + 0.32 * len(rows)), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(data, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(sev) + 1), ["clean"] + [f"sev {s}" for s in sev])
    ax.set_yticks(range(len(rows)), [f"{rob['table'][n]['family'][:5]} · {n}" for n in rows])
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            ax.text(j, i, f"{data[i, j]:.3f}", ha="center", va="center", fontsize=7,
                    color="white" if data[i, j] < np.nanmean(data) else "black")
    fig.colorbar(im, ax=ax)
    ax.set_title(title, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": "audiorep"})
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(out, buf.getvalue())
