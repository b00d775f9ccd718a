"""TFDS builders: a dataset on local disk (a reader's root) -> an ArrayRecord TFDS dataset of int16 waveforms.

One generic `AudioBuilder` does the work; a thin subclass per reader of `audiorep.data.sources`
(`BUILDERS`, made from the reader table) gives each dataset its TFDS name (`audiorep_<reader>`) and, as
its manual-download instructions, the layout the reader expects. The builder config fixes the reader, its
options and the sample rate, so every variant (16 kHz vs 32 kHz, Speech Commands 12 vs 35 classes) lives
in its own directory:

    <data_dir>/audiorep_<reader>/<config>/1.0.0/   (dataset_info.json, features.json, *.array_record-*)

Waveforms are stored as `Tensor(shape=(None,), dtype=int16)` at the config's rate (`tfds.features.Audio`
imports TensorFlow; this module must not). Everything the pipeline and probes need travels with each
example: label (int, -1 when unlabelled; multi-hot bool[C] for multi-label datasets), label names, split,
fold (-1 when none), group ('' when none), the original path and segment bounds. The sample rate, class
list, reader and options are in the dataset metadata (`metadata.json`).

TFDS writes into `incomplete.XXXXXX_1.0.0/` and renames it to `1.0.0/` only after every split is
written, so an interrupted build never reads as a dataset. Read back with `open_prepared(out_dir)` (or
`tfds.data_source('audiorep_folder/<config>', data_dir=out_dir)` once this module is imported).

Used by `audiorep datasets prepare` and by `audiorep.data.pipeline.tfds_source`.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import inspect
import json
import multiprocessing as mp
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from tqdm.auto import tqdm

from audiorep.audio.io import AudioError, check_sample_rate, load_audio
from audiorep.data.sources import READERS, Reader, read_dataset
from audiorep.errors import AudiorepError
from audiorep.paths import nearest_existing

DATASET_VERSION = "1.0.0"
PCM16_SCALE = 32768.0  # soundfile's convention: int16 sample / 32768 -> float in [-1, 1)
STAGING_PREFIX = ".staging-"  # hidden data dir where a rebuild (--overwrite) is written before it replaces the old
UNSPLIT = "train"  # TFDS split that holds records whose reader gives no split (ESC-50 folds, plain folders)


class PrepareError(AudiorepError, ValueError):
    """A dataset that cannot be built or opened; the message says what to do."""


# ------------------------------------------------------------------------------------------ int16 codec
def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """f32[n] in [-1, 1] -> i16[n] (round to nearest, clip). Error after `from_pcm16` <= 1/32768."""
    scaled = np.round(np.asarray(samples, np.float32) * PCM16_SCALE)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def from_pcm16(samples: np.ndarray) -> np.ndarray:
    """i16[n] -> f32[n] in [-1, 1); identical to what soundfile returns for a 16-bit PCM file."""
    return np.asarray(samples).astype(np.float32) / np.float32(PCM16_SCALE)


def lengths_file(split: str) -> str:
    """Name of the side file holding a split's clip lengths (i64[N], samples at the build rate)."""
    return f"num_samples-{split}.npy"


# ------------------------------------------------------------------------------------------ config
@dataclasses.dataclass
class AudioBuilderConfig(tfds.core.BuilderConfig):
    """Which reader, with which options, at which rate; plus the class list read from the root.

    `classes` and `multilabel` come from the reader's `DatasetIndex` (see `make_config`): TFDS fixes the
    feature spec before it sees the manual dir, so the class list must be known up front.
    """

    reader: str = "folder"
    sample_rate: int = 16_000
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    classes: tuple[str, ...] = ()
    multilabel: bool = False
    skip_unreadable: bool = False
    num_workers: int = 1


def config_name(sample_rate: int, options: Mapping[str, Any] | None = None) -> str:
    """'16k' for the defaults, '16k-task_12' with reader options: one directory per variant."""
    rate = int(sample_rate)
    name = f"{rate // 1000}k" if rate % 1000 == 0 else f"{rate}hz"
    for key in sorted(options or {}):
        value = options[key]
        slug = re.sub(r"[^A-Za-z0-9.]+", "_", f"{key}_{value}").strip("_")
        name += f"-{slug}"
    return name


