"""Official BEATs checkpoint (microsoft/unilm `beats/`) -> audiorep model directory.

  audiorep convert beats BEATs_iter3_plus_AS2M.pt models/beats-iter3p

An official file is `{'cfg': dict, 'model': state_dict}` (+ `label_dict` for the AudioSet fine-tuned ones).
The converter reads it safely (torch.load(weights_only=True), or the torch-free reader in `common`), builds
`BEATsConfig` from `cfg`, checks every key and shape against that config (one error listing missing,
unexpected and mis-shaped keys; a file of another family — SSAST, PaSST, a BEATs *tokenizer* — is named as
such), maps each tensor to its place in `BEATsEncoder`, and writes the directory with
`model_dir.save_model_dir` (JSON config + orbax parameters; loads without torch).

Key map (official -> ours; torch Linear weights are transposed to flax kernels):
  patch_embedding.weight [C,1,p,p]        -> patch_embedding.proj.kernel [p,p,1,C]
  layer_norm.*, post_extract_proj.*       -> layer_norm.{scale,bias}, post_extract_proj.{kernel,bias}
  encoder.pos_conv.0.{weight_g,weight_v,bias} -> pos_conv.{weight_g,weight_v,bias} (same layout)
  encoder.layer_norm.*                    -> encoder_layer_norm.*
  encoder.layers.i.self_attn.{q,k,v,out}_proj -> layers.i.attn.{q,k,v,proj}
  encoder.layers.i.self_attn.relative_attention_bias.weight (shared, saved under every layer)
                                          -> relative_attention_bias (one copy)
  encoder.layers.i.self_attn.grep_linear / grep_a [1,H,1,1] -> layers.i.grep_linear / grep_a [H]
  encoder.layers.i.{self_attn_layer_norm, fc1, fc2, final_layer_norm} -> layers.i.{norm1, mlp.fc1, mlp.fc2, norm2}
  predictor.* (fine-tuned only)           -> predictor.*
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
from audiorep.models.beats import BEATsConfig, BEATsEncoder
from audiorep.models.convert.common import (
    CheckpointError,
    ParamPath,
    build_with_params,
    check_state_dict,
    describe_family,
    detect_family,
    file_sha256,
    load_checkpoint,
    torch_linear,
)
from audiorep.models.model_dir import save_model_dir

FAMILY = "beats"
REL_BIAS = "self_attn.relative_attention_bias.weight"


def expected_shapes(cfg: BEATsConfig) -> dict[str, tuple[int, ...]]:
    """Every key of an official BEATs state dict for `cfg`, with its shape."""
    p, c, d = cfg.input_patch_size, cfg.embed_dim, cfg.encoder_embed_dim
    h, f, k = cfg.encoder_attention_heads, cfg.encoder_ffn_embed_dim, cfg.conv_pos
    out: dict[str, tuple[int, ...]] = {"patch_embedding.weight": (c, 1, p, p)}
    if cfg.conv_bias:
        out["patch_embedding.bias"] = (c,)
    out.update({"layer_norm.weight": (c,), "layer_norm.bias": (c,)})
    if c != d:
        out.update({"post_extract_proj.weight": (d, c), "post_extract_proj.bias": (d,)})
    out.update({
        "encoder.pos_conv.0.weight_g": (1, 1, k), "encoder.pos_conv.0.weight_v": (d, d // cfg.conv_pos_groups, k),
        "encoder.pos_conv.0.bias": (d,), "encoder.layer_norm.weight": (d,), "encoder.layer_norm.bias": (d,),
    })
    for i in range(cfg.encoder_layers):
        pre = f"encoder.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            out[pre + f"self_attn.{name}.weight"] = (d, d)
            out[pre + f"self_attn.{name}.bias"] = (d,)
        if cfg.relative_position_embedding:
            out[pre + REL_BIAS] = (cfg.num_buckets, h)
        if cfg.gru_rel_pos:
            out[pre + "self_attn.grep_linear.weight"] = (8, cfg.head_dim)
            out[pre + "self_attn.grep_linear.bias"] = (8,)
            out[pre + "self_attn.grep_a"] = (1, h, 1, 1)
        for norm in ("self_attn_layer_norm", "final_layer_norm"):
            out[pre + f"{norm}.weight"] = (d,)
            out[pre + f"{norm}.bias"] = (d,)
        out.update({pre + "fc1.weight": (f, d), pre + "fc1.bias": (f,), pre + "fc2.weight": (d, f),
                    pre + "fc2.bias": (d,)})
    if cfg.finetuned_model:
        out.update({"predictor.weight": (cfg.predictor_class, d), "predictor.bias": (cfg.predictor_class,)})
    return out


def shared_relative_bias(sd: Mapping[str, np.ndarray], cfg: BEATsConfig) -> np.ndarray:
    """The relative-position embedding table f32[num_buckets, H].

    Official checkpoints save the one shared table under every layer. They should all be equal; if not,
    warn and take the last layer's, which is what the official `load_state_dict` leaves in the shared module
    (it copies every layer's key into the same tensor, in layer order).
    """
    tables = [np.asarray(sd[f"encoder.layers.{i}.{REL_BIAS}"]) for i in range(cfg.encoder_layers)]
    differ = [i for i, t in enumerate(tables) if not np.array_equal(t, tables[0])]
    if differ:
        warnings.warn(f"relative_attention_bias differs between layers 0 and {differ} although the official model "
                      f"shares one table; using the last layer's, as torch's load_state_dict would.", stacklevel=2)
    return tables[-1]


def param_values(sd: Mapping[str, np.ndarray], cfg: BEATsConfig) -> dict[ParamPath, np.ndarray]:
    """Official state dict -> {our parameter path: array} (every parameter of BEATsEncoder(cfg))."""
    v: dict[ParamPath, np.ndarray] = {}

    def linear(ours: ParamPath, theirs: str) -> None:
        v[ours + ("kernel",)], v[ours + ("bias",)] = torch_linear(sd, theirs)

    def norm(ours: ParamPath, theirs: str) -> None:
        v[ours + ("scale",)], v[ours + ("bias",)] = np.asarray(sd[theirs + ".weight"]), np.asarray(sd[theirs + ".bias"])

    v[("patch_embedding", "proj", "kernel")] = np.asarray(sd["patch_embedding.weight"]).transpose(2, 3, 1, 0)
    if cfg.conv_bias:
        v[("patch_embedding", "proj", "bias")] = np.asarray(sd["patch_embedding.bias"])
    norm(("layer_norm",), "layer_norm")
    if cfg.embed_dim != cfg.encoder_embed_dim:
        linear(("post_extract_proj",), "post_extract_proj")
    for name in ("weight_g", "weight_v", "bias"):
        v[("pos_conv", name)] = np.asarray(sd[f"encoder.pos_conv.0.{name}"])
    norm(("encoder_layer_norm",), "encoder.layer_norm")
    if cfg.relative_position_embedding:
        v[("relative_attention_bias",)] = shared_relative_bias(sd, cfg)
    for i in range(cfg.encoder_layers):
        pre, ours = f"encoder.layers.{i}.", ("layers", i)
        for theirs, mine in (("q_proj", "q"), ("k_proj", "k"), ("v_proj", "v"), ("out_proj", "proj")):
            linear(ours + ("attn", mine), pre + f"self_attn.{theirs}")
        if cfg.gru_rel_pos:
            linear(ours + ("grep_linear",), pre + "self_attn.grep_linear")
            v[ours + ("grep_a",)] = np.asarray(sd[pre + "self_attn.grep_a"]).reshape(-1)
        norm(ours + ("norm1",), pre + "self_attn_layer_norm")
        linear(ours + ("mlp", "fc1"), pre + "fc1")
        linear(ours + ("mlp", "fc2"), pre + "fc2")
        norm(ours + ("norm2",), pre + "final_layer_norm")
    if cfg.finetuned_model:
        linear(("predictor",), "predictor")
    return v


def split_checkpoint(obj: Any, source: str) -> tuple[dict[str, Any], dict[str, np.ndarray], Any]:
    """An official BEATs file's (cfg, state_dict, label_dict or None), or a clear error naming what it is."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source} holds a {type(obj).__name__}, not a BEATs checkpoint dict "
                              f"({{'cfg': ..., 'model': ...}}).")
    if "model" not in obj or not isinstance(obj["model"], Mapping):
        fam = detect_family(obj.keys())
        hint = describe_family(fam) if fam not in (None, "beats") else (
            "A bare state dict has no `cfg`; give the original released file (it stores 'cfg' and 'model').")
        raise CheckpointError(f"{source} is not an official BEATs checkpoint (no 'model' state dict inside). {hint}")
    sd = {k: v for k, v in obj["model"].items()}
    fam = detect_family(sd.keys())
    if fam != FAMILY:
        raise CheckpointError(f"{source} is not a BEATs encoder checkpoint. {describe_family(fam)}")
    if "cfg" not in obj or not isinstance(obj["cfg"], Mapping):
        raise CheckpointError(f"{source} has no 'cfg' dict beside 'model'; official BEATs files always do. Give the "
                              f"released file, or save {{'cfg': cfg.__dict__, 'model': state_dict}}.")
    return dict(obj["cfg"]), sd, obj.get("label_dict")


