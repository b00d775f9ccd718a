"""grain input pipelines: audio on disk -> batches of fixed-length float32 waveforms (numpy dicts).

Where it sits: `data/sources/` readers (or a TFDS ArrayRecord build from `data/tfds/`) feed a source
here; the trainer, embedding export and probes consume the batches; frontends run later, on the
accelerator, inside the jitted step. Hosts only decode, resample, crop and batch.

    source = tfds_source("/data/esc50_tfds", "train")                  # or records_source(index, 16000)
    train = train_dataset(source, clip_samples=160_000, batch_size=32, seed=0, worker_count=2)
    it = iter(train); batch = next(it)      # {'audio': f32[32, 160000], 'mask': bool[32, 160000], ...}
    state = it.get_state(); ...; it.set_state(state)                   # exact replay

Train (`train_dataset`): shard -> seeded shuffle, a new permutation each epoch -> decode/resample ->
random crop (or zero-pad) to `clip_samples` -> batch, `drop_remainder`. The crop offset is drawn from a
numpy Generator seeded by (seed, epoch, record index), so a replay after a restore, a different worker
count, or a different sharding gives the same crop for the same record in the same epoch.

Eval (`eval_dataset`): shard -> decode/resample -> every clip cut into chunks of `chunk_samples` every
`hop_samples` (the last one zero-padded, `mask` False on padding) -> batches padded to `batch_size` with
rows whose `index` is -1. Rows carry `index` (the clip), `chunk` and `offset` so embedders can pool per clip.
Processes get different numbers of chunks; `num_batches=eval_steps(source, ...)` pads every process to the
same number of batches (computed from clip lengths in headers / the TFDS side file, no audio decoded).

Batches (numpy): 'audio' f32[B, n], 'mask' bool[B, n] (True on real samples), 'label' i32[B] (-1 when
unlabelled) or f32[B, C] multi-hot for multi-label sources, 'index' i64[B] (position of the clip in the
unsharded source). Eval adds 'chunk' i32[B] and 'offset' i64[B] (first sample of the chunk in the clip).

Sharding: by default each JAX process reads records `process_index::process_count` (train shards are cut
to equal sizes so every process runs the same number of steps); tests pass `shard=Shard(i, n)`.
Worker processes: `worker_count > 0` runs decoding, cropping and batching (train) or decoding and chunking
(eval) in grain `mp_prefetch` workers; batches and their order do not depend on the worker count.

Iterator state: `it.get_state()` / `it.set_state(state)` (JSON-able dicts); inside an orbax checkpoint put
`save_args(it)` / `restore_args(fresh_it)` into `ocp.args.Composite(...)` under `CHECKPOINT_ITEM`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import grain
import numpy as np
import soundfile as sf

from audiorep.audio.io import AudioError, check_sample_rate, load_audio, resample
from audiorep.errors import AudiorepError

CHECKPOINT_ITEM = "data"  # the Composite key under which the trainer stores the iterator state


class PipelineError(AudiorepError, ValueError):
    """A pipeline that cannot be built as asked; the message says what to change."""


# ------------------------------------------------------------------------------------------ sharding
@dataclasses.dataclass(frozen=True)
class Shard:
    """This process reads records `index::count` of the source."""

    index: int = 0
    count: int = 1

    def __post_init__(self):
        if not (isinstance(self.count, int) and self.count >= 1 and isinstance(self.index, int)
                and 0 <= self.index < self.count):
            raise PipelineError(f"Shard(index={self.index}, count={self.count}) needs 0 <= index < count.")

    @classmethod
    def from_jax(cls) -> Shard:
        """One shard per JAX process (jax.process_index() of jax.process_count())."""
        # JAX only when asked: grain's worker processes import this module and never need it
        import jax

        return cls(jax.process_index(), jax.process_count())


def _ensure_absl_flags() -> None:
    """grain's worker processes read absl flags; outside an absl app nobody has parsed them."""
    try:
        # optional: without absl there are no flags to parse
        from absl import flags
    except ImportError:
        return
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


# ------------------------------------------------------------------------------------------ sources
def _label_array(labels: Sequence[int], num_classes: int, multilabel: bool, where: str) -> np.ndarray:
    """Label indices -> i32 scalar (-1 when none) or f32[C] multi-hot."""
    labels = [int(i) for i in labels]
    if any(not 0 <= i < max(num_classes, 1) for i in labels):
        raise PipelineError(f"{where}: label {labels} outside the {num_classes} classes of the source.")
    if multilabel:
        hot = np.zeros(num_classes, np.float32)
        hot[labels] = 1.0
        return hot
    if len(labels) > 1:
        raise PipelineError(f"{where} has {len(labels)} labels in a single-label source; pass multilabel=True.")
    return np.asarray(labels[0] if labels else -1, np.int32)


