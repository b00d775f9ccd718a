"""Model registry and model directories: how a name or a folder becomes frontend + encoder + pooling.

Two ways to name a model, both resolved by `get_bundle(name_or_dir)`:

* a registered name (`list_models()`: `beats`, `ssast-patch`, `ssast-frame`, `passt-s` and their `-tiny`
  variants). A name fixes the architecture, frontend, pooling and input window; its weights are a
  *random initialisation with a fixed seed* (the same numbers on every machine). Real weights come from
  `audiorep convert beats|ssast|passt CKPT OUT_DIR` (official checkpoints) or from a training run's export;
  both write a model directory, and the path of that directory loads those weights (a training workdir
  works too: its `export/` model directory is used).
* a model directory, written atomically by `save_model_dir`::

    OUT_DIR/
      audiorep_model.json   format + version, family, encoder config, frontend config, pooling, window,
                            sha256 of the parameters, source/meta (what it was converted or trained from)
      params/               orbax checkpoint (StandardCheckpointer) of the encoder's variables (nnx.Param and
                            any other non-RNG state; dropout RNG streams are re-seeded on load)
      extra/                optional orbax checkpoint of extra arrays (heads, tokenizer, ...)

Loading builds the encoder abstractly from the JSON config (nnx.eval_shape: no random init), checks
every stored array against it first (a readable list of missing, unexpected and mis-shaped arrays),
restores the checkpoint into that abstract state (shape/dtype structs) and verifies the sha256, so a
truncated or hand-edited directory fails with a message instead of wrong embeddings.

Converters (models/convert/) and the trainer's export call `save_model_dir`; `audiorep.load()` calls
`get_bundle`. A new family is one entry in `FAMILIES`; a new named model is one `ModelSpec` in `MODELS`.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from audiorep.errors import AudiorepError

MODEL_JSON = "audiorep_model.json"
PARAMS_DIR = "params"
EXTRA_DIR = "extra"
FORMAT_NAME = "audiorep-model"
FORMAT_VERSION = 1
POOLINGS = ("mean", "max", "mean+max", "mean+std", "mean+std+delta", "cls", "cls+mean")
FREQUENCY_MODES = ("mean", "stack")
"""How the frequency rows of one time step become its embedding: averaged (D) or stacked in order (F x D; keeps
which band a token came from -- matters for patch models on speech).  Frame models have one row: both agree."""


class ModelDirError(AudiorepError, ValueError):
    """A model directory that cannot be written or read: missing, foreign, corrupted, or not matching its config."""


class UnknownModelError(AudiorepError, KeyError):
    """A model name that is neither registered nor an existing directory."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


# --------------------------------------------------------------------------------------------- families
@dataclasses.dataclass(frozen=True)
class Family:
    """One model family: where its config/encoder classes live and how its patches map to time.

    Attributes:
      name: 'beats' | 'ast' | 'passt' (also written into model directories).
      module: import path of the encoder module.
      config_class, encoder_class: class names inside `module` (`XConfig`, `XEncoder` contract).
      time_patch: cfg -> (kernel, stride) of one patch along time, in feature frames.
      frequency_patch: cfg -> (kernel, stride) along the mel axis (documentation / checks).
    """

    name: str
    module: str
    config_class: str
    encoder_class: str
    time_patch: Callable[[Any], tuple[int, int]]
    presets: Callable[[], Mapping[str, Any]] | None = None

    def classes(self) -> tuple[type, type]:
        """(ConfigClass, EncoderClass), imported on first use."""
        mod = importlib.import_module(self.module)
        try:
            return getattr(mod, self.config_class), getattr(mod, self.encoder_class)
        except AttributeError as err:
            raise ModelDirError(
                f"model family {self.name!r}: {self.module} has no {err.name!r}; the registry entry in "
                "audiorep/models/registry.py is out of date with the encoder module."
            ) from err

    def config_from_dict(self, d: Mapping[str, Any]):
        cfg_cls, _ = self.classes()
        try:
            return cfg_cls.from_dict(dict(d))
        except (TypeError, ValueError, KeyError) as err:
            raise ModelDirError(
                f"encoder config is not a valid {cfg_cls.__name__}: {err}. The directory was written by a "
                "different audiorep version or edited by hand; re-export it with `save_model_dir`."
            ) from err

    def preset(self, name: str):
        """The named encoder config preset ('base', 'tiny', ...)."""
        table = dict(self.presets()) if self.presets is not None else {}
        if name not in table:
            raise UnknownModelError(f"family {self.name!r} has no config preset {name!r}; presets: {sorted(table)}.")
        return table[name]

    def build(self, cfg, seed: int = 0) -> nnx.Module:
        """A freshly initialised encoder (random weights from `seed`)."""
        _, enc_cls = self.classes()
        return enc_cls(cfg, rngs=nnx.Rngs(seed))

    def abstract(self, cfg):
        """(graphdef, abstract saved state, abstract RNG state) of an encoder, without computing any weights."""
        return nnx.split(nnx.eval_shape(lambda: self.build(cfg)), SAVED, nnx.RngState)


