"""On-disk embedding cache: a dataset's scene embeddings computed once per model, protocol and record list.

    cache = EmbeddingCache("~/.cache/audiorep/embeddings")
    emb = cache.embed(embedder, records)      # f32[len(records), D], memory-mapped, read-only

The cache key hashes everything the embeddings depend on: the model (name and checkpoint hash), its
frontend configuration, layer and pooling, the clip protocol (sample rate, crop, chunk window) and the
record list (path, window, file size, in order). Change any of them and a new key directory is used;
nothing stale is ever read. A key directory holds `meta.json` (the key's parts, human-readable), and
`embeddings.npy` once complete. While computing, embeddings are written in shards
(`shard_00000.npy`, ...), each atomically (temp + rename), so an interrupted run resumes at the first
missing shard; when all shards exist they are merged into `embeddings.npy` (atomically) and removed.
Arrays are read with `np.load(mmap_mode='r', allow_pickle=False)`. Computing holds an exclusive lock on the
key directory (`.lock`, fcntl.flock), so two processes asking for the same embeddings compute them once: the
second waits, then reads the finished file.

The embedding source is an `Embedder` (downstream/embed.py), anything with the same `scene(list of
clips)` / `sample_rate` / `name` attributes (the log-mel baseline in downstream/tasks/baseline.py), or a plain
function `f(list of f32[n] clips) -> f32[B, D]` with an explicit `spec`. Audio is decoded with
audiorep.audio.io.load_audio at the source's rate; records with start_s/end_s are cut to that window (the
windows of one file in a shard share one decode: a song's chunks).
Corrupted or augmented audio: `embed(..., transform=f, transform_key=k)` applies f(clips, records) -> clips
to the decoded clips before embedding and puts `k` (e.g. corruptions.corruption_key(name, severity, seed)) in
the key, so each corruption x severity has its own entry next to the clean one (downstream/robustness.py).
Used by downstream/tasks/ and downstream/robustness.py.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from audiorep.audio.io import load_audio
from audiorep.errors import AudiorepError
from audiorep.paths import write_atomically

CACHE_FORMAT = 1
DEFAULT_ROOT = Path(os.environ.get("AUDIOREP_CACHE", "~/.cache/audiorep")).expanduser() / "embeddings"


class CacheError(AudiorepError, ValueError):
    """A cache request that cannot be served (bad source, inconsistent shard, unusable directory)."""


def _sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def records_hash(records: Sequence) -> str:
    """sha256 of the ordered record list as far as it decides the audio: path, window and file size."""
    h = hashlib.sha256()
    for r in records:
        try:
            size = os.path.getsize(r.path)
        except OSError:
            size = -1
        h.update(f"{r.path}\t{r.start_s!r}\t{r.end_s!r}\t{size}\n".encode())
    return h.hexdigest()


def source_spec(source, crop_s: float | None = None) -> dict:
    """The key parts of an embedding source: model, checkpoint, frontend, layer, pooling, clip protocol.

    An object may supply its own with a `cache_spec()` method (must include 'model' and 'sample_rate').
    """
    if hasattr(source, "cache_spec"):
        spec = dict(source.cache_spec())
    elif hasattr(source, "bundle") and hasattr(source, "scene"):  # an Embedder
        b = source.bundle
        spec = {
            "model": source.name, "checkpoint": b.checkpoint_hash, "family": b.family,
            "frontend": source.frontend.to_dict(), "layer": source.layer, "pooling": source.pooling,
            "frequency": getattr(source, "frequency", "mean"),
            "sample_rate": source.sample_rate,
            "chunking": {"window_patches": getattr(source, "window_patches", None),
                         "bucket_patches": getattr(source, "bucket_patches", None),
                         "rule": getattr(source, "chunking_rule", None)},
        }
    else:
        raise CacheError(f"cannot derive a cache key from {type(source).__name__}; pass an Embedder, an object with "
                         "cache_spec(), or a function with spec={'model': ..., 'sample_rate': ...}.")
    missing = {"model", "sample_rate"} - set(spec)
    if missing:
        raise CacheError(f"embedding source spec lacks {sorted(missing)}: {spec}")
    spec["crop_s"] = crop_s
    return spec


def load_clip(record, sample_rate: int, crop_s: float | None = None) -> np.ndarray:
    """Decode one record at `sample_rate`, cut to its window and to at most `crop_s` seconds. -> f32[n]."""
    return cut_window(load_audio(record.path, sample_rate=sample_rate)[0], record, sample_rate, crop_s)


def load_clips(records: Sequence, sample_rate: int, crop_s: float | None = None, pool=None) -> list[np.ndarray]:
    """`load_clip` of every record, decoding each distinct file once: the windows of one long file (a song's
    chunks) share its decode and resampling. pool: an executor whose `map` decodes files in parallel."""
    paths = list(dict.fromkeys(r.path for r in records))
    decode = lambda path: load_audio(path, sample_rate=sample_rate)[0]
    waves = dict(zip(paths, (pool.map if pool is not None else map)(decode, paths)))
    return [cut_window(waves[r.path], r, sample_rate, crop_s) for r in records]


def cut_window(wave: np.ndarray, record, sample_rate: int, crop_s: float | None = None) -> np.ndarray:
    """A decoded file f32[n] cut to `record`'s [start_s, end_s) window and to at most `crop_s` seconds."""
    start = int(round(record.start_s * sample_rate))
    end = len(wave) if record.end_s is None else int(round(record.end_s * sample_rate))
    wave = wave[start:end]
    if crop_s is not None:
        wave = wave[: int(round(crop_s * sample_rate))]
    if wave.size == 0:
        raise CacheError(f"{record.path}: the window [{record.start_s}, {record.end_s}] s holds no audio; fix the "
                         "record's start_s/end_s.")
    return wave


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    write_atomically(path, lambda fh: np.save(fh, np.ascontiguousarray(array), allow_pickle=False))


