"""Reading official PyTorch checkpoints without trusting them, and checking their keys and shapes.

Used by every converter in this package (`beats`, `ssast`, `passt`). Two readers, one result (nested
dicts/lists with `np.ndarray` leaves):

- with torch installed: `torch.load(path, map_location='cpu', weights_only=True)`, tensors -> numpy;
- without torch (the default: our venv has none): `read_torch_zip`, a reader of PyTorch's zip checkpoint
  format (torch >= 1.6, `torch.save` default since then). It unpickles `data.pkl` with a restricted
  Unpickler whose `find_class` only hands out the few globals that torch's own `weights_only` loader allows
  for plain state dicts (tensor/parameter rebuild functions, storage types, dtypes, `OrderedDict`, `set`,
  `_codecs.encode` for protocol-2 bytes) and raises `CheckpointError` for anything else, so a malicious
  file cannot run code. Tensor bytes come straight from the zip's `data/<key>` records via numpy, honouring
  dtype, storage offset, sizes, strides and the recorded byte order.

Either way `checkpoint_format` looks at the file first, so a zip checkpoint cut short by a download or copy
(its central directory, written last, is gone) is reported as truncated, not taken for a legacy file; a
record whose CRC or length is wrong is reported as corrupted. Both messages say to fetch the file again.

Why both: conversion is install-free (`pip install audiorep` is enough to convert official weights), with
the same safety model as `torch.load(weights_only=True)`; torch is used when present because it also reads
the legacy (pre-1.6) format.

Then `check_state_dict` compares a state dict to the expected {key: shape} table and raises one error that
lists every missing, unexpected and mis-shaped key; `detect_family` names the model family a state dict
really belongs to, so "this is an SSAST file" is said instead of a wall of missing keys; `assign_params`
writes arrays into an nnx module by attribute path with shape checks; `build_with_params` builds a
module without random initialisation and fills it.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import hashlib
import io
import os
import pickle
import re
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx

from audiorep.errors import AudiorepError


class CheckpointError(AudiorepError, ValueError):
    """A checkpoint file cannot be read or does not fit the model it is converted to."""


# ------------------------------------------------------------------------------------ torch-free reader
_STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype(np.float64),
    "FloatStorage": np.dtype(np.float32),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
    "ComplexFloatStorage": np.dtype(np.complex64),
    "ComplexDoubleStorage": np.dtype(np.complex128),
}

_TORCH_DTYPES: dict[str, np.dtype] = {
    "float64": np.dtype(np.float64), "double": np.dtype(np.float64),
    "float32": np.dtype(np.float32), "float": np.dtype(np.float32),
    "float16": np.dtype(np.float16), "half": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "int64": np.dtype(np.int64), "long": np.dtype(np.int64),
    "int32": np.dtype(np.int32), "int": np.dtype(np.int32),
    "int16": np.dtype(np.int16), "short": np.dtype(np.int16),
    "int8": np.dtype(np.int8), "uint8": np.dtype(np.uint8), "bool": np.dtype(np.bool_),
    "complex64": np.dtype(np.complex64), "complex128": np.dtype(np.complex128),
}


class _StorageType:
    """Stand-in for torch.<X>Storage in the pickle: only carries the element dtype."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _Storage:
    """One storage record of the zip: a flat numpy array of its element dtype."""

    def __init__(self, array: np.ndarray):
        self.array = array


def _rebuild_tensor(storage: _Storage, offset: int, size: tuple, stride: tuple, *_ignored) -> np.ndarray:
    """torch._utils._rebuild_tensor_v2 without torch: a strided view of the storage, copied to a fresh array."""
    flat = storage.array
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if not size:
        if offset >= flat.size:
            raise CheckpointError(f"scalar tensor at offset {offset} lies outside its storage of {flat.size} items.")
        return np.array(flat[offset])
    if any(s == 0 for s in size):
        return np.zeros(size, flat.dtype)
    last = offset + sum((n - 1) * st for n, st in zip(size, stride))
    if offset < 0 or last >= flat.size or any(st < 0 for st in stride):
        raise CheckpointError(f"tensor of size {size}, stride {stride}, offset {offset} does not fit its storage "
                              f"of {flat.size} items: the file is corrupt or truncated.")
    view = np.lib.stride_tricks.as_strided(flat[offset:], shape=size,
                                           strides=tuple(st * flat.itemsize for st in stride), writeable=False)
    return np.array(view)


