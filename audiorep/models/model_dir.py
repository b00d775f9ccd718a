"""The model directory: the on-disk format of a model's weights and everything needed to rebuild it.

Written atomically by `save_model_dir` (converters in models/convert/, the trainer's export)::

    OUT_DIR/
      audiorep_model.json   format + version, family, encoder config, frontend config, pooling, window,
                            sha256 of the parameters, source/meta (what it was converted or trained from)
      params/               orbax checkpoint (StandardCheckpointer) of the encoder's variables (nnx.Param and
                            any other non-RNG state; dropout RNG streams are re-seeded on load)
      extra/                optional orbax checkpoint of extra arrays (heads, tokenizer, ...)

`load_model_dir` builds the encoder abstractly from the JSON config (nnx.eval_shape: no random init), checks
every stored array against it first (a readable list of missing, unexpected and mis-shaped arrays), restores
the checkpoint into that abstract state (shape/dtype structs) and verifies the sha256, so a truncated or
hand-edited directory fails with a message instead of wrong embeddings. A training workdir loads too: its
`export/` model directory is used. Named models (random init) are registry.py's business.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
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

from audiorep import __version__
from audiorep.audio import frontends
from audiorep.models.bundle import FREQUENCY_MODES, POOLINGS, ModelBundle, make_bundle, window_frames_for
from audiorep.models.families import ModelDirError, get_family, saved_state, seed_rng_state

__all__ = [
    "EXTRA_DIR", "FORMAT_NAME", "FORMAT_VERSION", "MODEL_JSON", "PARAMS_DIR", "TRAINING_EXPORT", "ModelDirError",
    "arrays_description", "flat_arrays", "frontend_from_json", "is_model_dir", "json_dict", "load_model_dir",
    "orbax_checkpointer", "params_sha256", "read_model_json", "resolve_model_dir", "restore_checked", "save_model_dir",
    "shape_report", "write_checkpoint_dir", "write_dir_atomically", "writer_description",
]

MODEL_JSON = "audiorep_model.json"
TOKENIZER_JSON = "audiorep_tokenizer.json"  # a tokenizer directory's (tokenizers/tokenizer_dir.py), named in errors
PARAMS_DIR = "params"
EXTRA_DIR = "extra"
FORMAT_NAME = "audiorep-model"
FORMAT_VERSION = 1


def json_dict(obj, what: str) -> dict:
    """`obj` (a mapping, or an object with to_dict(), or a dataclass) as a JSON-able dict, else ModelDirError."""
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


# orbax is imported on first save/load, not at the top: it adds about a second to `import audiorep.models...`
# and a registered (random-init) model never needs it.
def orbax_checkpointer():
    """orbax's StandardCheckpointer (the params/ and extra/ folders of model and tokenizer directories)."""
    import orbax.checkpoint as ocp

    return ocp.StandardCheckpointer()


def _abstract(state):
    # orbax on first use: see the note above orbax_checkpointer
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
    cfg_dict = json_dict(encoder_config, "encoder_config")
    frontend_dict = json_dict(frontend, "frontend")
    meta_dict = json_dict(meta or {}, "meta")
    if window_frames is not None and (isinstance(window_frames, bool) or int(window_frames) <= 0):
        raise ModelDirError(f"window_frames must be a positive number of frames, got {window_frames!r}.")

    params = saved_state(encoder)
    cfg = fam.config_from_dict(cfg_dict)
    _, expected, _ = fam.abstract(cfg)
    expected = flat_arrays(expected)
    report = shape_report(expected, flat_arrays(params))
    if report:
        raise ModelDirError(f"the encoder's parameters do not match encoder_config ({fam.name}):\n{report}")

    doc = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "family": fam.name,
        "encoder_config": cfg_dict,
        "frontend": frontend_dict,
        "pooling": pooling,
        "frequency": frequency,
        "window_frames": None if window_frames is None else int(window_frames),
        **arrays_description(params),
        "has_extra_state": extra_state is not None,
        "meta": meta_dict,
        **writer_description(),
    }
    if extra_state is not None:
        doc["extra_sha256"] = params_sha256(extra_state)
    return write_checkpoint_dir(path, params, MODEL_JSON, doc, extra_state=extra_state)