def config_from_checkpoint(cfg_dict: Mapping[str, Any], sd: Mapping[str, np.ndarray]) -> BEATsConfig:
    """BEATsConfig from the file's cfg; `finetuned_model` follows the presence of predictor.* keys."""
    cfg = BEATsConfig.from_official(dict(cfg_dict))
    has_predictor = "predictor.weight" in sd
    if has_predictor != cfg.finetuned_model:
        warnings.warn(f"cfg says finetuned_model={cfg.finetuned_model} but the state dict "
                      f"{'has' if has_predictor else 'has no'} predictor.* keys; following the state dict.",
                      stacklevel=2)
        extra = {"finetuned_model": has_predictor}
        if has_predictor:
            extra["predictor_class"] = int(np.shape(sd["predictor.weight"])[0])
        cfg = BEATsConfig.from_dict({**cfg.to_dict(), **extra})
    return cfg


def encoder_from_checkpoint(obj: Any, *, source: str = "checkpoint") -> tuple[BEATsEncoder, dict[str, Any]]:
    """Build a BEATsEncoder holding the weights of a loaded official checkpoint.  -> (encoder, info)

    info: {'config': BEATsConfig, 'label_dict': ... or None, 'num_keys': int}.
    """
    cfg_dict, sd, label_dict = split_checkpoint(obj, source)
    cfg = config_from_checkpoint(cfg_dict, sd)
    check_state_dict(sd, expected_shapes(cfg), family="BEATs", source=source)
    encoder = build_with_params(lambda: BEATsEncoder(cfg, rngs=nnx.Rngs(0)), param_values(sd, cfg))
    return encoder, dict(config=cfg, label_dict=label_dict, num_keys=len(sd))