def _rebuild_parameter(data, requires_grad=True, backward_hooks=None, *_state):
    return data


def _codecs_encode(text: str, encoding: str = "latin1") -> bytes:
    return text.encode(encoding)


def _allowed_global(module: str, name: str) -> Any:
    """The only globals a weights-only state dict may reference (mirrors torch's weights_only allowlist)."""
    if module == "collections" and name == "OrderedDict":
        return collections.OrderedDict
    if module == "collections" and name == "Counter":
        return collections.Counter
    if module == "builtins" and name in ("set", "frozenset", "bytearray", "complex", "slice"):
        return {"set": set, "frozenset": frozenset, "bytearray": bytearray, "complex": complex,
                "slice": slice}[name]
    if module == "_codecs" and name == "encode":
        return _codecs_encode
    if module == "torch._utils" and name == "_rebuild_tensor_v2":
        return _rebuild_tensor
    if module == "torch._utils" and name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
        return _rebuild_parameter
    if module == "torch" and name in _STORAGE_DTYPES:
        return _StorageType(name)
    if module == "torch" and name in _TORCH_DTYPES:
        return _TORCH_DTYPES[name]
    if module == "torch" and name == "device":
        return str
    if module == "torch" and name == "Size":
        return tuple
    if module == "torch.nn.parameter" and name == "Parameter":
        return lambda data, requires_grad=True: data
    raise CheckpointError(
        f"the checkpoint references the Python object {module}.{name}, which a weights-only state dict never "
        f"needs; refusing to load it (it could run code). If you trust the file, re-save just its tensors "
        f"(torch.save(obj['model'] / state_dict, ...)) and convert that.")


class _WeightsUnpickler(pickle.Unpickler):
    def __init__(self, file, load_storage: Callable[[str, _StorageType, int], _Storage]):
        super().__init__(file)
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        return _allowed_global(module, name)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(f"unsupported persistent id {pid!r} in the checkpoint pickle.")
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"unsupported storage type {storage_type!r} in the checkpoint.")
        return self._load_storage(str(key), storage_type, int(numel))


ZIP_MAGIC = b"PK\x03\x04"  # a zip's first local file header: every torch >= 1.6 checkpoint starts with it
PICKLE_MAGIC = b"\x80"  # a pickle of protocol >= 2: how legacy (pre-1.6) torch.save files start


def _redownload(path: Path) -> str:
    return (f"Download or copy {path.name} again (and compare its size or sha256 with the source's); a download "
            "or copy that stopped early leaves such a file.")


