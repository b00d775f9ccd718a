"""Song-level tasks (SONICS): chunk each song, embed the chunks through the cache, train song heads over a song's
chunk embeddings (downstream/mil.py), and score real vs fake per duration of audio used.

    report = run_songs("sonics", audiorep.load("beats-tiny"), "/data/sonics", cache, chunking=Chunking(10, 10))
    report.results   # one leaderboard Result per duration: sonics_5s, sonics_10s, sonics_30s, sonics (whole song)

Chunking. A song of L seconds is cut into windows of `chunk_s` seconds every `hop_s` seconds (starts 0, hop,
2 hop, ... while the window fits), plus one window ending at the song's end when the last one stops short of it,
so every window has the full chunk length and the whole song is covered. `chunk_s` 0 embeds the audio used as one
window (the encoder's own long-audio chunking averages over it exactly, downstream/embed.py).

Durations. The score-vs-duration table uses the FIRST N seconds of each file (N = 5, 10, 30 by default, and the
whole song): the same rule for real and fake songs (no class-dependent offset such as the `skip_time` column that
only real songs have), deterministic (cacheable, reproducible), and what a listener or a platform hears first. A
duration of at most one chunk is one window [0, N); a longer one uses the song's chunk windows that end within the
first N seconds (with 10 s chunks every 10 s: 30 s = three chunks). A head is trained and tested per duration (as
SONICS trains its 5 s and 120 s models apart), so each row says how well N seconds of a song tell real from fake.

Caching. The chunk windows are windowed `Record`s (start_s / end_s), so the embedding cache keys them by path and
window: another chunk length or hop recomputes, a rerun reuses. The song's chunk windows (every duration longer
than a chunk draws on them) are one cache entry, each shorter duration's [0, N) windows another; the cache decodes
a song once for all its chunks in a shard (downstream/cache.py `load_clips`).

Protocol. The reader's official split (the SONICS `split` column: train / valid / test after the official filter,
duration >= 30 s and no real song without vocals; data/sources/sonics.py). It is the published benchmark split and
it has artists in both train and test by design (SONICS reports seen and unseen singers apart), so only files are
checked never to sit in two parts; the artist overlap is reported as a per-group metric (`artist`: seen / unseen).

Metrics (SONICS' own: sonics/utils/metrics.py): fake = the positive class; F1, sensitivity (recall of fake
songs), specificity (recall of real songs) at the head's argmax decision, ROC-AUC and EER of the fake-vs-real
score, accuracy. Per generator (the `algorithm` column: chirp-v2-xxl-alpha, chirp-v3, chirp-v3.5, udio-30s,
udio-120s) and per platform (`source`: Suno / Udio): the sensitivity on that generator's fake songs, and ROC-AUC /
EER of all real test songs against that generator's fakes; per fake type (full / half / mostly fake) the
sensitivity; per artist (seen in training or not) the specificity.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf

from audiorep.data.sources import DatasetError, DatasetIndex, Record
from audiorep.downstream import metrics as M
from audiorep.downstream.cache import EmbeddingCache, source_spec
from audiorep.downstream.leaderboard import Result
from audiorep.downstream.tasks.spec import TaskSpec, resolve_grid
from audiorep.downstream.tasks.splits import Split, TaskError, check_no_group_leakage, official_splits

SONICS_DURATIONS: tuple[float | None, ...] = (5.0, 10.0, 30.0, None)  # None = the whole song
REPORTED = ("f1", "sensitivity", "specificity", "roc_auc", "eer", "accuracy")
OFFICIAL_SPLIT = ("official SONICS split: train/valid/test column after duration >= 30 s, real songs without vocals "
                  "dropped")


@dataclass(frozen=True)
class Chunking:
    """How songs become chunk windows, and which durations (first N seconds; None = whole song) are scored.

    chunk_s: window length in seconds; 0 = the audio used as one window (up to the whole song).
    hop_s: seconds between window starts (default: chunk_s, no overlap); at most chunk_s.
    """

    chunk_s: float = 10.0
    hop_s: float | None = None
    durations: tuple[float | None, ...] = SONICS_DURATIONS

    def __post_init__(self):
        if not (math.isfinite(self.chunk_s) and self.chunk_s >= 0):
            raise TaskError(f"--chunk-seconds must be >= 0 (0 = one window over the audio used), got {self.chunk_s}.")
        hop = self.hop
        if self.chunk_s and not (0 < hop <= self.chunk_s):
            raise TaskError(f"--hop-seconds must be in (0, --chunk-seconds = {self.chunk_s:g}], got {hop:g}: a "
                            "larger hop would skip audio between chunks.")
        if not self.durations:
            raise TaskError("--durations is empty; pass e.g. 5,10,30,whole.")
        bad = [d for d in self.durations if d is not None and not (math.isfinite(d) and d > 0)]
        if bad or len(set(self.durations)) != len(self.durations):
            raise TaskError(f"--durations must be distinct positive seconds or 'whole', got {list(self.durations)}.")

    @property
    def hop(self) -> float:
        return self.chunk_s if self.hop_s is None else float(self.hop_s)

    def song_windows(self, seconds: float) -> list[tuple[float, float | None]]:
        """The chunk windows of a whole song of `seconds` s: [(start_s, end_s)]; end None = to the file's end."""
        if not self.chunk_s or seconds <= self.chunk_s:
            return [(0.0, None)]
        starts = np.arange(0.0, seconds - self.chunk_s + 1e-6, self.hop)
        wins = [(_ms(s), _ms(s + self.chunk_s)) for s in starts]
        if wins[-1][1] < seconds - 1e-3:  # the tail: one more full window ending at the song's end
            wins.append((_ms(seconds - self.chunk_s), None))
        return wins

    def windows(self, seconds: float, duration: float | None) -> list[tuple[float, float | None]]:
        """The windows of the first `duration` s (None: the whole song) of a song of `seconds` s."""
        if duration is None or duration >= seconds:
            return self.song_windows(seconds) if self.chunk_s else [(0.0, None)]
        if not self.chunk_s or duration <= self.chunk_s:
            return [(0.0, _ms(duration))]
        return [w for w in self.song_windows(seconds) if w[1] is not None and w[1] <= duration + 1e-6]

    def to_dict(self) -> dict:
        return {"chunk_s": self.chunk_s, "hop_s": self.hop, "durations": [duration_label(d) for d in self.durations],
                "window": "first N seconds of the file"}