def make_config(
    index,
    *,
    reader: str,
    sample_rate: int = 16_000,
    options: Mapping[str, Any] | None = None,
    skip_unreadable: bool = False,
    num_workers: int = 1,
) -> AudioBuilderConfig:
    """A builder config for a reader's `DatasetIndex` (classes and multi-label flag taken from it)."""
    rate = check_sample_rate(sample_rate, "--sample-rate")
    options = dict(options or {})
    try:
        json.dumps(options)
    except TypeError as err:
        raise PrepareError(f"reader options must be JSON values (str, int, float, bool), got {options!r}.") from err
    return AudioBuilderConfig(
        name=config_name(rate, options),
        version=DATASET_VERSION,
        description=f"{reader} read by audiorep.data.sources at {rate} Hz, options {options or 'default'}",
        reader=reader,
        sample_rate=rate,
        options=options,
        classes=tuple(index.classes),
        multilabel=bool(index.multilabel),
        skip_unreadable=skip_unreadable,
        num_workers=max(1, int(num_workers)),
    )


# ------------------------------------------------------------------------------------------ decoding
def _encode_clip(path: str, start_s: float, end_s: float | None, sample_rate: int) -> np.ndarray | str:
    """Read one record's audio as int16 at `sample_rate`; an AudioError comes back as its message."""
    try:
        audio, _ = load_audio(path, sample_rate)
        begin = int(round(start_s * sample_rate))
        stop = None if end_s is None else int(round(end_s * sample_rate))
        clip = audio[begin:stop]
        if clip.size == 0:
            raise AudioError(
                f"{path}: segment {start_s}-{end_s} s is empty (the file has {audio.size / sample_rate:.2f} s). "
                "Check the segment times in the metadata, or skip it with --skip-unreadable."
            )
        return to_pcm16(clip)
    except AudioError as err:
        return str(err)


def _encode_many(records: Sequence, sample_rate: int, num_workers: int) -> Iterator[np.ndarray | str]:
    """Decode records in order, in `num_workers` processes when > 1 (spawned: safe beside JAX threads)."""
    args = [(r.path, float(r.start_s), r.end_s, sample_rate) for r in records]
    if num_workers <= 1 or len(args) < 2:
        for a in args:
            yield _encode_clip(*a)
        return
    window = 32 * num_workers  # bounded look-ahead: decoded clips never pile up in memory
    with cf.ProcessPoolExecutor(num_workers, mp_context=mp.get_context("spawn")) as pool:
        for start in range(0, len(args), window):
            yield from pool.map(_encode_clip, *zip(*args[start:start + window]), chunksize=4)