def checkpoint_format(path: str | os.PathLike) -> str:
    """What kind of file `path` is: 'zip' (torch >= 1.6), 'pickle' (legacy torch.save) or 'unknown'.

    A zip checkpoint is checked to be complete first: its central directory, which the writer puts last, is
    what a truncated download or copy loses, and without this check such a file would pass for a legacy one.

    Raises:
      CheckpointError: no such file, an empty file, or a zip checkpoint that is cut short.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file. Give the path of the official .pt/.pth checkpoint.")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): truncated. {_redownload(path)}")
    with open(path, "rb") as f:
        head = f.read(len(ZIP_MAGIC))
    if head == ZIP_MAGIC or (size < len(ZIP_MAGIC) and ZIP_MAGIC.startswith(head)):
        if not zipfile.is_zipfile(path):
            raise CheckpointError(
                f"{path} is truncated or corrupted: it starts as a PyTorch zip checkpoint but its end (the zip's "
                f"central directory, which lists the records and their sizes) is missing; found {size:,} bytes. "
                f"{_redownload(path)}")
        return "zip"
    return "pickle" if head.startswith(PICKLE_MAGIC) else "unknown"


def read_torch_zip(path: str | os.PathLike) -> Any:
    """Read a PyTorch zip checkpoint without torch.  Returns nested containers with np.ndarray leaves.

    Raises CheckpointError for truncated or corrupted files (missing central directory, a record whose CRC or
    length is wrong), non-zip (legacy) files, unknown globals or inconsistent storages.
    """
    path = Path(path)
    kind = checkpoint_format(path)
    if kind == "pickle":
        raise CheckpointError(
            f"{path} is not a PyTorch zip checkpoint (legacy pre-1.6 torch format). "
            f"Install torch (pip install 'audiorep[convert]') so torch.load(weights_only=True) can read it, "
            f"or re-save it with a recent torch.")
    if kind != "zip":
        with open(path, "rb") as f:
            head = f.read(16)
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint: it starts with {head!r}, neither a zip (torch >= 1.6) nor a "
            f"pickle (legacy torch). Check that it is the checkpoint itself, not a web page or an archive around it.")
    try:
        with zipfile.ZipFile(path) as zf:
            return _to_plain(_read_zip_records(path, zf))
    except (zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise CheckpointError(f"{path} is truncated or corrupted ({err}). {_redownload(path)}") from err
    except OSError as err:
        if err.errno != errno.EINVAL:  # EINVAL: a record offset that points before the start of the file
            raise
        raise CheckpointError(f"{path} is truncated or corrupted (a zip record offset points outside the file). "
                              f"{_redownload(path)}") from err


def _read_zip_records(path: Path, zf: zipfile.ZipFile) -> Any:
    """Unpickle `<archive>/data.pkl` of an open torch zip, loading each storage from its `data/<key>` record."""
    names = zf.namelist()
    pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") <= 1]
    if len(pkl) != 1:
        raise CheckpointError(f"{path}: expected one <archive>/data.pkl record in the zip, found {pkl or 'none'}.")
    prefix = pkl[0][: -len("data.pkl")]
    order = "little"
    if prefix + "byteorder" in names:
        order = zf.read(prefix + "byteorder").decode().strip()
    if order not in ("little", "big"):
        raise CheckpointError(f"{path}: unknown byte order record {order!r}.")
    cache: dict[str, _Storage] = {}

    def load_storage(key: str, storage_type: _StorageType, numel: int) -> _Storage:
        if key not in cache:
            record = f"{prefix}data/{key}"
            if record not in names:
                raise CheckpointError(f"{path}: storage record {record} is missing (truncated file?).")
            raw = zf.read(record)
            dt = storage_type.dtype.newbyteorder("<" if order == "little" else ">")
            if len(raw) % dt.itemsize:
                raise CheckpointError(f"{path}: storage {key} has {len(raw)} bytes, not a multiple of "
                                      f"{dt.itemsize} ({storage_type.name}).")
            arr = np.frombuffer(raw, dtype=dt)
            if arr.size < numel:
                raise CheckpointError(f"{path}: storage {key} holds {arr.size} items, the pickle says {numel}.")
            cache[key] = _Storage(arr.astype(storage_type.dtype.newbyteorder("="), copy=False))
        return cache[key]

    with zf.open(pkl[0]) as f:
        try:
            return _WeightsUnpickler(io.BufferedReader(f), load_storage).load()
        except pickle.UnpicklingError as err:
            raise CheckpointError(f"{path}: its {pkl[0]} record is corrupted ({err}). {_redownload(path)}") from err


def _to_plain(obj: Any) -> Any:
    """OrderedDict -> dict (recursively); arrays and scalars unchanged."""
    if isinstance(obj, Mapping):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_plain(v) for v in obj)
    return obj


def _torch_to_numpy(obj: Any) -> Any:
    # torch is optional (the [convert] extra); this runs only on what torch.load returned
    import torch

    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu()
        if t.dtype == torch.bfloat16:
            return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return t.numpy().copy()
    if isinstance(obj, Mapping):
        return {k: _torch_to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_torch_to_numpy(v) for v in obj)
    return obj


def load_checkpoint(path: str | os.PathLike, *, reader: str = "auto") -> Any:
    """Read an official PyTorch checkpoint safely.  -> nested dicts/lists with np.ndarray leaves.

    reader: 'auto' (torch.load(weights_only=True) when torch imports, else the built-in zip reader),
    'torch' or 'builtin'.
    """
    if reader not in ("auto", "torch", "builtin"):
        raise ValueError(f"reader must be 'auto', 'torch' or 'builtin', got {reader!r}.")
    if reader in ("auto", "torch"):
        try:
            # torch is optional (the [convert] extra): without it the built-in zip reader reads the checkpoint
            import torch
        except ImportError:
            if reader == "torch":
                raise CheckpointError("reader='torch' but torch is not installed; use reader='builtin' or "
                                      "pip install 'audiorep[convert]'.") from None
            torch = None
        if torch is not None:
            checkpoint_format(path)  # a truncated zip gets its own message, not torch's "failed finding central dir"
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError as e:
                raise CheckpointError(f"{path}: torch.load(weights_only=True) refused the file: {e}") from e
            except RuntimeError as e:  # torch's zip reader: "PytorchStreamReader failed reading ..."
                if "PytorchStreamReader" not in str(e):
                    raise
                raise CheckpointError(f"{path} is truncated or corrupted ({e}). {_redownload(Path(path))}") from e
            return _to_plain(_torch_to_numpy(obj))
    return read_torch_zip(path)


# --------------------------------------------------------------------------------- key / shape checking
def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks (recorded as the source of a converted model)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def flat_state_dict(obj: Any, source: str, *, family: str) -> dict[str, np.ndarray]:
    """The flat {key: array} state dict inside a loaded checkpoint (unwrapping `state_dict` / `model`), or a clear
    error naming what it is.  family: the converter's family, for the message ('SSAST/AST', 'PaSST')."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source} holds a {type(obj).__name__}, not a state dict; give the .pth file that "
                              "torch.save(model.state_dict()) wrote.")
    if "model" in obj and isinstance(obj["model"], Mapping) and "cfg" in obj:
        fam = detect_family(obj["model"].keys())
        raise CheckpointError(f"{source} stores `cfg` + `model`, the BEATs layout, not a {family} state dict. "
                              + describe_family(fam or "beats"))
    for wrapper in ("state_dict", "model"):
        if wrapper in obj and isinstance(obj[wrapper], Mapping) and not any(
                isinstance(v, np.ndarray) for v in obj.values()):
            obj = obj[wrapper]
    bad = sorted(k for k, v in obj.items() if not isinstance(v, np.ndarray | np.generic))
    if bad:
        raise CheckpointError(f"{source} is not a flat state dict: {bad[:5]} hold non-tensor values.")
    return dict(obj)


