"""Model families: how a family name ('beats', 'ast', 'passt') becomes a config class and an encoder class.

The lowest module of the model layer: the model-directory format (model_dir.py), bundles (bundle.py) and the
named-model registry (registry.py) all look families up here, and raise the two errors defined here.
A new family is one `register_family(Family(...))` call.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any

import jax
from flax import nnx

from audiorep.errors import AudiorepError


class ModelDirError(AudiorepError, ValueError):
    """A model directory that cannot be written or read: missing, foreign, corrupted, or not matching its config."""


class UnknownModelError(AudiorepError, KeyError):
    """A model name that is neither registered nor an existing directory."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


# What a model directory stores: every variable except PRNG state (parameters, and any buffers or batch
# statistics an encoder keeps). RNG streams (dropout) are re-seeded on load.
SAVED = nnx.Not(nnx.RngState)


def saved_state(module: nnx.Module) -> nnx.State:
    """The variables a model directory stores: all but RNG state."""
    return nnx.state(module, SAVED)


def seed_rng_state(abstract_rng, seed: int):
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


def time_patch_from_config(cfg) -> tuple[int, int]:
    """(kernel, stride) along time in frames, from `patch`/`stride` pairs (freq, time) or a square `patch_size`."""
    if hasattr(cfg, "patch") and hasattr(cfg, "stride"):
        return int(cfg.patch[1]), int(cfg.stride[1])
    size = int(getattr(cfg, "patch_size", getattr(cfg, "input_patch_size", 16)))
    return size, size


def presets_from_module(module: str) -> Callable[[], Mapping[str, Any]]:
    """A `Family.presets` callable that reads `module.PRESETS` on first use (the module is imported then)."""
    return lambda: importlib.import_module(module).PRESETS


@dataclasses.dataclass(frozen=True)
class Family:
    """One model family: where its config/encoder classes live and how its patches map to time.

    Attributes:
      name: 'beats' | 'ast' | 'passt' (also written into model directories).
      module: import path of the encoder module.
      config_class, encoder_class: class names inside `module` (`XConfig`, `XEncoder` contract).
      time_patch: cfg -> (kernel, stride) of one patch along time, in feature frames.
      presets: () -> {preset name: encoder config}, or None when the family has no named configs.
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
                f"model family {self.name!r}: {self.module} has no {err.name!r}; the family entry in "
                "audiorep/models/families.py is out of date with the encoder module."
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


def register_family(family: Family) -> Family:
    """Add (or replace) a model family; returns it so it can be used as a one-liner."""
    FAMILIES[family.name] = family
    return family


register_family(Family("beats", "audiorep.models.beats", "BEATsConfig", "BEATsEncoder", time_patch_from_config,
                       presets_from_module("audiorep.models.beats")))
register_family(Family("ast", "audiorep.models.ast", "ASTConfig", "ASTEncoder", time_patch_from_config,
                       presets_from_module("audiorep.models.ast")))
register_family(Family("passt", "audiorep.models.passt", "PaSSTConfig", "PaSSTEncoder", time_patch_from_config,
                       presets_from_module("audiorep.models.passt")))


def get_family(name: str) -> Family:
    """The registered family `name`; a ModelDirError naming the known ones otherwise."""
    if name not in FAMILIES:
        raise ModelDirError(
            f"unknown model family {name!r}; known families: {sorted(FAMILIES)}. The directory was written by a "
            "newer audiorep (upgrade) or names a family that was never registered."
        )
    return FAMILIES[name]