def _ms(x: float) -> float:
    return round(float(x), 3)


def duration_label(duration: float | None) -> str:
    """'5s', '10s', '30s' or 'whole'."""
    return "whole" if duration is None else f"{duration:g}s"


def parse_durations(text: str) -> tuple[float | None, ...]:
    """'5,10,30,whole' -> (5.0, 10.0, 30.0, None); a TaskError names a bad entry."""
    out = []
    for part in (p.strip().lower() for p in str(text).split(",")):
        if part in ("whole", "all", "song"):
            out.append(None)
            continue
        try:
            out.append(float(part.removesuffix("s")))
        except ValueError:
            raise TaskError(f"--durations: {part!r} is not a number of seconds or 'whole' "
                            "(e.g. --durations 5,10,30,whole).") from None
    return tuple(out)


@dataclass(frozen=True)
class SongTaskSpec(TaskSpec):
    """A task whose items are long songs: chunked, embedded per chunk, scored by song-level heads.
    fake_class: the label of the positive (AI-generated) class; chunking: the default windows and durations."""

    fake_class: int = 1
    chunking: Chunking = field(default_factory=Chunking)

    def splits(self, index: DatasetIndex, seed: int = 0) -> list[Split]:
        """The official split; files (not artists, see the module docstring) never sit in two parts."""
        records = [r for r in index.records if r.labels]
        if not records:
            raise TaskError(f"{self.name}: no labelled songs in {index.root}; check the reader options.")
        splits = official_splits(records, self.protocol_options.get("val_fraction", 0.1), seed)
        check_no_group_leakage([Split(sp.name, *([dataclasses.replace(r, group=None) for r in part]
                                                  for part in (sp.train, sp.validation, sp.test))) for sp in splits])
        return splits


SONG_TASKS: tuple[SongTaskSpec, ...] = (
    SongTaskSpec("sonics", "SONICS real vs AI-generated (Suno/Udio) songs, official split; song-level heads (mean, "
                 "max, attention) over chunk embeddings; F1 (fake = positive) per duration used (5 s, 10 s, 30 s, "
                 "whole song)", "sonics", "official", "f1"),
)


# ------------------------------------------------------------------------------------------ songs -> chunks
def song_seconds(record: Record) -> float:
    """Length of a song's audio file in seconds, from its header (soundfile.info; no decoding)."""
    try:
        info = sf.info(record.path)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise DatasetError(f"{record.path}: cannot read the audio header ({err}). Re-download the song or convert "
                           "it (e.g. `ffmpeg -i IN OUT.wav`).") from err
    if info.frames <= 0 or info.samplerate <= 0:
        raise DatasetError(f"{record.path}: the file holds no audio ({info.frames} frames); re-download it.")
    return info.frames / info.samplerate