def convert_state_dict_checkpoint(ckpt: str | os.PathLike, out_dir: str | os.PathLike, *, family: str, label: str,
                                  encoder_from_state_dict: Callable[..., tuple[Any, Any]],
                                  frontend_for: Callable[[Any], Any], extra_meta: Callable[[dict], dict],
                                  pooling: str, force: bool, reader: str, **options) -> Path:
    """The path every plain-state-dict converter (SSAST/AST, PaSST) takes: read, build, write a model directory.

    Reads `ckpt` (`load_checkpoint`, `flat_state_dict`), builds the encoder with
    `encoder_from_state_dict(sd, source=..., **options)` -> (config, encoder), and saves it at `out_dir` with the
    `frontend_for(config)` frontend, the config's `num_frames` as the embedding window and the provenance
    {converted_from, source_sha256, **extra_meta(sd)}. label: the family as messages name it ('PaSST').
    Returns the directory.
    """
    from audiorep.models.model_dir import save_model_dir  # jax and flax load on first use, as in build_with_params

    ckpt = Path(ckpt)
    source = str(ckpt)
    sd = flat_state_dict(load_checkpoint(ckpt, reader=reader), source, family=label)
    cfg, encoder = encoder_from_state_dict(sd, source=source, **options)
    meta = {"converted_from": ckpt.name, "source_sha256": file_sha256(ckpt), **extra_meta(sd)}
    return save_model_dir(out_dir, family=family, encoder=encoder, encoder_config=cfg, frontend=frontend_for(cfg),
                          pooling=pooling, meta=meta, window_frames=cfg.num_frames, overwrite=force)