# ------------------------------------------------------------------------------------------ builders
class AudioBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Generic builder: any `audiorep.data.sources` reader -> ArrayRecord of int16 waveforms.

    Construct with `config=make_config(index, reader=...)`; pass `index=` to reuse an index already read
    (otherwise `_split_generators` reads it from the manual dir with the config's reader and options).
    """

    VERSION = tfds.core.Version(DATASET_VERSION)
    RELEASE_NOTES = {DATASET_VERSION: "int16 waveforms, labels, split/fold/group, path and segment bounds."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Pass the dataset root (the folder the reader expects) as the manual dir."
    READER = "folder"

    def __init__(self, *, index=None, **kwargs):
        self._index = index
        super().__init__(**kwargs)

    # TFDS's own lookup imports `importlib_resources` (not a dependency of tfds on Python >= 3.9) for
    # packages installed in editable mode; the source file of the class is all it needs.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return epath.Path(inspect.getfile(cls))

    # TFDS needs a config to know the feature spec; a bare class has none.
    def _cfg(self) -> AudioBuilderConfig:
        cfg = self.builder_config
        if not isinstance(cfg, AudioBuilderConfig):
            raise PrepareError(
                f"{self.name} is built from a config made by audiorep.data.tfds.make_config(index, reader=...); "
                "to read a prepared dataset use audiorep.data.tfds.open_prepared(out_dir)."
            )
        return cfg

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self._cfg()
        if cfg.multilabel:
            label = tfds.features.Tensor(shape=(len(cfg.classes),), dtype=np.bool_,
                                         encoding=tfds.features.Encoding.BYTES)
        elif cfg.classes:
            label = tfds.features.ClassLabel(names=list(cfg.classes))
        else:  # unlabelled audio (a plain folder): every label is -1
            label = tfds.features.Tensor(shape=(), dtype=np.int64)
        features = tfds.features.FeaturesDict({
            # raw bytes: without `encoding`, TFDS widens int16 to an int64 varint list (4x slower to read)
            "audio": tfds.features.Tensor(shape=(None,), dtype=np.int16, encoding=tfds.features.Encoding.BYTES),
            "label": label,
            "label_names": tfds.features.Sequence(tfds.features.Text()),
            "split": tfds.features.Text(),
            "fold": np.int32,
            "group": tfds.features.Text(),
            "path": tfds.features.Text(),
            "start_s": np.float32,
            "end_s": np.float32,
            "extra": tfds.features.Text(),  # JSON object of the reader's dataset-specific fields
        })
        metadata = tfds.core.MetadataDict(
            sample_rate=cfg.sample_rate,
            reader=cfg.reader,
            options=dict(cfg.options),
            classes=list(cfg.classes),
            multilabel=cfg.multilabel,
            skipped=[],
        )
        return tfds.core.DatasetInfo(
            builder=self,
            description=cfg.description,
            features=features,
            metadata=metadata,
            disable_shuffling=True,  # stored order = reader order; pipelines shuffle per epoch themselves
        )

    def _read_index(self, root: Path):
        cfg = self._cfg()
        index = self._index if self._index is not None else read_dataset(cfg.reader, root, **cfg.options)
        if tuple(index.classes) != tuple(cfg.classes) or bool(index.multilabel) != cfg.multilabel:
            raise PrepareError(
                f"the class list under {root} ({len(index.classes)} classes) differs from the one this config was "
                f"made with ({len(cfg.classes)}); make the config from the same root: make_config(index, ...)."
            )
        return index

    def _split_generators(self, dl_manager):
        if dl_manager.manual_dir is None or not Path(dl_manager.manual_dir).exists():
            raise PrepareError(
                f"{self.name}: manual dir {dl_manager.manual_dir} does not exist; pass the dataset root "
                "(audiorep datasets prepare NAME --root PATH)."
            )
        index = self._read_index(Path(dl_manager.manual_dir))
        by_split: dict[str, list[tuple[int, Any]]] = {}
        for i, rec in enumerate(index.records):
            by_split.setdefault(rec.split or UNSPLIT, []).append((i, rec))
        if not by_split:
            raise PrepareError(
                f"the {self._cfg().reader} reader found no records under {dl_manager.manual_dir}; "
                "check --root and the reader options (`audiorep datasets inspect` lists what it finds)."
            )
        return {split: self._generate_examples(items, split) for split, items in sorted(by_split.items())}

    def _generate_examples(self, items: list[tuple[int, Any]], split: str):
        cfg = self._cfg()
        records = [rec for _, rec in items]
        encoded = _encode_many(records, cfg.sample_rate, cfg.num_workers)
        bar = tqdm(total=len(items), desc=f"{self.name} {split}: decoding to {cfg.sample_rate} Hz", unit="clip")
        lengths = []
        with bar:
            for (key, rec), audio in zip(items, encoded):
                bar.update(1)
                if isinstance(audio, str):
                    if not cfg.skip_unreadable:
                        raise AudioError(f"{audio}\n  (building {self.name}; pass --skip-unreadable to list and skip)")
                    self.info.metadata["skipped"].append(audio)
                    continue
                lengths.append(audio.size)
                yield key, self._example(rec, audio)
        # Clip lengths in stored order, so eval pipelines can count chunks without reading any audio. Written
        # into the build's incomplete.* directory (TFDS points data_dir there while generating): atomic too.
        np.save(Path(self.data_dir) / lengths_file(split), np.asarray(lengths, np.int64), allow_pickle=False)

    def _example(self, rec, audio: np.ndarray) -> dict[str, Any]:
        cfg = self._cfg()
        labels = [int(i) for i in rec.labels]
        for i in labels:
            if not 0 <= i < len(cfg.classes):
                raise PrepareError(
                    f"{rec.path}: label index {i} is outside the {len(cfg.classes)} classes of the reader's index."
                )
        if cfg.multilabel:
            label = np.zeros(len(cfg.classes), np.bool_)
            label[labels] = True
        else:
            if len(labels) > 1:
                raise PrepareError(
                    f"{rec.path} has {len(labels)} labels but the index is single-label; "
                    "the reader should mark the dataset multilabel."
                )
            label = labels[0] if labels else -1
        return {
            "audio": audio,
            "label": label,
            "label_names": list(rec.label_names),
            "split": rec.split or "",
            "fold": -1 if rec.fold is None else int(rec.fold),
            "group": rec.group or "",
            "path": str(rec.path),
            "start_s": float(rec.start_s),
            "end_s": -1.0 if rec.end_s is None else float(rec.end_s),
            "extra": json.dumps(dict(getattr(rec, "extra", ()))),
        }


def _builder_for(reader: Reader) -> type[AudioBuilder]:
    """The TFDS builder of one `audiorep.data.sources` reader: named `audiorep_<reader>`, and asking for the
    dataset root in the layout that reader expects (its manual-download instructions)."""
    return type(
        "Audiorep" + "".join(part.capitalize() for part in reader.name.split("_")),
        (AudioBuilder,),
        {
            "__module__": __name__,
            "__doc__": f"The {reader.name!r} reader's dataset as ArrayRecord int16 waveforms.",
            "name": f"audiorep_{reader.name}",
            "READER": reader.name,
            "MANUAL_DOWNLOAD_INSTRUCTIONS": f"The dataset root: {reader.layout}.",
        },
    )


# One builder per reader (subclassing registers each name with TFDS): a new reader needs no code here.
BUILDERS: dict[str, type[AudioBuilder]] = {name: _builder_for(reader) for name, reader in READERS.items()}


def builder_class(reader: str) -> type[AudioBuilder]:
    """The builder class for a reader name ('folder', 'esc50', ...)."""
    try:
        return BUILDERS[reader]
    except KeyError:
        raise PrepareError(f"no TFDS builder for dataset {reader!r}; choose one of: {', '.join(BUILDERS)}.") from None


# ------------------------------------------------------------------------------------------ prepare / open
@contextlib.contextmanager
def _quiet_absl():
    from absl import logging as absl_logging

    level = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        yield
    finally:
        absl_logging.set_verbosity(level)


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A built dataset: where it is and what is in it."""

    path: Path  # the version directory (holds dataset_info.json)
    name: str
    config: str
    sample_rate: int
    classes: tuple[str, ...]
    multilabel: bool
    splits: dict[str, int]  # split -> number of examples
    skipped: tuple[str, ...]  # messages of unreadable files skipped at build time
    reused: bool = False  # True when an existing build was found and kept


def stale_builds(data_dir: str | Path) -> list[Path]:
    """Leftovers of interrupted builds (`incomplete.*`, `.staging-*` directories) under a data dir; never
    read as data."""
    data_dir = Path(data_dir)
    if not data_dir.exists():
        return []
    found = list(data_dir.glob("audiorep_*/*/incomplete.*")) + list(data_dir.glob(f"{STAGING_PREFIX}*"))
    return sorted(p for p in found if p.is_dir())


def check_out_dir(out_dir: Path) -> None:
    """Raise PrepareError unless `out_dir` is a folder or can be made one (checked before any work): not a file,
    not under a file, and its nearest existing folder writable."""
    existing = nearest_existing(out_dir)
    if not existing.is_dir():
        where = "is a file" if existing == out_dir else f"lies under the file {existing}"
        raise PrepareError(f"--out {out_dir} {where}; --out is the TFDS data folder to build into: pass a folder "
                           f"(new or existing).")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PrepareError(f"--out {out_dir}: the folder {existing} is not writable; pass a folder you can write.")


def prepare(
    reader: str,
    root: str | Path,
    out_dir: str | Path,
    *,
    sample_rate: int = 16_000,
    options: Mapping[str, Any] | None = None,
    skip_unreadable: bool = False,
    num_workers: int = 1,
    overwrite: bool = False,
) -> Prepared:
    """Build (or reuse) the ArrayRecord dataset of one reader under `out_dir`.

    Args:
      reader: a name from `audiorep.data.sources` ('folder', 'esc50', 'speech_commands', 'audioset',
        'sonics', 'asvspoof2019_la', 'in_the_wild').
      root: the dataset's root folder (TFDS's manual dir).
      out_dir: the TFDS data dir; the dataset lands in `out_dir/audiorep_<reader>/<config>/1.0.0`.
      sample_rate: every clip is resampled (soxr VHQ) to this rate and stored as int16.
      options: reader options (`read_dataset(reader, root, **options)`), part of the config name.
      skip_unreadable: list unreadable clips in the metadata and go on, instead of stopping at the first.
      num_workers: decode in this many processes.
      overwrite: rebuild when a build of the same config exists (else it is reused).

    Raises:
      PrepareError / AudioError naming the problem (missing root, --out a file, unreadable clip, ...).
    """
    cls = builder_class(reader)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise PrepareError(f"--root {root} is not a directory; pass the folder the {reader} reader expects.")
    out_dir = Path(out_dir).expanduser()
    check_out_dir(out_dir)
    options = dict(options or {})
    index = read_dataset(reader, root, **options)
    if not index.records:
        raise PrepareError(
            f"the {reader} reader found no records under {root}; check --root and the reader options "
            f"(`audiorep datasets inspect {reader} --root {root}` shows what it finds)."
        )
    cfg = make_config(index, reader=reader, sample_rate=sample_rate, options=options,
                      skip_unreadable=skip_unreadable, num_workers=num_workers)
    out_dir.mkdir(parents=True, exist_ok=True)
    with _quiet_absl():  # TFDS logs the whole config (every class name) as a warning
        builder = cls(data_dir=str(out_dir), config=cfg, file_format="array_record", index=index)
    version_dir = Path(builder.data_dir)
    reused = version_dir.exists() and not overwrite
    if not reused:
        replacing = version_dir.exists()
        # A rebuild goes to a hidden staging data dir and replaces the old build only once complete (TFDS's
        # own overwrite deletes the old build first, so a failed rebuild would lose both).
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out_dir)) if replacing else None
        target = builder if staging is None else cls(data_dir=str(staging), config=cfg, file_format="array_record",
                                                     index=index)
        download_dir = tempfile.mkdtemp(prefix="audiorep_tfds_")
        try:
            target.download_and_prepare(
                download_dir=download_dir,
                download_config=tfds.download.DownloadConfig(manual_dir=str(root)),
            )
            if staging is not None:
                old = version_dir.with_name(f"{STAGING_PREFIX}replaced-{version_dir.name}")
                os.replace(version_dir, old)
                os.replace(target.data_dir, version_dir)
                shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(download_dir, ignore_errors=True)
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
    return open_prepared(version_dir, reused=reused)