@dataclass
class ChunkTable:
    """Every chunk window of every song, and per duration each song's rows in `records`.

    records: windowed Records (start_s / end_s), in embedding order.
    rows: {duration: [[row, ...] per song, in song order]}.
    """

    records: list[Record]
    rows: dict[float | None, list[list[int]]]
    families: list[tuple[str, list[int]]]  # (name, rows) embedded as one cache entry each


def chunk_songs(songs: Sequence[Record], seconds: Sequence[float], chunking: Chunking) -> ChunkTable:
    """Chunk windows of `songs` (lengths `seconds`) for every duration of `chunking`.

    The song's chunk windows form one family (one cache entry); the [0, N) windows of a duration shorter than a
    chunk (or every duration when chunk_s is 0) form one family per duration.
    """
    records: list[Record] = []
    at: dict[tuple[str, float, float | None], int] = {}
    families: dict[str, list[int]] = {}
    rows: dict[float | None, list[list[int]]] = {d: [] for d in chunking.durations}

    def row(song: Record, window: tuple[float, float | None], family: str) -> int:
        key = (song.path, *window)
        if key not in at:
            at[key] = len(records)
            records.append(dataclasses.replace(song, start_s=window[0], end_s=window[1]))
            families.setdefault(family, []).append(at[key])
        return at[key]

    for song, length in zip(songs, seconds):
        base = set(chunking.song_windows(length)) if chunking.chunk_s else set()
        for d in chunking.durations:
            wins = chunking.windows(length, d)
            rows[d].append([row(song, w, "song" if w in base else f"first {duration_label(d)}") for w in wins])
    fam = [(name, idx) for name, idx in families.items()]
    return ChunkTable(records, rows, fam)


def embed_chunks(table: ChunkTable, embedder, cache: EmbeddingCache, *, progress: bool,
                 say: Callable[[str], None], task: str) -> np.ndarray:
    """f32[len(table.records), D]: each family through the cache (keyed by its windows), in table order."""
    out = None
    for name, idx in table.families:
        recs = [table.records[i] for i in idx]
        say(f"{task}: {len(recs):,} chunk windows ({name})")
        emb = np.asarray(cache.embed(embedder, recs, progress=progress, desc=f"embed {task} ({name})"), np.float32)
        if out is None:
            out = np.zeros((len(table.records), emb.shape[1]), np.float32)
        out[idx] = emb
    return out


# ------------------------------------------------------------------------------------------ scores
def song_scores(y, probs, fake: int = 1) -> dict[str, float]:
    """SONICS' report of a real/fake split: F1, sensitivity, specificity (argmax decision, fake = positive),
    ROC-AUC and EER of the fake-vs-real score, accuracy.  y i32[S], probs f32[S, 2]."""
    y = np.asarray(y)
    pred = np.asarray(probs).argmax(-1)
    score = probs[:, fake] - probs[:, 1 - fake]
    out = {"f1": M.f1(y, pred, "binary", fake), "sensitivity": M.sensitivity(y, pred, fake),
           "specificity": M.specificity(y, pred, fake), "roc_auc": M.roc_auc(y == fake, score),
           "accuracy": float(np.mean(pred == y))}
    out["eer"] = M.eer_from_labels(y, score, bonafide=fake)[0] if 0 < np.sum(y == fake) < len(y) else float("nan")
    return out


def generator_scores(y, probs, generators, fake: int = 1) -> dict[str, dict[str, float]]:
    """Per generator g: sensitivity on g's fake songs, ROC-AUC and EER of every real song against g's fakes.
    y i32[S], probs f32[S, 2], generators [S] (ignored on real songs) -> {g: {n, sensitivity, roc_auc, eer}}."""
    y, g = np.asarray(y), np.asarray(generators).astype(str)
    score = probs[:, fake] - probs[:, 1 - fake]
    pred = np.asarray(probs).argmax(-1)
    real = y != fake
    out = {}
    for gen in sorted(set(g[~real].tolist())):
        mine = ~real & (g == gen)
        sub = real | mine
        has_real = bool(real.any())
        out[gen] = {"n": int(mine.sum()), "sensitivity": float(np.mean(pred[mine] == fake)),
                    "roc_auc": M.roc_auc(mine[sub], score[sub]) if has_real else float("nan"),
                    "eer": M.eer(score[mine], score[real])[0] if has_real else float("nan")}
    return out