def convert(ckpt: str | os.PathLike, out_dir: str | os.PathLike, *, force: bool = False,
            reader: str = "auto") -> Path:
    """Convert an official BEATs .pt into a model directory that `audiorep.load(out_dir)` reads without torch.

    force: replace an existing OUT_DIR (otherwise an existing one is an error). reader: see
    `common.load_checkpoint`. Returns the directory.
    """
    ckpt, out = Path(ckpt), Path(out_dir)
    if out.exists() and not force:
        raise CheckpointError(f"{out} already exists; choose a new OUT_DIR or pass --force to replace it.")
    encoder, info = encoder_from_checkpoint(load_checkpoint(ckpt, reader=reader), source=str(ckpt))
    label_dict = info["label_dict"]
    meta = dict(source=str(ckpt.resolve()), source_sha256=file_sha256(ckpt), converter="audiorep.models.convert.beats",
                official_keys=info["num_keys"], finetuned=info["config"].finetuned_model)
    if label_dict is not None:
        meta["label_dict"] = {str(k): (v if isinstance(v, (int, float, str)) else str(v))
                              for k, v in dict(label_dict).items()}
    return save_model_dir(out, family=FAMILY, encoder=encoder, encoder_config=info["config"],
                          frontend=get_frontend("beats"), pooling="mean", meta=meta, overwrite=force)