def _write_json_atomic(path: Path, obj) -> None:
    text = json.dumps(obj, indent=1, sort_keys=True, default=str)
    write_atomically(path, lambda fh: fh.write(text.encode()))


class EmbeddingCache:
    """Scene embeddings of record lists, one directory per key under `root`."""

    def __init__(self, root: str | os.PathLike | None = None, shard_size: int = 256, workers: int = 2):
        self.root = Path(root).expanduser() if root is not None else DEFAULT_ROOT
        if shard_size < 1:
            raise CacheError(f"shard_size must be >= 1, got {shard_size}.")
        self.shard_size = int(shard_size)
        self.workers = max(1, int(workers))

    # ------------------------------------------------------------------------------------- keys
    def key(self, spec: dict, records: Sequence) -> tuple[str, dict]:
        """(key, meta): the key is a sha256 prefix of the spec and the record-list hash."""
        parts = {"format": CACHE_FORMAT, "spec": spec, "records": records_hash(records), "n": len(records)}
        return _sha(parts)[:24], parts

    def path_for(self, key: str) -> Path:
        return self.root / key

    # ------------------------------------------------------------------------------------- embed
    def embed(self, source, records: Sequence, *, spec: dict | None = None, crop_s: float | None = None,
              progress: bool = True, desc: str | None = None, transform: Callable | None = None,
              transform_key: str | None = None) -> np.ndarray:
        """Embeddings of `records` in order: f32[len(records), D], memory-mapped read-only.

        Args:
          source: an Embedder-like object (scene(list of clips) -> f32[B, D], sample_rate, name) or a function
            f(list of f32[n] clips) -> f32[B, D]; a function needs `spec` with at least 'model' and
            'sample_rate' (add 'checkpoint', 'layer', ... whatever changes its output).
          records: data.sources.Record list (path, start_s, end_s are used).
          crop_s: keep at most this many seconds of each clip (part of the key).
          transform: f(list of f32[n] clips, the shard's records) -> list of f32[m] clips, applied after decoding
            and cropping (a corruption); needs `transform_key`, a string naming it fully (part of the key).
        """
        if (transform is None) != (transform_key is None):
            raise CacheError("transform and transform_key go together: the key must name what the transform does.")
        if not records:
            raise CacheError("no records to embed; check the dataset reader's output.")
        if callable(source) and not hasattr(source, "scene"):
            if spec is None:
                raise CacheError("a plain embedding function needs spec={'model': ..., 'sample_rate': ...} so the "
                                 "cache knows when its output changes.")
            fn, full_spec = source, dict(spec) | {"crop_s": crop_s}
            if "sample_rate" not in full_spec or "model" not in full_spec:
                raise CacheError(f"spec lacks 'model' or 'sample_rate': {spec}")
        else:
            fn, full_spec = source.scene, source_spec(source, crop_s)
            if spec:
                full_spec |= spec
        if transform_key is not None:
            full_spec["transform"] = str(transform_key)
        rate = int(full_spec["sample_rate"])
        key, parts = self.key(full_spec, records)
        out_dir = self.path_for(key)
        final = out_dir / "embeddings.npy"
        if final.is_file():
            return np.load(final, mmap_mode="r", allow_pickle=False)
        out_dir.mkdir(parents=True, exist_ok=True)
        with _exclusive(out_dir / ".lock", progress):
            if final.is_file():  # another process finished it while this one waited
                return np.load(final, mmap_mode="r", allow_pickle=False)
            return self._compute(fn, full_spec, parts, key, out_dir, records, rate, crop_s, progress, desc,
                                 transform)

    def _compute(self, fn, full_spec, parts, key, out_dir, records, rate, crop_s, progress, desc,
                 transform=None) -> np.ndarray:
        meta_path = out_dir / "meta.json"
        if not meta_path.is_file():
            _write_json_atomic(meta_path, parts | {
                "key": key, "status": "computing", "shard_size": self.shard_size,
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "first_paths": [r.path for r in records[:3]]})
        shard_size = int(json.loads(meta_path.read_text()).get("shard_size", self.shard_size))
        n_shards = -(-len(records) // shard_size)
        todo = [i for i in range(n_shards) if not (out_dir / f"shard_{i:05d}.npy").is_file()]
        bar = _bar(len(records), desc or f"embed {full_spec['model']}", progress)
        bar.update(len(records) - sum(len(records[i * shard_size:(i + 1) * shard_size]) for i in todo))
        def load(shard, pool=None):
            clips = load_clips(shard, rate, crop_s, pool)
            return clips if transform is None else list(transform(clips, shard))

        with ThreadPoolExecutor(self.workers) as pool:
            pending = None
            for j, i in enumerate(todo):
                shard = records[i * shard_size:(i + 1) * shard_size]
                clips = list(pending.result()) if pending is not None else load(shard, pool)
                if j + 1 < len(todo):  # decode the next shard while this one is embedded
                    nxt = records[todo[j + 1] * shard_size:(todo[j + 1] + 1) * shard_size]
                    pending = pool.submit(load, nxt)
                emb = np.asarray(fn(clips), dtype=np.float32)
                if emb.ndim != 2 or emb.shape[0] != len(shard):
                    raise CacheError(f"the embedding function returned shape {emb.shape} for {len(shard)} clips; "
                                     "it must return f32[B, D].")
                if not np.all(np.isfinite(emb)):
                    bad = shard[int(np.argwhere(~np.isfinite(emb))[0][0])].path
                    raise CacheError(f"non-finite embedding (NaN/Inf) for {bad}; check the audio and the model.")
                _save_npy_atomic(out_dir / f"shard_{i:05d}.npy", emb)
                bar.update(len(shard))
        bar.close()
        return self._merge(out_dir, n_shards, len(records))

    def _merge(self, out_dir: Path, n_shards: int, n: int) -> np.ndarray:
        shards = [np.load(out_dir / f"shard_{i:05d}.npy", mmap_mode="r", allow_pickle=False) for i in range(n_shards)]
        dims = {s.shape[1] for s in shards}
        if len(dims) != 1 or sum(s.shape[0] for s in shards) != n:
            raise CacheError(f"{out_dir}: shards disagree (dims {sorted(dims)}, {sum(s.shape[0] for s in shards)} "
                             f"rows for {n} records). Delete the directory to recompute.")
        final = out_dir / "embeddings.npy"
        tmp = out_dir / f".embeddings.tmp{os.getpid()}.npy"
        try:
            arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dims.pop()))
            row = 0
            for s in shards:
                arr[row:row + s.shape[0]] = s
                row += s.shape[0]
            arr.flush()
            del arr
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()
        meta = json.loads((out_dir / "meta.json").read_text())
        meta |= {"status": "complete", "dim": int(np.load(final, mmap_mode="r").shape[1]),
                 "completed": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
        _write_json_atomic(out_dir / "meta.json", meta)
        for i in range(n_shards):
            (out_dir / f"shard_{i:05d}.npy").unlink(missing_ok=True)
        return np.load(final, mmap_mode="r", allow_pickle=False)

    # ------------------------------------------------------------------------------------- housekeeping
    def entries(self) -> list[dict]:
        """meta.json of every key directory (complete or not)."""
        out = []
        for d in sorted(self.root.glob("*/meta.json")) if self.root.is_dir() else []:
            try:
                out.append(json.loads(d.read_text()) | {"path": str(d.parent)})
            except (OSError, json.JSONDecodeError):
                continue
        return out

    def remove(self, key: str) -> None:
        shutil.rmtree(self.path_for(key), ignore_errors=True)


@contextlib.contextmanager
def _exclusive(path: Path, say: bool):
    """Hold an exclusive advisory lock on `path` (created if missing); waits for another holder, saying so."""
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if say:
                print(f"waiting for another process that is computing {path.parent} ...", flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _bar(total: int, desc: str, enabled: bool):
    return tqdm(total=total, desc=desc, unit="clip", disable=not enabled, leave=False)


EmbedFn = Callable[[list[np.ndarray]], np.ndarray]