def group_columns(test: Sequence[Record], train: Sequence[Record], fake: int) -> dict[str, list[str]]:
    """The metadata each test song is grouped by: generator (algorithm), platform (source) and fake type for fake
    songs, artist seen/unseen in training for real songs ('' = not in that grouping)."""
    seen = {r.group for r in train if r.labels[0] != fake}
    cols: dict[str, list[str]] = {"generator": [], "platform": [], "fake_type": [], "artist": []}
    for r in test:
        info, is_fake = r.info, r.labels[0] == fake
        cols["generator"].append(info.get("algorithm", "") if is_fake else "")
        cols["platform"].append(info.get("source", "") if is_fake else "")
        cols["fake_type"].append(info.get("subtype", "") if is_fake else "")
        cols["artist"].append("" if is_fake else ("seen" if r.group in seen else "unseen"))
    return cols


# ------------------------------------------------------------------------------------------ the run
@dataclass
class SongReport:
    """What a song task reports: one Result per duration (order of chunking.durations) and the table rows
    (duration, pooling, selected, the REPORTED metrics, val_f1) the CLI prints."""

    results: list[Result]
    table: list[dict]
    chunking: Chunking

    @property
    def primary(self) -> Result:
        """The whole-song row when scored, else the longest duration's."""
        by = dict(zip(self.chunking.durations, self.results))
        return by[None] if None in by else by[max(by)]