FAMILIES: dict[str, Family] = {}

# What a model directory stores: every variable except PRNG state (parameters, and any buffers or batch
# statistics an encoder keeps). RNG streams (dropout) are re-seeded on load.
SAVED = nnx.Not(nnx.RngState)


def saved_state(module: nnx.Module) -> nnx.State:
    """The variables `save_model_dir` writes: all but RNG state."""
    return nnx.state(module, SAVED)


def _seed_rng_state(abstract_rng, seed: int):
    """Concrete RNG state for an abstract one: distinct keys folded from `seed`, zero counters."""
    base = jax.random.key(seed)
    leaves, treedef = jax.tree.flatten(abstract_rng)
    out = []
    for i, leaf in enumerate(leaves):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            out.append(jax.random.split(jax.random.fold_in(base, i), leaf.shape) if leaf.shape
                       else jax.random.fold_in(base, i))
        else:
            out.append(jax.numpy.zeros(leaf.shape, leaf.dtype))
    return jax.tree.unflatten(treedef, out)


def _time_patch(cfg) -> tuple[int, int]:
    """(kernel, stride) along time in frames, from `patch`/`stride` pairs (freq, time) or a square `patch_size`."""
    if hasattr(cfg, "patch") and hasattr(cfg, "stride"):
        return int(cfg.patch[1]), int(cfg.stride[1])
    size = int(getattr(cfg, "patch_size", getattr(cfg, "input_patch_size", 16)))
    return size, size


def _presets(module: str) -> Callable[[], Mapping[str, Any]]:
    return lambda: importlib.import_module(module).PRESETS


def register_family(family: Family) -> Family:
    """Add (or replace) a model family; returns it so it can be used as a one-liner."""
    FAMILIES[family.name] = family
    return family


register_family(Family("beats", "audiorep.models.beats", "BEATsConfig", "BEATsEncoder", _time_patch,
                       _presets("audiorep.models.beats")))
register_family(Family("ast", "audiorep.models.ast", "ASTConfig", "ASTEncoder", _time_patch,
                       _presets("audiorep.models.ast")))
register_family(Family("passt", "audiorep.models.passt", "PaSSTConfig", "PaSSTEncoder", _time_patch,
                       _presets("audiorep.models.passt")))


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise ModelDirError(
            f"unknown model family {name!r}; known families: {sorted(FAMILIES)}. The directory was written by a "
            "newer audiorep (upgrade) or names a family that was never registered."
        )
    return FAMILIES[name]


# ------------------------------------------------------------------------------------------ model dirs
def _as_dict(obj, what: str) -> dict:
    if isinstance(obj, Mapping):
        d = dict(obj)
    elif hasattr(obj, "to_dict"):
        d = obj.to_dict()
    elif dataclasses.is_dataclass(obj):
        d = dataclasses.asdict(obj)
    else:
        raise ModelDirError(f"{what} must be a dict or have to_dict(); got {type(obj).__name__}.")
    try:
        json.dumps(d)
    except TypeError as err:
        raise ModelDirError(f"{what} is not JSON-serialisable ({err}); make its to_dict() return plain types.") from err
    return d