def _hidden_or_incomplete(path: Path, root: Path) -> bool:
    return any(part.startswith((".", "incomplete.")) for part in path.relative_to(root).parts)


def find_prepared(path: str | Path, name: str | None = None) -> Path:
    """The version directory of a built dataset, given it, its config dir, or the data dir above.

    A data dir with several builds needs `name` ('audiorep_folder/16k' or 'audiorep_folder').
    Directories of interrupted builds (`incomplete.*`) are never returned.
    """
    path = Path(path).expanduser()
    if (path / "dataset_info.json").is_file():
        return path
    if not path.exists():
        raise PrepareError(f"{path}: no such directory; prepare it first (audiorep datasets prepare NAME --root ... "
                           f"--out {path}).")
    found = sorted(p.parent for p in path.glob("**/dataset_info.json") if not _hidden_or_incomplete(p.parent, path))
    if name:  # 'audiorep_folder' or 'audiorep_folder/16k' (or with the version)
        want = Path(name).parts
        found = [p for p in found if p.relative_to(path).parts[:len(want)] == want]
    if len(found) == 1:
        return found[0]
    if not found:
        stale = [str(p) for p in stale_builds(path)] or [str(p) for p in path.glob("**/incomplete.*")]
        hint = f" Only interrupted builds were found ({', '.join(stale)}); rerun the prepare command." if stale else ""
        raise PrepareError(f"{path} holds no finished TFDS dataset.{hint}")
    listing = ", ".join(str(p.relative_to(path)) for p in found)
    raise PrepareError(f"{path} holds several datasets ({listing}); pass name= (or --name) to pick one.")


