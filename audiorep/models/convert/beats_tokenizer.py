"""Official BEATs tokenizer checkpoint (microsoft/unilm `beats/Tokenizers.py`) -> audiorep tokenizer directory.

  audiorep convert beats-tokenizer Tokenizer_iter3.pt tokenizers/beats-iter3

An official tokenizer file is `{'cfg': dict, 'model': state_dict}` like the encoder files, `cfg` holding the
`TokenizersConfig` fields (the encoder's plus `quant_n`, `quant_dim`). The converter reads it safely
(torch.load(weights_only=True), or the torch-free reader in `common`), builds `TokenizerConfig` from `cfg`,
checks every key and shape (one error listing missing, unexpected and mis-shaped keys; a BEATs *encoder*
file, SSAST or PaSST is named as such), maps the tensors into `AcousticTokenizer` (tokenizers/distilled.py) and
writes a tokenizer directory (tokenizers/tokenizer_dir.py; loads without torch). Its labels are the official
`extract_labels`: the BEATs fbank, the Transformer, quantize_layer, L2-normalisation, nearest codeword.

Key map (official -> ours; torch Linear weights transposed to flax kernels):
  patch_embedding.*, layer_norm.*, post_extract_proj.*, encoder.*   -> encoder.* (models/convert/beats.py's map)
  quantize_layer.0.{weight,bias}  [D, D]          -> quantize_layer.fc1.{kernel,bias}
  quantize_layer.2.{weight,bias}  [quant_dim, D]  -> quantize_layer.fc2.{kernel,bias}
  quantize.embedding.weight       [quant_n, quant_dim]  -> quantize.embedding (the codebook)
  quantize.embedding.embed_avg    [quant_n, quant_dim]  -> quantize.embed_avg
  quantize.cluster_size           [quant_n]        -> quantize.cluster_size (EMA of code counts)
  quantize.embedding.initted      [1]              -> quantize.initted (a scalar)
  quantize.embedding.cluster_size [quant_n]        -> not stored: the k-means initialisation's bin counts, which
                                                      no official forward reads after the first batch (its sum
                                                      is kept in the directory's meta)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from audiorep.audio.frontends import get_frontend
from audiorep.models.convert import beats as beats_convert
from audiorep.models.convert import common
from audiorep.models.convert.common import CheckpointError
from audiorep.tokenizers.distilled import AcousticTokenizer, TokenizerConfig
from audiorep.tokenizers.tokenizer_dir import save_tokenizer_dir

FAMILY = "beats-tokenizer"
KMEANS_COUNTS = "quantize.embedding.cluster_size"


def expected_shapes(cfg: TokenizerConfig) -> dict[str, tuple[int, ...]]:
    """Every key of an official `Tokenizers` state dict for `cfg`, with its shape."""
    d, q, k = cfg.encoder_embed_dim, cfg.quant_dim, cfg.quant_n
    out = beats_convert.expected_shapes(cfg.beats_config())
    out.update({
        "quantize_layer.0.weight": (d, d), "quantize_layer.0.bias": (d,),
        "quantize_layer.2.weight": (q, d), "quantize_layer.2.bias": (q,),
        "quantize.embedding.weight": (k, q), "quantize.embedding.embed_avg": (k, q),
        KMEANS_COUNTS: (k,), "quantize.embedding.initted": (1,), "quantize.cluster_size": (k,),
    })
    return out


def param_values(sd: Mapping[str, np.ndarray], cfg: TokenizerConfig) -> dict[common.ParamPath, np.ndarray]:
    """Official state dict -> {our variable path: array}: every nnx.Param of AcousticTokenizer(cfg) and the
    codebook state."""
    v: dict[common.ParamPath, np.ndarray] = {("encoder",) + path: value
                                      for path, value in beats_convert.param_values(sd, cfg.beats_config()).items()}
    for theirs, mine in (("quantize_layer.0", "fc1"), ("quantize_layer.2", "fc2")):
        v[("quantize_layer", mine, "kernel")], v[("quantize_layer", mine, "bias")] = common.torch_linear(sd, theirs)
    f32 = lambda key: np.asarray(sd[key], dtype=np.float32)  # noqa: E731
    v[("quantize", "embedding")] = f32("quantize.embedding.weight")
    v[("quantize", "embed_avg")] = f32("quantize.embedding.embed_avg")
    v[("quantize", "cluster_size")] = f32("quantize.cluster_size")
    v[("quantize", "initted")] = f32("quantize.embedding.initted").reshape(())
    return v


def split_checkpoint(obj: Any, source: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """An official tokenizer file's (cfg, state_dict), or a clear error naming what the file is."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source} holds a {type(obj).__name__}, not a BEATs tokenizer checkpoint dict "
                              "({'cfg': ..., 'model': ...}).")
    if "model" not in obj or not isinstance(obj["model"], Mapping):
        fam = common.detect_family(obj.keys())
        hint = common.describe_family(fam) if fam != FAMILY else (
            "A bare state dict has no `cfg`; give the original released file (it stores 'cfg' and 'model').")
        raise CheckpointError(f"{source} is not an official BEATs tokenizer checkpoint (no 'model' state dict "
                              f"inside). {hint}")
    sd = dict(obj["model"].items())
    fam = common.detect_family(sd.keys())
    if fam != FAMILY:
        raise CheckpointError(f"{source} is not a BEATs tokenizer checkpoint (no quantize.* keys). "
                              f"{common.describe_family(fam)}")
    if "cfg" not in obj or not isinstance(obj["cfg"], Mapping):
        raise CheckpointError(f"{source} has no 'cfg' dict beside 'model'; official tokenizer files always do. Give "
                              "the released file, or save {'cfg': cfg.__dict__, 'model': state_dict}.")
    return dict(obj["cfg"]), sd