def _key_name(k) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def flat_arrays(tree) -> dict[str, Any]:
    """{'blocks.0.attn.q.kernel': leaf, ...} for an nnx.State or an orbax metadata tree ('.value' dropped)."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        names = [_key_name(k) for k in path]
        if names and names[-1] == "value":
            names = names[:-1]
        out[".".join(names)] = leaf
    return out


def params_sha256(state) -> str:
    """sha256 over every array of a state, in sorted key order: name, dtype, shape and bytes."""
    h = hashlib.sha256()
    for key, leaf in sorted(flat_arrays(state).items()):
        arr = np.asarray(jax.device_get(leaf))
        h.update(key.encode())
        h.update(str(arr.dtype).encode())
        h.update(str(arr.shape).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def shape_report(expected: Mapping[str, Any], found: Mapping[str, Any], limit: int = 12) -> str:
    """Human-readable differences between two {name: array-like} tables (empty string when they agree)."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [
        f"{k}: config wants {tuple(expected[k].shape)} {np.dtype(expected[k].dtype).name}, "
        f"checkpoint has {tuple(found[k].shape)} {np.dtype(found[k].dtype).name}"
        for k in sorted(set(expected) & set(found))
        if tuple(expected[k].shape) != tuple(found[k].shape) or np.dtype(expected[k].dtype) != np.dtype(found[k].dtype)
    ]
    lines = []
    for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape/dtype", wrong)):
        if items:
            more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
            lines.append(f"  {title} ({len(items)}): " + "; ".join(items[:limit]) + more)
    return "\n".join(lines)


def _checkpointer():
    import orbax.checkpoint as ocp

    return ocp.StandardCheckpointer()


def _abstract(state):
    import orbax.checkpoint as ocp

    return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)


def _is_abstract(state) -> bool:
    return all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(state))