def open_prepared(path: str | Path, name: str | None = None, *, reused: bool = False) -> Prepared:
    """Describe a built dataset (see `find_prepared` for what `path` may be)."""
    version_dir = find_prepared(path, name)
    builder = tfds.builder_from_directory(str(version_dir))
    meta = dict(builder.info.metadata or {})
    if "sample_rate" not in meta:
        raise PrepareError(f"{version_dir} was not built by audiorep (no sample_rate in metadata.json).")
    return Prepared(
        path=version_dir,
        name=builder.name,
        config=builder.builder_config.name if builder.builder_config else "",
        sample_rate=int(meta["sample_rate"]),
        classes=tuple(meta.get("classes", ())),
        multilabel=bool(meta.get("multilabel", False)),
        splits={name: int(s.num_examples) for name, s in builder.info.splits.items()},
        skipped=tuple(meta.get("skipped", ())),
        reused=reused,
    )


def data_source(path: str | Path, split: str, name: str | None = None):
    """A random-access TFDS data source (ArrayRecord) of one split of a built dataset; no TensorFlow."""
    version_dir = find_prepared(path, name)
    builder = tfds.builder_from_directory(str(version_dir))
    if split not in builder.info.splits:
        raise PrepareError(f"{version_dir} has no split {split!r}; it has: {', '.join(builder.info.splits)}.")
    return builder.as_data_source(split=split)


def clip_lengths(path: str | Path, split: str) -> np.ndarray:
    """i64[N]: the number of stored samples of every example of a split, in stored order (no audio read)."""
    version_dir = find_prepared(path)
    file = version_dir / lengths_file(split)
    if not file.is_file():
        raise PrepareError(f"{file} is missing; the dataset was built by an older audiorep. Rebuild it with "
                           "`audiorep datasets prepare ... --overwrite`.")
    return np.load(file, allow_pickle=False)