def run_songs(task: str | SongTaskSpec, embedder, data_root: str | os.PathLike, cache: EmbeddingCache | None = None,
              *, chunking: Chunking | None = None, grid="fast", seed: int = 0, repeats: int = 1,
              model_name: str | None = None, progress: bool = True, log: Callable[[str], None] | None = None,
              reader_options: dict | None = None, allow_missing: bool = False) -> SongReport:
    """Chunk, embed (through the cache), train song heads per duration, score the test split.

    Args:
      embedder: an Embedder, LogMelBaseline, or anything with scene(clips) / sample_rate / name.
      chunking: windows and durations (default: the task's, 10 s chunks, hop 10 s, 5/10/30 s and whole song).
      grid: 'fast' | 'full' | 'linear' (mil.make_head_grid; every configuration with mean, max and attention
        pooling) or a mil.HeadGrid.
      repeats: train every configuration this many times with other seeds; selection and scores average them.
    Returns:
      a SongReport: Result rows named `<task>_<N>s` per duration and `<task>` for the whole song.
    """
    from audiorep.downstream import mil  # JAX/optax: imported on use, `audiorep --help` stays fast
    from audiorep.downstream.tasks.catalog import get_task  # the catalog imports this module
    from audiorep.downstream.tasks.runner import model_dir  # the runner imports this module

    spec = get_task(task) if isinstance(task, str) else task
    if not isinstance(spec, SongTaskSpec):
        raise TaskError(f"{spec.name} is not a song task; song tasks are "
                        f"{', '.join(t.name for t in SONG_TASKS)}.")
    chunking = chunking or spec.chunking
    say = log or (lambda s: None)
    cache = cache or EmbeddingCache()
    index = spec.read(data_root, **(reader_options or {}))
    spec.check_complete(index, allow_missing)
    for p in index.problems:
        say(f"{spec.name}: {p}")
    (split,) = spec.splits(index, seed)
    parts = split.parts()
    songs = [r for part in parts.values() for r in part]
    say(f"{spec.name}: {len(songs):,} songs (train/val/test {len(split.train)}/{len(split.validation)}/"
        f"{len(split.test)}), chunks of {chunking.chunk_s:g} s every {chunking.hop:g} s"
        if chunking.chunk_s else f"{spec.name}: {len(songs):,} songs, one window per duration")
    table = chunk_songs(songs, [song_seconds(r) for r in songs], chunking)
    emb = embed_chunks(table, embedder, cache, progress=progress, say=say, task=spec.name)
    grid_obj = resolve_grid(grid, mil.make_head_grid, seed, repeats, "mil.HeadGrid")
    fake = spec.fake_class
    bounds = np.cumsum([0] + [len(p) for p in parts.values()])
    labels = {name: np.array([r.labels[0] for r in part], np.int32) for name, part in parts.items()}
    groups = group_columns(split.test, split.train, fake)
    src = source_spec(embedder)
    results, rows_out = [], []
    for d in chunking.durations:
        # this duration's chunks only, as rows of their own table; standardised with the training chunks' statistics
        used = sorted({c for rows in table.rows[d] for c in rows})
        at = {c: i for i, c in enumerate(used)}
        per_song = [[at[c] for c in rows] for rows in table.rows[d]]
        song_rows = {name: per_song[bounds[i]:bounds[i + 1]] for i, name in enumerate(parts)}
        x = emb[used]
        train_rows = sorted({c for rows in song_rows["train"] for c in rows})
        mean, std = x[train_rows].mean(0), x[train_rows].std(0)
        x = mil.device_table((x - mean) / np.where(std < 1e-6, 1.0, std))  # on the device once for every head
        slots = 1 << max(0, (max(len(r) for r in per_song) - 1).bit_length())
        bags = {name: mil.Bags.from_lists(song_rows[name], labels[name], slots) for name in parts}
        run = mil.train_heads(x, bags["train"], bags["validation"], grid_obj, positive=fake, progress=progress)
        n = grid_obj.configs
        val = run.val_scores.reshape(grid_obj.repeats, n).mean(0)
        pooled = {}
        for pooling in dict.fromkeys(p.pooling for p in grid_obj.points[:n]):
            cands = [i for i in range(n) if grid_obj.points[i].pooling == pooling]
            best = max(cands, key=lambda i: (val[i], -i))  # first on ties
            probs = np.mean([mil.predict_heads(run, r * n + best, x, bags["test"]) for r in range(grid_obj.repeats)],
                            axis=0)
            point = grid_obj.points[best]
            pooled[pooling] = {"index": best, "val_f1": float(val[best]), "probs": probs,
                               "scores": song_scores(labels["test"], probs, fake),
                               "selected": {"pooling": pooling, "hidden_layers": point.hidden_layers,
                                            "lr": point.lr, "best_epoch": int(run.best_epochs[best])}}
        chosen = max(pooled, key=lambda p: (pooled[p]["val_f1"], -pooled[p]["index"]))
        sel = pooled[chosen]
        label = duration_label(d)
        for pooling, entry in pooled.items():
            rows_out.append({"duration": label, "pooling": pooling, "selected": pooling == chosen,
                             "val_f1": entry["val_f1"], **entry["scores"]})
        per_generator = generator_scores(labels["test"], sel["probs"], groups["generator"], fake)
        per_group = {col: M.per_group(labels["test"], sel["probs"], vals,
                                      "specificity" if col == "artist" else "sensitivity", positive=fake)
                     for col, vals in groups.items() if len(set(vals) - {""}) >= 2}  # as tasks/groups.py
        f1 = sel["scores"]["f1"]
        repeat_f1 = [song_scores(labels["test"], mil.predict_heads(run, r * n + sel["index"], x, bags["test"]),
                                 fake)["f1"] for r in range(grid_obj.repeats)] if grid_obj.repeats > 1 else [f1]
        results.append(Result(
            model=model_name or getattr(embedder, "name", "model"),
            task=spec.name if d is None else f"{spec.name}_{label}", metric="f1", mean=float(f1),
            std=float(np.std(repeat_f1)) if len(repeat_f1) > 1 else 0.0, folds=[float(f1)],
            checkpoint=str(src.get("checkpoint", "")), higher_is_better=True,
            scores={k: float(v) for k, v in sel["scores"].items() if math.isfinite(v)},
            probe="song-head", grid=grid_obj.to_dict(), seed=seed,
            extra={"splits": [split.name], "sizes": [{k: len(v) for k, v in parts.items()}],
                   "selected": [sel["selected"]], "val_scores": [sel["val_f1"]], "classes": len(index.classes),
                   "multilabel": False, "data_root": str(data_root), "files": index.file_counts(),
                   "model_dir": model_dir(embedder), "embedding_dim": int(emb.shape[1]),
                   "embedding": {k: v for k, v in src.items() if k in ("layer", "pooling", "sample_rate")},
                   "songs": chunking.to_dict() | {"duration": label, "split": OFFICIAL_SPLIT, "chunks_per_song": {
                       name: float(np.mean([len(r) for r in song_rows[name]])) for name in parts}},
                   "poolings": {p: {"val_f1": e["val_f1"], **{k: float(v) for k, v in e["scores"].items()},
                                    "selected": e["selected"]} for p, e in pooled.items()},
                   "per_generator": per_generator, "groups": per_group,
                   "repeat_f1": repeat_f1 if grid_obj.repeats > 1 else None},
        ))
        say(f"{spec.name} {label}: f1 {f1:.4f} ({chosen} pooling; val f1 {sel['val_f1']:.4f})")
    return SongReport(results, rows_out, chunking)