def save_model_dir(
    path: str | os.PathLike,
    *,
    family: str,
    encoder: nnx.Module,
    encoder_config,
    frontend,
    pooling: str = "mean",
    extra_state=None,
    meta: Mapping[str, Any] | None = None,
    window_frames: int | None = None,
    overwrite: bool = False,
    frequency: str = "mean",
) -> Path:
    """Write a model directory (JSON config + orbax checkpoint of the encoder's variables), atomically.

    Args:
      path: the directory to create. Its parent is created if needed.
      family: 'beats' | 'ast' | 'passt' (a key of `FAMILIES`).
      encoder: the nnx encoder whose parameters are saved.
      encoder_config: its config (dataclass with to_dict(), or the dict itself). Checked against the encoder:
        a model built from this config must have exactly the encoder's parameter names and shapes.
      frontend: a frontend object with to_dict() (audiorep.audio.frontends) or its dict.
      pooling: default scene pooling, one of POOLINGS.
      frequency: default frequency-row handling, one of FREQUENCY_MODES.
      extra_state: optional pytree of arrays saved beside the encoder (e.g. a classifier head or tokenizer).
      meta: JSON-able facts about where the weights came from (source file, its sha256, training run, step ...).
      window_frames: the input window the model was trained on, in feature frames (None: the family default).
      overwrite: replace an existing directory (the old one is removed only after the new one is complete).

    Returns:
      The directory path.

    Raises:
      ModelDirError: the path exists (and overwrite=False), the config does not describe the encoder,
        or meta/config are not JSON-able.
    """
    path = Path(path)
    fam = get_family(family)
    if pooling not in POOLINGS:
        raise ModelDirError(f"pooling {pooling!r} is not one of {POOLINGS}.")
    if frequency not in FREQUENCY_MODES:
        raise ModelDirError(f"frequency {frequency!r} is not one of {FREQUENCY_MODES}.")
    if path.exists() and not overwrite:
        raise ModelDirError(f"{path} already exists; choose a new directory or pass overwrite=True to replace it.")
    if path.exists() and not (path / MODEL_JSON).is_file():
        raise ModelDirError(f"{path} exists and is not an audiorep model directory; refusing to replace it.")
    cfg_dict = _as_dict(encoder_config, "encoder_config")
    frontend_dict = _as_dict(frontend, "frontend")
    meta_dict = _as_dict(meta or {}, "meta")
    if window_frames is not None and (isinstance(window_frames, bool) or int(window_frames) <= 0):
        raise ModelDirError(f"window_frames must be a positive number of frames, got {window_frames!r}.")

    params = saved_state(encoder)
    cfg = fam.config_from_dict(cfg_dict)
    _, expected, _ = fam.abstract(cfg)
    expected = flat_arrays(expected)
    report = shape_report(expected, flat_arrays(params))
    if report:
        raise ModelDirError(f"the encoder's parameters do not match encoder_config ({fam.name}):\n{report}")

    leaves = [np.asarray(x) for x in jax.tree.leaves(params)]
    doc = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "family": fam.name,
        "encoder_config": cfg_dict,
        "frontend": frontend_dict,
        "pooling": pooling,
        "frequency": frequency,
        "window_frames": None if window_frames is None else int(window_frames),
        "params_sha256": params_sha256(params),
        "num_params": int(sum(x.size for x in leaves)),
        "num_arrays": len(leaves),
        "has_extra_state": extra_state is not None,
        "meta": meta_dict,
        "audiorep_version": _version(),
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if extra_state is not None:
        doc["extra_sha256"] = params_sha256(extra_state)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    trash = None
    try:
        tmp.mkdir()
        ckptr = _checkpointer()
        ckptr.save((tmp / PARAMS_DIR).absolute(), params)
        if extra_state is not None:
            ckptr.save((tmp / EXTRA_DIR).absolute(), extra_state)
        ckptr.wait_until_finished()
        (tmp / MODEL_JSON).write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
        if path.exists():  # overwrite=True: move the old one aside, put the new one in, then delete the old
            trash = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(path, trash)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if trash is not None and trash.exists():
            shutil.rmtree(trash, ignore_errors=True)
    return path


def _version() -> str:
    from audiorep import __version__

    return __version__