class RecordSource:
    """Reader records as a random-access source; audio decoded from the original files with `load_audio`.

    Items are light ({'index', 'path', ...}); `decode(item)` reads and resamples in the worker.
    """

    def __init__(self, records: Sequence[Any], *, classes: Sequence[str], multilabel: bool, sample_rate: int):
        self.records = list(records)
        if not self.records:
            raise PipelineError("the source has no records; check the split/fold filter and the reader's output.")
        self.classes = tuple(classes)
        self.multilabel = bool(multilabel)
        self.sample_rate = check_sample_rate(sample_rate, "pipeline sample rate")

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        rec = self.records[i]
        return {"index": int(i), "path": rec.path, "start_s": float(rec.start_s), "end_s": rec.end_s,
                "labels": tuple(rec.labels)}

    def lengths(self) -> np.ndarray:
        """i64[N]: samples each record decodes to, from the file headers (no audio decoded)."""
        headers: dict[str, tuple[int, int]] = {}
        out = np.zeros(len(self.records), np.int64)
        for i, rec in enumerate(self.records):
            if rec.path not in headers:
                try:
                    info = sf.info(rec.path)
                except (sf.LibsndfileError, RuntimeError, OSError) as err:
                    raise AudioError(f"{rec.path}: cannot read the audio header ({err}); re-extract the file or "
                                     "drop the record (sources.check_audio(..., skip_unreadable=True)).") from err
                headers[rec.path] = (int(info.frames), int(info.samplerate))
            frames, rate = headers[rec.path]
            total = resampled_length(frames, rate, self.sample_rate)
            begin = int(round(rec.start_s * self.sample_rate))
            stop = total if rec.end_s is None else min(total, int(round(rec.end_s * self.sample_rate)))
            out[i] = max(stop - begin, 0)
        return out

    def decode(self, item: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """item -> (audio f32[n] at `sample_rate`, label i32[] or f32[C])."""
        audio, rate = load_audio(item["path"], self.sample_rate)
        begin = int(round(item["start_s"] * rate))
        stop = None if item["end_s"] is None else int(round(item["end_s"] * rate))
        audio = audio[begin:stop]
        if audio.size == 0:
            raise AudioError(f"{item['path']}: the segment {item['start_s']}-{item['end_s']} s is empty; "
                             "fix the segment times in the metadata.")
        return audio, _label_array(item["labels"], len(self.classes), self.multilabel, item["path"])


class TfdsSource:
    """One split of a dataset built by `audiorep datasets prepare` (ArrayRecord, int16 at the build rate).

    Pickles as (path, split, rate) and reopens the ArrayRecord files in each worker process.
    """

    def __init__(self, path: str | Path, split: str, *, sample_rate: int | None = None, name: str | None = None):
        # tensorflow_datasets (seconds to import) only when a TFDS build is read
        from audiorep.data.tfds.builder import find_prepared, open_prepared

        self.path = str(find_prepared(path, name))
        self.split = split
        info = open_prepared(self.path)
        self.classes = info.classes
        self.multilabel = info.multilabel
        self.stored_rate = info.sample_rate
        self.sample_rate = self.stored_rate if sample_rate is None else check_sample_rate(sample_rate)
        if split not in info.splits:
            raise PipelineError(f"{self.path} has no split {split!r}; it has {sorted(info.splits)}.")
        self._source = None
        self._len = info.splits[split]

    def _data(self):
        if self._source is None:
            # tensorflow_datasets: see __init__
            from audiorep.data.tfds.builder import data_source

            self._source = data_source(self.path, self.split)
        return self._source

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_source"} | {"_source": None}

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int) -> dict[str, Any]:
        ex = self._data()[int(i)]
        return {"index": int(i), "audio": ex["audio"], "label": ex["label"], "path": ex["path"]}

    def lengths(self) -> np.ndarray:
        """i64[N]: samples each example decodes to at `sample_rate`, from the build's side file (no audio read)."""
        # tensorflow_datasets: see __init__
        from audiorep.data.tfds.builder import clip_lengths

        stored = clip_lengths(self.path, self.split)
        if self.sample_rate == self.stored_rate:
            return stored
        return np.array([resampled_length(int(n), self.stored_rate, self.sample_rate) for n in stored], np.int64)

    def decode(self, item: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        # tensorflow_datasets: see __init__
        from audiorep.data.tfds.builder import from_pcm16

        audio = from_pcm16(item["audio"])
        if self.sample_rate != self.stored_rate:
            audio = resample(audio, self.stored_rate, self.sample_rate)
        if self.multilabel:
            label = np.asarray(item["label"], np.float32)
        else:
            label = np.asarray(item["label"], np.int32)
        return audio, label


def records_source(
    index_or_records,
    sample_rate: int,
    *,
    split: str | None = None,
    classes: Sequence[str] | None = None,
    multilabel: bool | None = None,
) -> RecordSource:
    """A source over a reader's `DatasetIndex` (optionally one split) or over a list of `Record`s.

    A plain list needs `classes` (and `multilabel` for multi-label records).
    """
    records = getattr(index_or_records, "records", index_or_records)
    if split is not None:
        records = [r for r in records if r.split == split]
    if classes is None:
        if not hasattr(index_or_records, "classes"):
            raise PipelineError("records_source(list_of_records, ...) needs classes=...; or pass the DatasetIndex.")
        classes = index_or_records.classes
    if multilabel is None:
        multilabel = bool(getattr(index_or_records, "multilabel", False))
    return RecordSource(records, classes=classes, multilabel=multilabel, sample_rate=sample_rate)


def balance_by_folder(records: Sequence, root: str | Path) -> list:
    """Repeat the records of the smaller top-level folders of `root` so every folder gives about as many clips
    per epoch as the largest (each copy gets its own random crop).

    For pretraining on a mix of corpora of different sizes (the demo: a synthetic corpus beside speech), where
    plain per-clip sampling would let the largest one dominate. Files directly in `root` form one group.
    Order: each folder's records (repeated) in the order given, folders sorted by name.
    """
    root = Path(root)
    groups: dict[str, list] = {}
    for r in records:
        try:
            rel = Path(r.path).relative_to(root)
        except ValueError:
            raise PipelineError(f"balance by folder: {r.path} is not under the data root {root}.") from None
        groups.setdefault(rel.parts[0] if len(rel.parts) > 1 else "", []).append(r)
    if not groups:
        return []
    largest = max(len(g) for g in groups.values())
    return [r for name in sorted(groups) for r in groups[name] * max(1, round(largest / len(groups[name])))]


def tfds_source(path: str | Path, split: str, *, sample_rate: int | None = None, name: str | None = None) -> TfdsSource:
    """A source over one split of a prepared TFDS dataset (its data dir, config dir or version dir).

    `sample_rate` None keeps the rate it was built at; another rate resamples on the fly.
    """
    return TfdsSource(path, split, sample_rate=sample_rate, name=name)


# ------------------------------------------------------------------------------------------ transforms
def crop_or_pad(audio: np.ndarray, length: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """f32[n] -> (f32[length], bool[length]): audio[offset:offset + length], zero-padded at the end."""
    out = np.zeros(length, np.float32)
    mask = np.zeros(length, np.bool_)
    piece = audio[offset:offset + length]
    out[:piece.size] = piece
    mask[:piece.size] = True
    return out, mask


def resampled_length(num_samples: int, orig_rate: int, target_rate: int) -> int:
    """Samples `audio.io.resample` (soxr) returns for `num_samples` input samples: n * target / orig,
    halves rounded up."""
    return (2 * int(num_samples) * int(target_rate) + int(orig_rate)) // (2 * int(orig_rate))


def num_chunks(num_samples: int, chunk_samples: int, hop_samples: int) -> int:
    """Chunks of `chunk_samples` every `hop_samples` that cover `num_samples` (at least one)."""
    return 1 + math.ceil(max(num_samples - chunk_samples, 0) / hop_samples)


def crop_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The Generator that draws record `index`'s crop in `epoch`; the same on every host and worker."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


class _TrainExample:
    """(stream position, raw item) -> one training example with a random crop."""

    def __init__(self, source, clip_samples: int, seed: int, epoch_len: int, random_crop: bool):
        self.source, self.clip_samples, self.seed = source, clip_samples, seed
        self.epoch_len, self.random_crop = epoch_len, random_crop

    def __call__(self, position: int, item: Mapping[str, Any]) -> dict[str, np.ndarray]:
        audio, label = self.source.decode(item)
        epoch = position // self.epoch_len
        spare = audio.size - self.clip_samples
        offset = int(crop_rng(self.seed, epoch, item["index"]).integers(0, spare + 1)) if spare > 0 and \
            self.random_crop else 0
        wave, mask = crop_or_pad(audio, self.clip_samples, offset)
        return {"audio": wave, "mask": mask, "label": label, "index": np.int64(item["index"])}


class _EvalChunks:
    """raw item -> all chunks of one clip: audio f32[k, n], mask bool[k, n], chunk/offset/index/label [k]."""

    def __init__(self, source, chunk_samples: int, hop_samples: int):
        self.source, self.chunk_samples, self.hop_samples = source, chunk_samples, hop_samples

    def __call__(self, item: Mapping[str, Any]) -> dict[str, np.ndarray]:
        audio, label = self.source.decode(item)
        k = num_chunks(audio.size, self.chunk_samples, self.hop_samples)
        offsets = np.arange(k, dtype=np.int64) * self.hop_samples
        positions = offsets[:, None] + np.arange(self.chunk_samples)  # i64[k, n] sample index of each cell
        padded = np.zeros(int(positions[-1, -1]) + 1, np.float32)
        padded[:audio.size] = audio[:padded.size]
        waves = padded[positions]
        masks = positions < audio.size
        return {"audio": waves, "mask": masks, "label": np.repeat(label[None], k, axis=0),
                "index": np.full(k, item["index"], np.int64), "chunk": np.arange(k, dtype=np.int32),
                "offset": offsets}


class _SplitChunks(grain.experimental.FlatMapTransform):
    """One clip's stacked chunks -> one element per chunk."""

    max_fan_out = 1 << 20

    def flat_map(self, element):
        return [{key: value[j] for key, value in element.items()} for j in range(element["index"].shape[0])]


class _PadBatch:
    """Stack rows; pad a short last batch to `batch_size` with zero rows whose index is -1."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size

    def __call__(self, rows: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
        out = {key: np.stack([r[key] for r in rows]) for key in rows[0]}
        missing = self.batch_size - len(rows)
        if missing > 0:
            for key, value in out.items():
                fill = -1 if key in ("index", "label") and value.ndim == 1 else 0
                pad = np.full((missing, *value.shape[1:]), fill, value.dtype)
                out[key] = np.concatenate([value, pad])
        return out


class _FixedBatches(grain.IterDataset):
    """Exactly `num_batches` batches: the parent's, then all-padding ones (index -1). Multi-host eval
    needs every process to run the same number of steps; a parent with more batches is an error."""

    def __init__(self, parent: grain.IterDataset, num_batches: int, empty: dict[str, np.ndarray]):
        super().__init__(parent)
        self.num_batches, self.empty = num_batches, empty

    def __iter__(self):
        return _FixedBatchesIterator(self._parent.__iter__(), self.num_batches, self.empty)


class _FixedBatchesIterator(grain.DatasetIterator):
    def __init__(self, parent, num_batches: int, empty: dict[str, np.ndarray]):
        super().__init__(parent)
        self.num_batches, self.empty, self.emitted = num_batches, empty, 0

    def __next__(self):
        if self.emitted >= self.num_batches:
            try:
                next(self._parent)
            except StopIteration:
                raise StopIteration from None
            raise PipelineError(f"the eval pipeline has more than num_batches={self.num_batches} batches; "
                                "compute it with eval_steps(source, ...) using the same chunking and batch size.")
        try:
            batch = next(self._parent)
        except StopIteration:
            batch = {key: value.copy() for key, value in self.empty.items()}
        self.emitted += 1
        return batch

    def get_state(self) -> dict[str, Any]:
        return {"parent": self._parent.get_state(), "emitted": self.emitted}

    def set_state(self, state: dict[str, Any]) -> None:
        self._parent.set_state(state["parent"])
        self.emitted = int(state["emitted"])


def _empty_eval_batch(source, batch_size: int, chunk_samples: int) -> dict[str, np.ndarray]:
    label = np.zeros((batch_size, len(source.classes)), np.float32) if source.multilabel \
        else np.full(batch_size, -1, np.int32)
    return {"audio": np.zeros((batch_size, chunk_samples), np.float32),
            "mask": np.zeros((batch_size, chunk_samples), np.bool_), "label": label,
            "index": np.full(batch_size, -1, np.int64), "chunk": np.zeros(batch_size, np.int32),
            "offset": np.zeros(batch_size, np.int64)}


class _EpochShuffle(grain.MapDataset):
    """A new permutation of the parent every epoch: `np.random.default_rng([seed, epoch]).permutation(n)`.

    Same contract as grain's `shuffle` (index `epoch * n + i` -> parent index `epoch * n + perm[i]`), but
    O(1) per element at any size: grain's index_shuffle costs ~0.2-3 ms per element below ~5k records.
    """

    def __init__(self, parent: grain.MapDataset, seed: int):
        super().__init__(parent)
        self._seed = int(seed)
        self._perms: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._parent)

    def __str__(self) -> str:
        return f"EpochShuffle(seed={self._seed})"

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_perms"} | {"_perms": {}}

    def _perm(self, epoch: int) -> np.ndarray:
        perm = self._perms.get(epoch)
        if perm is None:  # threads may both compute it: same result, no lock needed
            perm = np.random.default_rng([self._seed, epoch]).permutation(len(self._parent))
            self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1} | {epoch: perm}
        return perm

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        epoch, i = divmod(int(index), len(self._parent))
        return self._parent[epoch * len(self._parent) + int(self._perm(epoch)[i])]


@dataclasses.dataclass(frozen=True)
class LoadOptions:
    """How `train_dataset` and `eval_dataset` read (both take these fields as keyword arguments); the
    batches and their order do not depend on them.

    Attributes:
      worker_count: grain worker processes (0: threads in this process).
      read_threads: threads per process that read and build examples.
      prefetch: items buffered per process (train: batches; eval: clips).
    """

    worker_count: int = 0
    read_threads: int = 2
    prefetch: int = 2

    def __post_init__(self):
        _check_counts(1, prefetch=self.prefetch)
        _check_counts(0, worker_count=self.worker_count, read_threads=self.read_threads)

    def iterate(self, ds: grain.MapDataset) -> grain.IterDataset:
        """`ds` read in order by `read_threads` threads, in `worker_count` worker processes when > 0."""
        it = ds.to_iter_dataset(grain.ReadOptions(num_threads=self.read_threads, prefetch_buffer_size=self.prefetch))
        if self.worker_count > 0:
            _ensure_absl_flags()
            it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.worker_count,
                                                             per_worker_buffer_size=self.prefetch))
        return it


def _check_counts(minimum: int, **values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise PipelineError(f"{name} must be an integer >= {minimum}, got {value!r}.")


# ------------------------------------------------------------------------------------------ pipelines
def steps_per_epoch(source, batch_size: int, shard: Shard | None = None, drop_remainder: bool = True) -> int:
    """Batches one process gets per epoch from `train_dataset` (the same on every process)."""
    shard = Shard.from_jax() if shard is None else shard
    per_shard = len(source) // shard.count
    return per_shard // batch_size if drop_remainder else -(-per_shard // batch_size)


def train_dataset(
    source,
    *,
    clip_samples: int,
    batch_size: int,
    seed: int,
    num_epochs: int | None = None,
    shuffle: bool = True,
    random_crop: bool = True,
    shard: Shard | None = None,
    drop_remainder: bool = True,
    **load_options,
) -> grain.IterDataset:
    """Shuffled, randomly cropped training batches.

    Args:
      source: `records_source(...)` or `tfds_source(...)`.
      clip_samples: samples per example (e.g. 160_000 = 10 s at 16 kHz); shorter clips are zero-padded.
      batch_size: examples per batch on this process.
      seed: drives the per-epoch shuffle and the crops (0 <= seed < 2**32).
      num_epochs: None repeats forever.
      shuffle: False keeps source order (for debugging).
      random_crop: False always takes the first `clip_samples`.
      shard: this process's shard; default one shard per JAX process. Shards are cut to equal sizes
        (at most `shard.count - 1` records unused) so all processes step in lockstep.
      drop_remainder: drop a last partial batch (only matters with a finite `num_epochs`).
      **load_options: the `LoadOptions` (worker_count, read_threads, prefetch).

    Returns:
      A grain IterDataset of dicts: audio f32[B, clip_samples], mask bool[B, clip_samples],
      label i32[B] or f32[B, C], index i64[B]. `iter()` it; the iterator has get_state/set_state.
    """
    _check_counts(1, clip_samples=clip_samples, batch_size=batch_size)
    loading = LoadOptions(**load_options)
    if not 0 <= int(seed) < 2**32:
        raise PipelineError(f"seed must be in [0, 2**32), got {seed}.")
    shard = Shard.from_jax() if shard is None else shard
    per_shard = len(source) // shard.count
    if per_shard == 0:
        raise PipelineError(f"{len(source)} records cannot feed {shard.count} processes; use a larger split.")
    ds = grain.MapDataset.source(source)[shard.index:per_shard * shard.count:shard.count]
    if shuffle:
        ds = _EpochShuffle(ds, int(seed))
    ds = ds.repeat(num_epochs)
    ds = ds.map_with_index(_TrainExample(source, int(clip_samples), int(seed), per_shard, random_crop))
    ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)
    return loading.iterate(ds)


def eval_dataset(
    source,
    *,
    chunk_samples: int,
    batch_size: int,
    hop_samples: int | None = None,
    shard: Shard | None = None,
    num_batches: int | None = None,
    **load_options,
) -> grain.IterDataset:
    """One pass over every chunk of every clip, in source order.

    Args:
      source: `records_source(...)` or `tfds_source(...)`.
      chunk_samples: samples per chunk.
      batch_size: rows per batch; the last batch is padded with rows whose index is -1.
      hop_samples: start-to-start distance of chunks (default `chunk_samples`: no overlap).
      shard: this process's clips (`index::count`, none dropped); default one shard per JAX process.
      num_batches: yield exactly this many batches, the last ones all padding: pass `eval_steps(...)` so that
        every JAX process runs the same number of steps (needed when the model is sharded across hosts).
      **load_options: the `LoadOptions` (worker_count, read_threads, prefetch).

    Returns:
      A grain IterDataset of dicts: audio f32[B, chunk_samples], mask bool[B, chunk_samples],
      label i32[B] or f32[B, C], index i64[B], chunk i32[B], offset i64[B].
    """
    hop_samples = chunk_samples if hop_samples is None else hop_samples
    _check_counts(1, chunk_samples=chunk_samples, batch_size=batch_size, hop_samples=hop_samples)
    loading = LoadOptions(**load_options)
    shard = Shard.from_jax() if shard is None else shard
    ds = grain.MapDataset.source(source)[shard.index::shard.count]
    ds = ds.map(_EvalChunks(source, int(chunk_samples), int(hop_samples)))
    it = loading.iterate(ds)
    it = grain.experimental.FlatMapIterDataset(it, _SplitChunks())
    it = it.batch(int(batch_size), batch_fn=_PadBatch(int(batch_size)))
    if num_batches is not None:
        _check_counts(1, num_batches=num_batches)
        it = _FixedBatches(it, int(num_batches), _empty_eval_batch(source, int(batch_size), int(chunk_samples)))
    return it


def eval_steps(
    source,
    *,
    chunk_samples: int,
    batch_size: int,
    hop_samples: int | None = None,
    process_count: int | None = None,
) -> int:
    """The most eval batches any process gets (`eval_dataset(..., num_batches=eval_steps(...))`).

    Uses the clip lengths (file headers, or the TFDS build's side file), so no audio is decoded, and
    gives the same answer on every process without any communication.
    """
    hop_samples = chunk_samples if hop_samples is None else hop_samples
    _check_counts(1, chunk_samples=chunk_samples, batch_size=batch_size, hop_samples=hop_samples)
    if process_count is None:
        process_count = Shard.from_jax().count
    lengths = source.lengths()
    chunks = 1 + np.ceil(np.maximum(lengths - chunk_samples, 0) / hop_samples).astype(np.int64)
    per_process = [int(chunks[p::process_count].sum()) for p in range(process_count)]
    return max(-(-n // batch_size) for n in per_process)


# ------------------------------------------------------------------------------------------ checkpoints
class _StateSnapshot:
    """An iterator's state frozen at save time: an async orbax save writes it later, after the live
    iterator has moved on. grain's handler writes `get_state()` bytes as the per-process JSON file."""

    def __init__(self, iterator):
        state = iterator.get_state()
        self._state = state if isinstance(state, bytes) else json.dumps(state, indent=4).encode()

    def get_state(self) -> bytes:
        return self._state


def save_args(iterator):
    """Orbax args that save a pipeline iterator's state as of now (one JSON file per JAX process).

        mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(params),
                                                **{CHECKPOINT_ITEM: save_args(it)}))
    """
    return grain.checkpoint.CheckpointSave(_StateSnapshot(iterator))


def restore_args(iterator):
    """Orbax args that restore a saved state into `iterator` (a fresh iterator of the same pipeline)."""
    return grain.checkpoint.CheckpointRestore(iterator)
