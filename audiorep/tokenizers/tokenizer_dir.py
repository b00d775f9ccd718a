"""The tokenizer directory: the on-disk format of an acoustic tokenizer (BEATs' `AcousticTokenizer`).

Written by `audiorep convert beats-tokenizer` (an official Tokenizer_iter*.pt) and by the distilled tokenizer's
export; read by `audiorep tokens extract` and the BEATs iterations. Modelled on the model directory
(models/model_dir.py) and written the same way, atomically::

    OUT_DIR/
      audiorep_tokenizer.json   format + version, kind, tokenizer config (official TokenizersConfig names),
                                frontend config, codebook size, sha256 of the arrays, meta (source, training run)
      params/                   orbax checkpoint of the tokenizer's variables: the nnx.Param weights and the
                                codebook state (`quantize.embedding`, `cluster_size`, `embed_avg`, `initted`)

`load_tokenizer_dir` builds the tokenizer abstractly from the JSON (no random init), checks every stored array
against it (one readable list of missing, unexpected and mis-shaped arrays), restores, verifies the sha256,
and returns a `TokenizerBundle`: the tokenizer with its frontend, so audio goes in and labels come out.
Loading needs no torch.

    bundle = load_tokenizer_dir('tok')
    labels = bundle.labels_from_audio(audio)    # f32[B, samples] at bundle.frontend.sample_rate -> i32[B, N]
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from audiorep.models.families import ModelDirError, saved_state, seed_rng_state
from audiorep.models.model_dir import (
    MODEL_JSON,
    PARAMS_DIR,
    TOKENIZER_JSON,
    arrays_description,
    flat_arrays,
    frontend_from_json,
    json_dict,
    params_sha256,
    read_description,
    restore_checked,
    shape_report,
    write_checkpoint_dir,
    writer_description,
)
from audiorep.paths import output_location_problem
from audiorep.tokenizers.distilled import AcousticTokenizer, TokenizerConfig

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "TOKENIZER_JSON", "TokenizerBundle", "TokenizerDirError",
           "is_tokenizer_dir", "load_tokenizer_dir", "read_tokenizer_json", "save_tokenizer_dir"]

FORMAT_NAME = "audiorep-tokenizer"
FORMAT_VERSION = 1
KIND = "acoustic"  # BEATs' Transformer + quantize layer + NormEMA codebook (tokenizers/distilled.py)


class TokenizerDirError(ModelDirError):
    """A tokenizer directory that cannot be written or read: missing, foreign, corrupted, or not matching its config."""


def abstract_tokenizer(cfg: TokenizerConfig):
    """(graphdef, abstract saved state, abstract RNG state) of AcousticTokenizer(cfg), computing no weights."""
    return nnx.split(nnx.eval_shape(lambda: AcousticTokenizer(cfg, rngs=nnx.Rngs(0))), nnx.Not(nnx.RngState),
                     nnx.RngState)


def is_tokenizer_dir(path: str | os.PathLike) -> bool:
    """Whether `path` holds an audiorep_tokenizer.json (contents not checked)."""
    return (Path(path) / TOKENIZER_JSON).is_file()


def _config(config) -> TokenizerConfig:
    if isinstance(config, TokenizerConfig):
        return config
    try:
        return TokenizerConfig.from_dict(json_dict(config, "config"))
    except (TypeError, ValueError) as err:
        raise TokenizerDirError(f"config does not describe a tokenizer ({err}).") from err


def save_tokenizer_dir(path: str | os.PathLike, tokenizer: AcousticTokenizer, *, config, frontend,
                       meta: Mapping[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Write a tokenizer directory (JSON + orbax checkpoint of every non-RNG variable), atomically.

    Args:
      path: the directory to create (its parent is created if needed).
      tokenizer: the AcousticTokenizer whose weights and codebook state are saved.
      config: its TokenizerConfig (or that config's dict); a tokenizer built from it must have exactly the
        tokenizer's arrays (names, shapes, dtypes).
      frontend: the frontend that turns audio into the tokenizer's input (object with to_dict(), or its dict).
      meta: JSON-able facts about where the weights came from (source file and sha256, training run, step ...).
      overwrite: replace an existing tokenizer directory (removed only after the new one is complete). A path
        that exists and is not a tokenizer directory is never replaced.

    Raises:
      TokenizerDirError: the path exists (without overwrite) or is something else, cannot be created, or the
        config does not describe the tokenizer.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise TokenizerDirError(f"{path} already exists; choose a new directory or pass overwrite=True (--force) "
                                "to replace it.")
    if path.exists() and not is_tokenizer_dir(path):
        raise TokenizerDirError(f"{path} exists and is not an audiorep tokenizer directory (no {TOKENIZER_JSON}); "
                                "refusing to replace it. Choose another directory.")
    problem = output_location_problem(path)
    if problem:
        raise TokenizerDirError(f"cannot write the tokenizer directory: {problem}.")
    if not isinstance(tokenizer, AcousticTokenizer):
        raise TokenizerDirError(f"save_tokenizer_dir stores an AcousticTokenizer, got {type(tokenizer).__name__}.")
    cfg = _config(config)
    frontend_dict = json_dict(frontend, "frontend")
    frontend_from_json(frontend_dict)  # a description that cannot be loaded back is refused now
    meta_dict = json_dict(meta or {}, "meta")

    state = saved_state(tokenizer)
    _, expected, _ = abstract_tokenizer(cfg)
    report = shape_report(flat_arrays(expected), flat_arrays(state))
    if report:
        raise TokenizerDirError(f"the tokenizer's arrays do not match config:\n{report}")
    doc = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "tokenizer_config": cfg.to_dict(),
        "frontend": frontend_dict,
        "codebook_size": cfg.quant_n,
        **arrays_description(state),
        "meta": meta_dict,
        **writer_description(),
    }
    return write_checkpoint_dir(path, state, TOKENIZER_JSON, doc)


def read_tokenizer_json(path: str | os.PathLike) -> dict:
    """The checked contents of `path/audiorep_tokenizer.json` (no arrays are read)."""
    doc = read_description(
        path, what="tokenizer", json_name=TOKENIZER_JSON, format_name=FORMAT_NAME, format_version=FORMAT_VERSION,
        required=("kind", "tokenizer_config", "frontend", "params_sha256"), error=TokenizerDirError,
        file_hint=f"an official Tokenizer_iter*.pt is converted first: audiorep convert beats-tokenizer {path} "
                  "OUT_DIR.",
        missing_hint="Make one with `audiorep convert beats-tokenizer Tokenizer_iter3.pt OUT_DIR` or a tokenizer "
                     "export.",
        other_kinds={MODEL_JSON: "is an audiorep model directory (an encoder), not a tokenizer directory; give a "
                                 "directory written by `audiorep convert beats-tokenizer` or a tokenizer export."})
    if doc["kind"] != KIND:
        raise TokenizerDirError(f"{Path(path) / TOKENIZER_JSON} describes a tokenizer of kind {doc['kind']!r}; this "
                                f"audiorep reads {KIND!r} tokenizers. Upgrade audiorep.")
    return doc


@dataclasses.dataclass(frozen=True, eq=False)
class TokenizerBundle:
    """A loaded tokenizer with its frontend: audio -> labels.

    tokenizer: AcousticTokenizer. config: its TokenizerConfig. frontend: audio f32[B, samples] -> features
    f32[B, frames, mels] (audiorep.audio.frontends). meta: where the weights came from. digest: sha256 of the
    arrays. path: the directory it was loaded from (None when built in memory).
    """

    tokenizer: AcousticTokenizer
    config: TokenizerConfig
    frontend: Any
    meta: dict = dataclasses.field(default_factory=dict)
    digest: str = ""
    path: Path | None = None

    @property
    def codebook_size(self) -> int:
        return self.config.quant_n

    @property
    def sample_rate(self) -> int:
        return int(self.frontend.sample_rate)

    @functools.cached_property
    def _jitted(self):
        graphdef, state = nnx.split(self.tokenizer)
        frontend = self.frontend

        @jax.jit
        def from_features(state, feats):
            return nnx.merge(graphdef, state).labels(feats)

        @jax.jit
        def from_audio(state, audio):
            return nnx.merge(graphdef, state).labels(frontend(audio))

        return state, from_features, from_audio

    def labels(self, feats) -> jax.Array:
        """Features f32[B, frames, mels] (this bundle's frontend) -> labels i32[B, N], time-major (jitted)."""
        state, from_features, _ = self._jitted
        return from_features(state, jnp.asarray(feats, jnp.float32))

    def labels_from_audio(self, audio) -> jax.Array:
        """Audio f32[B, samples] at `sample_rate` -> labels i32[B, N] (official `extract_labels`: the frontend's
        fbank, then the tokenizer), time-major: label n is time patch n // F, frequency patch n % F."""
        audio = jnp.asarray(audio, jnp.float32)
        if audio.ndim != 2:
            raise ValueError(f"labels_from_audio takes audio f32[B, samples], got shape {audio.shape}; add a batch "
                             "axis for one clip.")
        patch = self.config.input_patch_size
        frames = self.frontend.num_frames(int(audio.shape[1]))
        if frames < patch:
            need = next(n for n in range(audio.shape[1], 100 * self.sample_rate)
                        if self.frontend.num_frames(n) >= patch)
            raise ValueError(f"{audio.shape[1]} samples give {frames} feature frames, fewer than one {patch}-frame "
                             f"patch; give clips of at least {need} samples ({need / self.sample_rate:.3f} s).")
        state, _, from_audio = self._jitted
        return from_audio(state, audio)


def load_tokenizer_dir(path: str | os.PathLike, *, verify: bool = True) -> TokenizerBundle:
    """Load a tokenizer directory written by `save_tokenizer_dir`.

    verify: recompute the arrays' sha256 and compare with the JSON (detects silent corruption).

    Raises:
      TokenizerDirError: not a tokenizer directory (an encoder's model directory is named as such), another
        format version, a config the tokenizer rejects, arrays that do not fit the config, a checksum mismatch.
    """
    path = Path(path)
    doc = read_tokenizer_json(path)
    try:
        cfg = TokenizerConfig.from_dict(dict(doc["tokenizer_config"]))
    except (TypeError, ValueError) as err:
        raise TokenizerDirError(f"{path / TOKENIZER_JSON}: tokenizer_config is not valid ({err}); re-export the "
                                "directory.") from err
    frontend = frontend_from_json(doc["frontend"])
    graphdef, abstract_state, abstract_rng = abstract_tokenizer(cfg)
    restored = restore_checked(path / PARAMS_DIR, abstract_state, "tokenizer arrays", described_by=TOKENIZER_JSON)
    digest = params_sha256(restored) if verify else doc["params_sha256"]
    if digest != doc["params_sha256"]:
        raise TokenizerDirError(
            f"{path}: the arrays' sha256 ({digest[:12]}...) differs from the one recorded in {TOKENIZER_JSON} "
            f"({str(doc['params_sha256'])[:12]}...). The checkpoint was altered or corrupted; re-export it.")
    tokenizer = nnx.merge(graphdef, restored, seed_rng_state(abstract_rng, 0))
    return TokenizerBundle(tokenizer=tokenizer, config=cfg, frontend=frontend, meta=dict(doc.get("meta") or {}),
                           digest=digest, path=path)