def read_model_json(path: str | os.PathLike) -> dict:
    """The checked contents of `path/audiorep_model.json` (no arrays are read)."""
    path = Path(path)
    if not path.exists():
        raise ModelDirError(f"{path}: no such directory.")
    if not path.is_dir():
        raise ModelDirError(f"{path} is a file, not a model directory; pass the directory that holds {MODEL_JSON}.")
    file = path / MODEL_JSON
    if not file.is_file():
        inner = sorted(p.parent.name for p in path.glob(f"*/{MODEL_JSON}"))
        hint = f" It contains model directories: {', '.join(inner)}." if inner else (
            " Make one with `audiorep convert ...` or export a training run; pass that directory."
        )
        raise ModelDirError(f"{path} is not an audiorep model directory (no {MODEL_JSON}).{hint}")
    try:
        doc = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelDirError(f"{file} is not valid JSON ({err}); the directory is corrupted, re-export it.") from err
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise ModelDirError(f"{file} is not an audiorep model description (format is not {FORMAT_NAME!r}).")
    version = doc.get("format_version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        fix = "upgrade audiorep" if newer else "re-export it with this audiorep version"
        raise ModelDirError(
            f"{file} has model-directory format version {version!r}; this audiorep reads version "
            f"{FORMAT_VERSION}. {fix[0].upper() + fix[1:]}."
        )
    for key in ("family", "encoder_config", "frontend", "pooling", "params_sha256"):
        if key not in doc:
            raise ModelDirError(f"{file} lacks the field {key!r}; the directory is corrupted, re-export it.")
    return doc


def _restore(ckpt_dir: Path, target_state, what: str):
    """Restore an orbax checkpoint into `target_state`'s shapes after checking names/shapes/dtypes."""
    if not ckpt_dir.is_dir():
        raise ModelDirError(f"{ckpt_dir} is missing; the model directory is incomplete, re-export it.")
    ckptr = _checkpointer()
    try:
        stored = ckptr.metadata(ckpt_dir.absolute()).item_metadata
        stored = getattr(stored, "tree", stored)
    except Exception as err:  # orbax raises assorted types for damaged metadata
        raise ModelDirError(f"{ckpt_dir}: cannot read the orbax checkpoint ({type(err).__name__}: {err}).") from err
    abstract = target_state if _is_abstract(target_state) else _abstract(target_state)
    report = shape_report(flat_arrays(abstract), flat_arrays(stored))
    if report:
        raise ModelDirError(
            f"{ckpt_dir}: the stored {what} do not fit the model described by {MODEL_JSON}:\n{report}\n"
            "The JSON config and the checkpoint come from different models; re-export the directory."
        )
    try:
        return ckptr.restore(ckpt_dir.absolute(), abstract)
    except Exception as err:
        raise ModelDirError(
            f"{ckpt_dir}: reading the {what} failed ({type(err).__name__}: {err}); the checkpoint is truncated "
            "or corrupted, re-export it."
        ) from err


@dataclasses.dataclass
class ModelBundle:
    """Everything needed to embed audio with one model.

    Attributes:
      name: registry name, or the directory path it was loaded from.
      family: 'beats' | 'ast' | 'passt'.
      frontend: the frontend object: f32[B, samples] -> f32[B, frames, mels] (audiorep.audio.frontends).
      encoder: the nnx encoder: features -> EncoderOutput.
      encoder_config: its config dataclass.
      pooling: default scene pooling.
      frequency: default handling of a time step's frequency rows ('mean' | 'stack').
      window_frames: model input window in feature frames.
      window_samples: the fewest samples that fill `window_frames` frames.
      time_patch: (kernel, stride) of a patch along time, in frames.
      checkpoint_hash: sha256 of the parameters (stable key for caches).
      source: 'registry' (random init, fixed seed) or the model directory.
      meta: the directory's meta (source checkpoint, training run, ...).
      extra_state: the optional extra arrays saved beside the encoder (numpy), or None.
    """

    name: str
    family: str
    frontend: Any
    encoder: nnx.Module
    encoder_config: Any
    pooling: str
    window_frames: int
    window_samples: int
    time_patch: tuple[int, int]
    checkpoint_hash: str
    source: str
    meta: dict = dataclasses.field(default_factory=dict)
    extra_state: Any = None
    frequency: str = "mean"

    @property
    def sample_rate(self) -> int:
        return int(self.frontend.sample_rate)

    @property
    def hop_samples(self) -> int:
        return int(self.frontend.hop_samples)

    @property
    def time_resolution_ms(self) -> float:
        """Spacing of timestamp embeddings: one time patch stride."""
        return 1000.0 * self.time_patch[1] * self.hop_samples / self.sample_rate


def samples_for_frames(frontend, frames: int) -> int:
    """The fewest samples for which `frontend.num_frames(samples) >= frames`."""
    lo, hi = 1, max(2, frames * int(frontend.hop_samples) * 2 + 4096)
    while frontend.num_frames(hi) < frames:
        hi *= 2
    while lo < hi:
        mid = (lo + hi) // 2
        if frontend.num_frames(mid) >= frames:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _frontend_from_dict(d: Mapping[str, Any]):
    from audiorep.audio import frontends

    try:
        return frontends.frontend_from_dict(dict(d))
    except (TypeError, ValueError, KeyError) as err:
        raise ModelDirError(f"frontend config is not valid ({err}); re-export the model directory.") from err


def window_frames_for(cfg, frontend, family: str, override: int | None = None) -> int:
    """The model's input window in frames: an explicit value, else the config's `num_frames`, else 10 s of audio."""
    if override is not None:
        return int(override)
    frames = getattr(cfg, "num_frames", None)
    if frames:
        return int(frames)
    seconds = DEFAULT_WINDOW_SECONDS.get(family, 10.0)
    return max(1, int(frontend.num_frames(int(round(seconds * frontend.sample_rate)))))


def _make_bundle(*, name, fam: Family, frontend, encoder, cfg, pooling, window_frames, digest, source, meta,
                 extra=None, frequency: str = "mean") -> ModelBundle:
    kernel, stride = (int(v) for v in fam.time_patch(cfg))
    if window_frames < kernel:
        raise ModelDirError(f"{name}: window of {window_frames} frames is shorter than one patch ({kernel} frames).")
    return ModelBundle(
        name=name,
        family=fam.name,
        frontend=frontend,
        encoder=encoder,
        encoder_config=cfg,
        pooling=pooling,
        frequency=frequency,
        window_frames=int(window_frames),
        window_samples=samples_for_frames(frontend, window_frames),
        time_patch=(kernel, stride),
        checkpoint_hash=digest,
        source=source,
        meta=meta,
        extra_state=extra,
    )


TRAINING_EXPORT = "export"  # where `audiorep pretrain` exports a workdir's encoder


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """`path` itself, or the model directory a training workdir exported to (`path/export`)."""
    path = Path(path)
    if not (path / MODEL_JSON).is_file() and (path / TRAINING_EXPORT / MODEL_JSON).is_file():
        return path / TRAINING_EXPORT
    return path


def load_model_dir(path: str | os.PathLike, *, verify: bool = True) -> ModelBundle:
    """Load a model directory written by `save_model_dir`.

    Args:
      path: the directory, or a training workdir (its `export/` model directory is loaded).
      verify: recompute the parameters' sha256 and compare with the JSON (detects silent corruption).

    Raises:
      ModelDirError: not a model directory, another format version, unknown family, a config the encoder
        class rejects, arrays that do not fit the config, or a checksum mismatch.
    """
    path = resolve_model_dir(path)
    doc = read_model_json(path)
    fam = get_family(doc["family"])
    cfg = fam.config_from_dict(doc["encoder_config"])
    frontend = _frontend_from_dict(doc["frontend"])
    graphdef, abstract_state, abstract_rng = fam.abstract(cfg)
    restored = _restore(path / PARAMS_DIR, abstract_state, "parameters")
    digest = params_sha256(restored) if verify else doc["params_sha256"]
    if digest != doc["params_sha256"]:
        raise ModelDirError(
            f"{path}: the parameters' sha256 ({digest[:12]}...) differs from the one recorded in {MODEL_JSON} "
            f"({str(doc['params_sha256'])[:12]}...). The checkpoint was altered or corrupted; re-export it."
        )
    encoder = nnx.merge(graphdef, restored, _seed_rng_state(abstract_rng, 0))
    extra = None
    if doc.get("has_extra_state"):
        extra_dir = path / EXTRA_DIR
        if not extra_dir.is_dir():
            raise ModelDirError(f"{extra_dir} is missing although {MODEL_JSON} records extra state; re-export it.")
        extra = _checkpointer().restore(extra_dir.absolute())
    pooling = doc["pooling"]
    if pooling not in POOLINGS:
        raise ModelDirError(f"{path}: pooling {pooling!r} in {MODEL_JSON} is not one of {POOLINGS}.")
    frequency = doc.get("frequency", "mean")  # directories written before the field existed averaged the rows
    if frequency not in FREQUENCY_MODES:
        raise ModelDirError(f"{path}: frequency {frequency!r} in {MODEL_JSON} is not one of {FREQUENCY_MODES}.")
    return _make_bundle(
        name=str(path), fam=fam, frontend=frontend, encoder=encoder, cfg=cfg, pooling=pooling, frequency=frequency,
        window_frames=window_frames_for(cfg, frontend, fam.name, doc.get("window_frames")), digest=digest,
        source=str(path), meta=dict(doc.get("meta") or {}), extra=extra,
    )


def is_model_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / MODEL_JSON).is_file()