def detect_family(keys: Iterable[str]) -> str | None:
    """Name the official model family a state dict's keys belong to.

    Returns 'beats-tokenizer', 'beats', 'ssast', 'passt', 'ast' or None when unrecognised.
    """
    keys = list(keys)
    has = lambda frag: any(frag in k for k in keys)
    if has("quantize.") or has("quantize_layer."):
        return "beats-tokenizer"
    if has("encoder.pos_conv.") or has("post_extract_proj.") or (has("patch_embedding.") and has("encoder.layers.")):
        return "beats"
    if has("freq_new_pos_embed") or has("time_new_pos_embed"):
        return "passt"
    if has("cpredlayer.") or has("gpredlayer.") or has("mask_embed") or has("p_input_tdim"):
        return "ssast"
    if has("v.patch_embed.") or has("v.pos_embed"):
        return "ast"
    return None


def describe_family(family: str | None) -> str:
    """A sentence that says what the file is and how to convert it."""
    return {
        "beats": "It is a BEATs encoder checkpoint: convert it with `audiorep convert beats`.",
        "beats-tokenizer": ("It is a BEATs *tokenizer* checkpoint (quantize.* keys): convert it with "
                            "`audiorep convert beats-tokenizer`."),
        "ssast": "It is an SSAST checkpoint (module.v.* / mask_embed keys): convert it with `audiorep convert ssast`.",
        "ast": "It is an AST (ViT on spectrograms, v.* keys) checkpoint: convert it with `audiorep convert ssast`.",
        "passt": "It is a PaSST checkpoint (freq_new_pos_embed keys): convert it with `audiorep convert passt`.",
        None: "Its keys match no supported family (BEATs, SSAST/AST, PaSST).",
    }[family]