def arrays_description(state) -> dict[str, Any]:
    """What a directory's JSON says of its checkpoint's arrays: params_sha256, num_params and num_arrays."""
    leaves = jax.tree.leaves(state)  # counted from shapes: params_sha256 is the one pass over the values
    return {"params_sha256": params_sha256(state), "num_params": int(sum(np.size(x) for x in leaves)),
            "num_arrays": len(leaves)}


def writer_description() -> dict[str, str]:
    """What a directory's JSON says of its writing: audiorep_version and created_utc (ISO 8601, seconds)."""
    return {"audiorep_version": __version__,
            "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def write_checkpoint_dir(path: Path, state, json_name: str, doc: Mapping[str, Any], *, extra_state=None) -> Path:
    """Write a model or tokenizer directory whole (`write_dir_atomically`): `state` as the orbax checkpoint in
    params/, `extra_state` (when given) in extra/, then the JSON description `doc` as `json_name`."""

    def fill(tmp: Path) -> None:
        ckptr = orbax_checkpointer()
        ckptr.save((tmp / PARAMS_DIR).absolute(), state)
        if extra_state is not None:
            ckptr.save((tmp / EXTRA_DIR).absolute(), extra_state)
        ckptr.wait_until_finished()
        (tmp / json_name).write_text(json.dumps(doc, indent=2) + "\n")

    return write_dir_atomically(path, fill)


def write_dir_atomically(path: Path, fill: Callable[[Path], None]) -> Path:
    """Create the directory `path` whole or not at all: `fill` writes into a fresh temp sibling, which is then
    renamed into place. An existing `path` (the caller has checked it may be replaced) is moved aside and deleted
    only after the new one is in place; a failed `fill` leaves `path` as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    trash = None
    try:
        tmp.mkdir()
        fill(tmp)
        if path.exists():  # overwrite: move the old one aside, put the new one in, then delete the old
            trash = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(path, trash)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if trash is not None and trash.exists():
            shutil.rmtree(trash, ignore_errors=True)
    return path


def read_model_json(path: str | os.PathLike) -> dict:
    """The checked contents of `path/audiorep_model.json` (no arrays are read)."""

    def inner_models(path: Path) -> str:
        inner = sorted(p.parent.name for p in path.glob(f"*/{MODEL_JSON}"))
        return (f"It contains model directories: {', '.join(inner)}." if inner else
                "Make one with `audiorep convert ...` or export a training run; pass that directory.")

    return read_description(
        path, what="model", json_name=MODEL_JSON, format_name=FORMAT_NAME, format_version=FORMAT_VERSION,
        required=("family", "encoder_config", "frontend", "pooling", "params_sha256"), error=ModelDirError,
        file_hint=f"pass the directory that holds {MODEL_JSON}.", missing_hint=inner_models,
        other_kinds={TOKENIZER_JSON: "is an acoustic tokenizer directory, not a model (encoder) directory; it gives "
                                     "labels (audiorep tokens extract --tokenizer, objective.tokenizer_dir), not "
                                     "embeddings."})


def read_description(path: str | os.PathLike, *, what: str, json_name: str, format_name: str, format_version: int,
                     required: tuple[str, ...], error: type[Exception], file_hint: str,
                     missing_hint: str | Callable[[Path], str], other_kinds: Mapping[str, str]) -> dict:
    """The JSON description `path/json_name` of an audiorep directory (`what`: 'model' or 'tokenizer'), checked
    for its format name and version and the `required` fields; any problem raises `error` naming the fix.

    file_hint: the fix when `path` is a file. missing_hint: the fix (or path -> fix) when `json_name` is missing.
    other_kinds: {JSON name of another kind of directory: what `path` is when it holds that file instead}.
    """
    path = Path(path)
    if not path.exists():
        raise error(f"{path}: no such {what} directory.")
    if not path.is_dir():
        raise error(f"{path} is a file, not a {what} directory; {file_hint}")
    file = path / json_name
    if not file.is_file():
        for other_json, is_instead in other_kinds.items():
            if (path / other_json).is_file():
                raise error(f"{path} {is_instead}")
        hint = missing_hint(path) if callable(missing_hint) else missing_hint
        raise error(f"{path} is not an audiorep {what} directory (no {json_name}). {hint}")
    try:
        doc = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise error(f"{file} is not valid JSON ({err}); the directory is corrupted, re-export it.") from err
    if not isinstance(doc, dict) or doc.get("format") != format_name:
        raise error(f"{file} is not an audiorep {what} description (format is not {format_name!r}).")
    version = doc.get("format_version")
    if version != format_version:
        fix = ("Upgrade audiorep" if isinstance(version, int) and version > format_version
               else "Re-export it with this audiorep version")
        raise error(f"{file} has {what}-directory format version {version!r}; this audiorep reads version "
                    f"{format_version}. {fix}.")
    for key in required:
        if key not in doc:
            raise error(f"{file} lacks the field {key!r}; the directory is corrupted, re-export it.")
    return doc


def restore_checked(ckpt_dir: Path, target_state, what: str, *, described_by: str = MODEL_JSON):
    """Restore an orbax checkpoint into `target_state`'s shapes after checking names/shapes/dtypes.

    described_by: the JSON file of the directory (named in the error when the arrays do not fit it)."""
    if not ckpt_dir.is_dir():
        raise ModelDirError(f"{ckpt_dir} is missing; the directory is incomplete, re-export it.")
    ckptr = orbax_checkpointer()
    try:
        stored = ckptr.metadata(ckpt_dir.absolute()).item_metadata
        stored = getattr(stored, "tree", stored)
    except Exception as err:  # orbax raises assorted types for damaged metadata
        raise ModelDirError(f"{ckpt_dir}: cannot read the orbax checkpoint ({type(err).__name__}: {err}).") from err
    abstract = target_state if _is_abstract(target_state) else _abstract(target_state)
    report = shape_report(flat_arrays(abstract), flat_arrays(stored))
    if report:
        raise ModelDirError(
            f"{ckpt_dir}: the stored {what} do not fit the model described by {described_by}:\n{report}\n"
            "The JSON config and the checkpoint come from different models; re-export the directory."
        )
    try:
        return ckptr.restore(ckpt_dir.absolute(), abstract)
    except Exception as err:
        raise ModelDirError(
            f"{ckpt_dir}: reading the {what} failed ({type(err).__name__}: {err}); the checkpoint is truncated "
            "or corrupted, re-export it."
        ) from err


def frontend_from_json(d: Mapping[str, Any]):
    """The frontend object a directory's JSON describes (ModelDirError when the description is not valid)."""
    try:
        return frontends.frontend_from_dict(dict(d))
    except (TypeError, ValueError, KeyError) as err:
        raise ModelDirError(f"frontend config is not valid ({err}); re-export the model directory.") from err


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
    frontend = frontend_from_json(doc["frontend"])
    graphdef, abstract_state, abstract_rng = fam.abstract(cfg)
    restored = restore_checked(path / PARAMS_DIR, abstract_state, "parameters")
    digest = params_sha256(restored) if verify else doc["params_sha256"]
    if digest != doc["params_sha256"]:
        raise ModelDirError(
            f"{path}: the parameters' sha256 ({digest[:12]}...) differs from the one recorded in {MODEL_JSON} "
            f"({str(doc['params_sha256'])[:12]}...). The checkpoint was altered or corrupted; re-export it."
        )
    encoder = nnx.merge(graphdef, restored, seed_rng_state(abstract_rng, 0))
    extra = None
    if doc.get("has_extra_state"):
        extra_dir = path / EXTRA_DIR
        if not extra_dir.is_dir():
            raise ModelDirError(f"{extra_dir} is missing although {MODEL_JSON} records extra state; re-export it.")
        extra = orbax_checkpointer().restore(extra_dir.absolute())
    pooling = doc["pooling"]
    if pooling not in POOLINGS:
        raise ModelDirError(f"{path}: pooling {pooling!r} in {MODEL_JSON} is not one of {POOLINGS}.")
    frequency = doc.get("frequency", "mean")  # directories written before the field existed averaged the rows
    if frequency not in FREQUENCY_MODES:
        raise ModelDirError(f"{path}: frequency {frequency!r} in {MODEL_JSON} is not one of {FREQUENCY_MODES}.")
    return make_bundle(
        name=str(path), fam=fam, frontend=frontend, encoder=encoder, cfg=cfg, pooling=pooling, frequency=frequency,
        window_frames=window_frames_for(cfg, frontend, fam.name, doc.get("window_frames")), digest=digest,
        source=str(path), meta=dict(doc.get("meta") or {}), extra=extra,
    )


def is_model_dir(path: str | os.PathLike) -> bool:
    """Whether `path` holds an audiorep_model.json (a model directory; contents not checked)."""
    return (Path(path) / MODEL_JSON).is_file()