def config_from_checkpoint(cfg_dict: Mapping[str, Any], source: str = "checkpoint") -> TokenizerConfig:
    """TokenizerConfig from the file's cfg (official TokenizersConfig defaults for missing fields)."""
    try:
        return TokenizerConfig.from_official(dict(cfg_dict))
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: its cfg does not describe a tokenizer audiorep can build ({err}).") from err


def tokenizer_from_checkpoint(obj: Any, *, source: str = "checkpoint") -> tuple[AcousticTokenizer, dict[str, Any]]:
    """Build an AcousticTokenizer holding the weights and codebook of a loaded official checkpoint.

    -> (tokenizer, info) with info {'config': TokenizerConfig, 'num_keys': int, 'kmeans_counts_sum': float}.
    """
    cfg_dict, sd = split_checkpoint(obj, source)
    cfg = config_from_checkpoint(cfg_dict, source)
    common.check_state_dict(sd, expected_shapes(cfg), family="BEATs tokenizer", source=source)
    if float(np.asarray(sd["quantize.embedding.initted"]).reshape(-1)[0]) == 0.0:
        warnings.warn(f"{source}: quantize.embedding.initted is 0, so its codebook was never initialised (all "
                      "labels will be the same); the official code would run k-means on its first batch.",
                      stacklevel=2)
    tokenizer = common.build_with_params(lambda: AcousticTokenizer(cfg, rngs=nnx.Rngs(0)), param_values(sd, cfg))
    info = dict(config=cfg, num_keys=len(sd), kmeans_counts_sum=float(np.asarray(sd[KMEANS_COUNTS]).sum()))
    return tokenizer, info


def convert(ckpt: str | os.PathLike, out_dir: str | os.PathLike, *, force: bool = False,
            reader: str = "auto") -> Path:
    """Convert an official BEATs tokenizer .pt into a tokenizer directory (`load_tokenizer_dir` reads it without
    torch). force: replace an existing OUT_DIR. reader: see `common.load_checkpoint`. Returns the directory."""
    ckpt, out = Path(ckpt), Path(out_dir)
    if out.exists() and not force:
        raise CheckpointError(f"{out} already exists; choose a new OUT_DIR or pass --force to replace it.")
    tokenizer, info = tokenizer_from_checkpoint(common.load_checkpoint(ckpt, reader=reader), source=str(ckpt))
    meta = dict(source=str(ckpt.resolve()), source_sha256=common.file_sha256(ckpt),
                converter="audiorep.models.convert.beats_tokenizer", official_keys=info["num_keys"],
                kmeans_init_counts_sum=info["kmeans_counts_sum"])
    return save_tokenizer_dir(out, tokenizer, config=info["config"], frontend=get_frontend("beats"), meta=meta,
                              overwrite=force)