def _listing(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def check_state_dict(state: Mapping[str, np.ndarray], expected: Mapping[str, tuple[int, ...]], *, family: str,
                     source: str = "checkpoint", ignore: Iterable[str] = ()) -> None:
    """Raise one CheckpointError listing every missing, unexpected and mis-shaped key (nothing when all fit).

    expected: {key: shape}. ignore: keys allowed in the file but not used (e.g. unused heads). When the keys
    look like another family's, the error says which one.
    """
    ignore = set(ignore)
    missing = sorted(k for k in expected if k not in state)
    unexpected = sorted(k for k in state if k not in expected and k not in ignore)
    shapes = sorted(f"{k}: file {tuple(np.shape(state[k]))} vs model {tuple(expected[k])}"
                    for k in expected if k in state and tuple(np.shape(state[k])) != tuple(expected[k]))
    if not (missing or unexpected or shapes):
        return
    real = detect_family(state.keys())
    lines = [f"{source} does not fit the {family} model:"]
    if real is not None and real != family:
        lines.append("  " + describe_family(real))
    if missing:
        lines.append(f"  missing keys ({len(missing)}): {_listing(missing)}")
    if unexpected:
        lines.append(f"  unexpected keys ({len(unexpected)}): {_listing(unexpected)}")
    if shapes:
        lines.append(f"  shape mismatches ({len(shapes)}): {_listing(shapes, 6)}")
    if real == family or real is None:
        lines.append("  Check that the file is an official checkpoint of this family and was not saved from a "
                     "modified model (or convert with the matching family).")
    raise CheckpointError("\n".join(lines))


def strip_prefix(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Remove `prefix` from every key that has it (e.g. DataParallel's 'module.')."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}


# ------------------------------------------------------------------------------ writing into a module
ParamPath = tuple[str | int, ...]


def get_variable(module: Any, path: ParamPath) -> Any:
    """The nnx Variable at attribute/index `path` (e.g. ('encoder', 'layers', 0, 'attn', 'q', 'kernel'))."""
    node = module
    for part in path:
        node = node[part] if isinstance(part, int) else getattr(node, part)
    return node


def assign_params(module: Any, values: Mapping[ParamPath, np.ndarray], *, require_all: bool = True) -> None:
    """Write arrays into `module`'s nnx.Param variables by path, checking shapes; with require_all, every
    nnx.Param of the module must receive a value (a converter that forgets one fails loudly). All or nothing:
    on any problem the module is left unchanged."""
    problems, todo = [], []
    for path, value in values.items():
        try:
            var = get_variable(module, path)
        except (AttributeError, IndexError, KeyError, TypeError):
            problems.append(f"{'.'.join(map(str, path))}: no such parameter in the model")
            continue
        current = var.get_value()  # an array, or a ShapeDtypeStruct in an abstract (eval_shape) module
        if tuple(current.shape) != tuple(np.shape(value)):
            problems.append(f"{'.'.join(map(str, path))}: model {tuple(current.shape)} vs value "
                            f"{tuple(np.shape(value))}")
            continue
        todo.append((var, jnp.asarray(value, dtype=current.dtype)))
    if require_all:
        given = {tuple(p) for p in values}
        for path, _ in nnx.iter_graph(module):
            node = get_variable(module, path) if path else module
            if isinstance(node, nnx.Param) and tuple(path) not in given:
                problems.append(f"{'.'.join(map(str, path))}: no value given by the converter")
    if problems:
        raise CheckpointError("converting into the model failed (nothing was changed):\n  " + "\n  ".join(problems))
    for var, value in todo:
        var.set_value(value)


def build_with_params(build: Callable[[], Any], values: Mapping[ParamPath, np.ndarray], *, seed: int = 0) -> Any:
    """Build a module abstractly (no random init: a 90 M parameter model would spend most of a conversion
    drawing random numbers), fill every nnx.Param from `values` (see `assign_params`), and give it concrete
    PRNG streams derived from `seed`. Any other state must come from `values` too."""
    module = nnx.eval_shape(build)
    assign_params(module, values)
    graphdef, params, rng, rest = nnx.split(module, nnx.Param, nnx.RngState, ...)
    abstract_rest = [p for p, leaf in jax.tree_util.tree_flatten_with_path(rest)[0]
                     if isinstance(leaf, jax.ShapeDtypeStruct)]
    if abstract_rest:
        raise CheckpointError(f"the converter gave no values for non-parameter state {abstract_rest[:5]}.")
    base = jax.random.key(seed)
    leaves, treedef = jax.tree.flatten(rng)
    concrete = []
    for i, leaf in enumerate(leaves):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            key = jax.random.fold_in(base, i)
            concrete.append(jax.random.split(key, leaf.shape) if leaf.shape else key)
        else:
            concrete.append(jax.numpy.zeros(leaf.shape, leaf.dtype))
    return nnx.merge(graphdef, params, jax.tree.unflatten(treedef, concrete), rest)


def checked_encoder(state: Mapping[str, np.ndarray], cfg: Any, expected: Mapping[str, tuple[int, ...]], *,
                    ignored: Iterable[str], encoder_class: Callable[..., Any],
                    param_values: Callable[[Mapping[str, np.ndarray], Any], Mapping[ParamPath, np.ndarray]],
                    family: str, source: str) -> tuple[Any, Any]:
    """(cfg, encoder_class(cfg) holding `param_values(state, cfg)`), once `state` has every `expected` key at its
    shape and nothing else but the `ignored` classifiers (which must read cfg.dim features). family / source: as
    `check_state_dict` names them in its messages."""
    ignore = [k for k in ignored if k in state]
    check_state_dict(state, expected, family=family, source=source, ignore=ignore)
    check_dropped_classifiers(state, ignore, cfg.dim, source)
    from flax import nnx  # loads on first use, as in build_with_params

    encoder = build_with_params(lambda: encoder_class(cfg, rngs=nnx.Rngs(0)), param_values(state, cfg))
    return cfg, encoder


def torch_linear(state: Mapping[str, np.ndarray], name: str) -> tuple[np.ndarray, np.ndarray]:
    """torch Linear `name`.{weight [out, in], bias [out]} -> flax (kernel [in, out], bias [out])."""
    return np.asarray(state[f"{name}.weight"]).T, np.asarray(state[f"{name}.bias"])


def vit_linear(state: Mapping[str, np.ndarray], path: tuple, name: str) -> dict[tuple, np.ndarray]:
    """torch Linear `name` -> {path + ('kernel',): f32[in, out], path + ('bias',): f32[out]}."""
    kernel, bias = torch_linear(state, name)
    return {path + ("kernel",): kernel.astype(np.float32), path + ("bias",): bias.astype(np.float32)}


def vit_block_params(state: Mapping[str, np.ndarray], prefix: str, depth: int,
                     qkv_bias: bool) -> dict[tuple, np.ndarray]:
    """timm ViT/DeiT blocks `{prefix}blocks.{i}.*` (SSAST, PaSST) -> our TransformerBlock parameter paths."""
    f32 = lambda k: np.asarray(state[k], dtype=np.float32)  # noqa: E731
    out: dict[tuple, np.ndarray] = {}
    for i in range(depth):
        p, blk = f"{prefix}blocks.{i}.", ("blocks", i)
        for norm in ("norm1", "norm2"):
            out[blk + (norm, "scale")] = f32(p + norm + ".weight")
            out[blk + (norm, "bias")] = f32(p + norm + ".bias")
        out[blk + ("attn", "qkv", "kernel")] = f32(p + "attn.qkv.weight").T
        if qkv_bias:
            out[blk + ("attn", "qkv", "bias")] = f32(p + "attn.qkv.bias")
        out.update(vit_linear(state, blk + ("attn", "proj"), p + "attn.proj"))
        out.update(vit_linear(state, blk + ("mlp", "fc1"), p + "mlp.fc1"))
        out.update(vit_linear(state, blk + ("mlp", "fc2"), p + "mlp.fc2"))
    return out


VIT_HEAD_DIM = 64  # every official ViT/DeiT (and so SSAST, AST, PaSST) width is 64 x heads


@dataclasses.dataclass(frozen=True)
class VitLayout:
    """What a timm ViT/DeiT state dict says about its encoder: width, patch, depth, MLP ratio, qkv bias."""

    dim: int
    patch: tuple[int, int]
    depth: int
    mlp_ratio: float
    qkv_bias: bool


def vit_layout(state: Mapping[str, np.ndarray], prefix: str, *, source: str) -> VitLayout:
    """The `VitLayout` of `{prefix}patch_embed` / `{prefix}blocks.*` (SSAST/AST: prefix 'v.', PaSST: '').

    Raises CheckpointError for a patch embedding that is not [dim, 1, patch_f, patch_t].
    """
    key = f"{prefix}patch_embed.proj.weight"
    w = np.asarray(state[key])
    if w.ndim != 4 or w.shape[1] != 1:
        raise CheckpointError(f"{source}: {key} has shape {w.shape}; expected [dim, 1, patch_f, patch_t] (one input "
                              "channel).")
    dim, patch = int(w.shape[0]), (int(w.shape[2]), int(w.shape[3]))
    block = re.compile(re.escape(prefix) + r"blocks\.(\d+)\.")
    fc1 = state.get(f"{prefix}blocks.0.mlp.fc1.weight")
    return VitLayout(dim=dim, patch=patch, depth=len({int(m.group(1)) for k in state if (m := block.match(k))}),
                     mlp_ratio=float(np.shape(fc1)[0]) / dim if fc1 is not None else 4.0,
                     qkv_bias=f"{prefix}blocks.0.attn.qkv.bias" in state)


def vit_num_heads(dim: int, num_heads: int | None, *, source: str) -> int:
    """Attention heads, which the files do not store: `num_heads` checked to divide `dim`, or None -> dim / 64."""
    if num_heads is None:
        if dim % VIT_HEAD_DIM:
            raise CheckpointError(f"{source}: width {dim} is not a multiple of 64, so the number of attention heads "
                                  "cannot be inferred (ViT/DeiT use 64 per head); pass num_heads (--num-heads).")
        return dim // VIT_HEAD_DIM
    if num_heads < 1 or dim % num_heads:
        raise CheckpointError(f"{source}: width {dim} is not divisible by num_heads {num_heads}; pass a --num-heads "
                              "that divides it (the official releases use width / 64).")
    return int(num_heads)


def vit_block_shapes(prefix: str, depth: int, dim: int, hidden: int, qkv_bias: bool) -> dict[str, tuple[int, ...]]:
    """{official key: shape} of timm ViT/DeiT blocks `{prefix}blocks.{i}.*`, the keys `vit_block_params` reads."""
    d, h = dim, hidden
    e: dict[str, tuple[int, ...]] = {}
    for i in range(depth):
        p = f"{prefix}blocks.{i}."
        e.update({p + "norm1.weight": (d,), p + "norm1.bias": (d,), p + "attn.qkv.weight": (3 * d, d),
                  p + "attn.proj.weight": (d, d), p + "attn.proj.bias": (d,), p + "norm2.weight": (d,),
                  p + "norm2.bias": (d,), p + "mlp.fc1.weight": (h, d), p + "mlp.fc1.bias": (h,),
                  p + "mlp.fc2.weight": (d, h), p + "mlp.fc2.bias": (d,)})
        if qkv_bias:
            e[p + "attn.qkv.bias"] = (3 * d,)
    return e


def deit_trunk_shapes(prefix: str, cfg: Any) -> dict[str, tuple[int, ...]]:
    """{official key: shape} of the DeiT trunk SSAST/AST and PaSST share (`models.deit`): `{prefix}patch_embed.proj`,
    cls (+ dist) token, blocks, final norm; the keys `deit_trunk_params` reads.  cfg: an ASTConfig or PaSSTConfig."""
    d = cfg.dim
    e: dict[str, tuple[int, ...]] = {
        f"{prefix}patch_embed.proj.weight": (d, 1, *cfg.patch),
        f"{prefix}patch_embed.proj.bias": (d,),
        f"{prefix}cls_token": (1, 1, d),
        f"{prefix}norm.weight": (d,),
        f"{prefix}norm.bias": (d,),
    }
    if cfg.num_special == 2:
        e[f"{prefix}dist_token"] = (1, 1, d)
    e.update(vit_block_shapes(prefix, cfg.depth, d, int(d * cfg.mlp_ratio), cfg.qkv_bias))
    return e


def deit_trunk_params(state: Mapping[str, np.ndarray], prefix: str, cfg: Any) -> dict[tuple, np.ndarray]:
    """The official DeiT trunk under `prefix` -> our `DeiTEncoder` parameter paths (torch layouts transposed)."""
    f32 = lambda k: np.asarray(state[prefix + k], dtype=np.float32)  # noqa: E731
    out: dict[tuple, np.ndarray] = {
        ("patch_embed", "proj", "kernel"): f32("patch_embed.proj.weight").transpose(2, 3, 1, 0),
        ("patch_embed", "proj", "bias"): f32("patch_embed.proj.bias"),
        ("cls_token",): f32("cls_token"),
        ("norm", "scale"): f32("norm.weight"),
        ("norm", "bias"): f32("norm.bias"),
    }
    if cfg.num_special == 2:
        out[("dist_token",)] = f32("dist_token")
    out.update(vit_block_params(state, prefix, cfg.depth, cfg.qkv_bias))
    return out


def check_dropped_classifiers(state: Mapping[str, np.ndarray], dropped: Iterable[str], dim: int, source: str) -> None:
    """The classifiers a converter drops (DeiT heads the embedding never uses) must still read `dim` features:
    a `.weight` of another width means the file is not the model its other tensors describe."""
    for k in dropped:
        if k.endswith(".weight") and np.shape(state[k])[-1] != dim:
            raise CheckpointError(f"{source}: {k} has shape {np.shape(state[k])}, expected [classes, {dim}].")


def classifier_head_shapes(name: str, dim: int, classes: int) -> dict[str, tuple[int, ...]]:
    """{key: shape} of an official LayerNorm + Linear classifier `name`.0 / `name`.1 (AST mlp_head, PaSST head)."""
    return {f"{name}.0.weight": (dim,), f"{name}.0.bias": (dim,), f"{name}.1.weight": (classes, dim),
            f"{name}.1.bias": (classes,)}


def classifier_head_params(state: Mapping[str, np.ndarray], path: str, name: str) -> dict[tuple, np.ndarray]:
    """The official classifier `name` -> our ClassifierHead parameters at `path` (norm + linear)."""
    return {(path, "norm", "scale"): np.asarray(state[f"{name}.0.weight"], dtype=np.float32),
            (path, "norm", "bias"): np.asarray(state[f"{name}.0.bias"], dtype=np.float32),
            **vit_linear(state, (path, "linear"), f"{name}.1")}