# ----------------------------------------------------------------------------------------- named models
DEFAULT_WINDOW_SECONDS = {"beats": 10.0, "ast": 10.24, "passt": 10.0}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered model name.

    Attributes:
      name: the registry name ('beats-tiny', ...).
      family: a key of FAMILIES.
      preset: the encoder config preset of that family ('base', 'tiny', 'frame', ...).
      frontend: frontend name for audiorep.audio.frontends.get_frontend ('beats' | 'ssast' | 'passt').
      pooling: default scene pooling.
      window_frames: input window in frames (None: the config's `num_frames`, else 10 s of audio).
      description: one line for `list_models` tables.
      seed: the PRNG seed of the random initialisation.
    """

    name: str
    family: str
    preset: str
    frontend: str
    pooling: str
    description: str
    window_frames: int | None = None
    seed: int = 0


MODELS: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    MODELS[spec.name] = spec
    return spec


for _spec in (
    ModelSpec("beats", "beats", "beats", "beats", "mean",
              "BEATs base (Chen et al., 2022): 12 x 768, 16x16 patches, 16 kHz fbank, 10 s window"),
    ModelSpec("ssast-patch", "ast", "ssast-patch", "ssast", "mean",
              "SSAST-Base-Patch-400 (Gong et al., 2022): 16x16 patches on 128 x 1024 frames"),
    ModelSpec("ssast-frame", "ast", "ssast-frame", "ssast", "mean",
              "SSAST-Base-Frame-400: 128x2 frame patches on 128 x 1024 frames"),
    ModelSpec("passt-s", "passt", "passt-s", "passt", "cls",
              "PaSST-S (Koutini et al., 2022): stride-10 16x16 patches, 32 kHz mel, 10 s window"),
    ModelSpec("beats-tiny", "beats", "beats-tiny", "beats", "mean", "BEATs layout, CPU-sized (tests, demo)"),
    ModelSpec("ssast-patch-tiny", "ast", "ssast-patch-tiny", "ssast", "mean", "SSAST patch layout, CPU-sized"),
    ModelSpec("ssast-frame-tiny", "ast", "ssast-frame-tiny", "ssast", "mean", "SSAST frame layout, CPU-sized"),
    ModelSpec("passt-s-tiny", "passt", "passt-s-tiny", "passt", "cls", "PaSST-S layout, CPU-sized"),
):
    register_model(_spec)


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(MODELS)


def model_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        import difflib

        close = difflib.get_close_matches(name, MODELS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"{name!r} is neither a registered model nor an existing directory.{hint} "
            f"Registered: {', '.join(list_models())}. A model directory path (from `audiorep convert` or a "
            "training export) loads real weights."
        )
    return MODELS[name]


def build_named(name: str) -> ModelBundle:
    """A registered model with its fixed-seed random initialisation."""
    spec = model_spec(name)
    fam = get_family(spec.family)
    cfg = fam.preset(spec.preset)
    from audiorep.audio import frontends

    frontend = frontends.get_frontend(spec.frontend)
    encoder = fam.build(cfg, seed=spec.seed)
    return _make_bundle(
        name=spec.name, fam=fam, frontend=frontend, encoder=encoder, cfg=cfg, pooling=spec.pooling,
        window_frames=window_frames_for(cfg, frontend, fam.name, spec.window_frames),
        digest=params_sha256(saved_state(encoder)), source="registry",
        meta={"weights": f"random initialisation, seed {spec.seed}", "description": spec.description},
    )


def get_bundle(name_or_dir: str | os.PathLike, *, verify: bool = True) -> ModelBundle:
    """A registered name (random init, fixed seed) or a model directory (its weights)."""
    if isinstance(name_or_dir, os.PathLike) or (isinstance(name_or_dir, str) and os.path.exists(name_or_dir)):
        return load_model_dir(name_or_dir, verify=verify)
    if not isinstance(name_or_dir, str):
        raise UnknownModelError(f"expected a model name or directory path, got {type(name_or_dir).__name__}.")
    if name_or_dir not in MODELS and (os.sep in name_or_dir or name_or_dir.startswith(".")):
        raise ModelDirError(f"{name_or_dir}: no such directory (and not a registered model name).")
    return build_named(name_or_dir)
