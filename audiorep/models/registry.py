"""Named models, and how a name or a folder becomes a ModelBundle (frontend + encoder + pooling).

Two ways to name a model, both resolved by `get_bundle(name_or_dir)` (what `audiorep.load()` calls):

* a registered name (`list_models()`: `beats`, `ssast-patch`, `ssast-frame`, `passt-s` and their `-tiny`
  variants). A name fixes the architecture, frontend, pooling and input window; its weights are a
  *random initialisation with a fixed seed* (the same numbers on every machine).
* a model directory (model_dir.py): real weights, from `audiorep convert beats|ssast|passt CKPT OUT_DIR`
  (official checkpoints) or a training run's export (a training workdir works too: its `export/` is used).

A new named model is one `ModelSpec` in `MODELS`; a new family is one entry in families.py.
"""

from __future__ import annotations

import dataclasses
import difflib
import os

from audiorep.audio import frontends
from audiorep.models.bundle import (
    FREQUENCY_MODES,
    POOLINGS,
    ModelBundle,
    make_bundle,
    samples_for_frames,
    window_frames_for,
)
from audiorep.models.families import (
    FAMILIES,
    Family,
    ModelDirError,
    UnknownModelError,
    get_family,
    register_family,
    saved_state,
)
from audiorep.models.model_dir import (
    MODEL_JSON,
    TRAINING_EXPORT,
    flat_arrays,
    is_model_dir,
    load_model_dir,
    params_sha256,
    read_model_json,
    resolve_model_dir,
    save_model_dir,
    shape_report,
)

# Besides its own names, registry still exports those of the model-directory format (model_dir.py), bundles
# (bundle.py) and families (families.py), which lived here before they got their own modules; the package
# itself imports them from their modules.
__all__ = [
    "FAMILIES", "FREQUENCY_MODES", "MODELS", "MODEL_JSON", "POOLINGS", "TRAINING_EXPORT", "Family", "ModelBundle",
    "ModelDirError", "ModelSpec", "UnknownModelError", "build_named", "flat_arrays", "get_bundle", "get_family",
    "is_model_dir", "list_models", "load_model_dir", "model_spec", "params_sha256", "read_model_json",
    "register_family", "register_model", "resolve_model_dir", "samples_for_frames", "save_model_dir",
    "saved_state", "shape_report",
]


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
    """Add (or replace) a named model; returns it."""
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
    """The spec registered as `name`; an UnknownModelError with close matches otherwise."""
    if name not in MODELS:
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
    frontend = frontends.get_frontend(spec.frontend)
    encoder = fam.build(cfg, seed=spec.seed)
    return make_bundle(
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
