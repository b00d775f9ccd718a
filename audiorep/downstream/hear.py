"""The HEAR 2021 API (hearbenchmark.com/hear-api.html) over `Embedder`: run any audiorep model in hear-eval-kit.

    hear-validator audiorep.hear -m /models/beats_iter3      # a model directory (or a registered name)

* `load_model(model_file_path='', **options) -> model` with `sample_rate`, `scene_embedding_size` and
  `timestamp_embedding_size` (ints). `model_file_path` is a model directory (`audiorep convert ...`) or a
  registered name; empty means $AUDIOREP_HEAR_MODEL, else 'beats-tiny' (random weights: only for checking
  the plumbing, a warning says so). `options` go to `audiorep.load` (layer, pooling, batch_size, ...).
  When torch is installed the model is a `torch.nn.Module` (hear-validator and hear-eval-kit require one);
  it holds no torch parameters, `.to(device)` is accepted and the work runs in JAX.
* `get_scene_embeddings(audio[n_sounds, n_samples], model) -> f32[n_sounds, scene_embedding_size]`.
* `get_timestamp_embeddings(audio, model) -> (f32[n_sounds, n_timestamps, timestamp_embedding_size],
  f32[n_sounds, n_timestamps] ms)`: one embedding per time patch, centred, regular, never past the end
  (spacing: BEATs / SSAST-patch 160 ms, SSAST-frame 20 ms, PaSST 100 ms; the validator only warns above 50 ms).

Audio is at `model.sample_rate` (the HEAR contract). Outputs have the input's kind: torch tensors on the
input's device for torch input, numpy for numpy, JAX for JAX.
"""

from __future__ import annotations

import importlib.util
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from audiorep.downstream.embed import Embedder, is_torch_tensor, load

HEAR_SAMPLE_RATES = (16000, 22050, 32000, 44100, 48000)
DEFAULT_MODEL = "beats-tiny"


class _HearModelMixin:
    """The attributes hear-eval-kit reads, forwarded to the Embedder."""

    def _setup(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.sample_rate = int(embedder.sample_rate)
        self.scene_embedding_size = int(embedder.scene_embedding_size)
        self.timestamp_embedding_size = int(embedder.timestamp_embedding_size)
        self.name = embedder.name

    def __repr__(self) -> str:
        return f"HearModel({self.embedder!r})"


class HearModel(_HearModelMixin):
    """HEAR model object used when torch is not installed."""

    def __init__(self, embedder: Embedder):
        self._setup(embedder)


_TORCH_CLASS = None


def _torch_model_class():
    """A torch.nn.Module flavour of HearModel, made on first use (torch is imported only here)."""
    global _TORCH_CLASS
    if _TORCH_CLASS is None:
        # torch only for the HEAR API's torch flavour (the hear-eval-kit's own install has it)
        import torch

        class TorchHearModel(_HearModelMixin, torch.nn.Module):
            def __init__(self, embedder: Embedder):
                torch.nn.Module.__init__(self)
                self._setup(embedder)

            def forward(self, audio):
                return get_scene_embeddings(audio, self)

        _TORCH_CLASS = TorchHearModel
    return _TORCH_CLASS


def load_model(model_file_path: str = "", **options):
    """The HEAR model for a model directory or registered name.

    Args:
      model_file_path: model directory or registered name; '' -> $AUDIOREP_HEAR_MODEL or 'beats-tiny'.
      **options: layer, pooling, batch_size, window_seconds, ... (see `audiorep.load`).
    """
    target = str(model_file_path or os.environ.get("AUDIOREP_HEAR_MODEL", "") or DEFAULT_MODEL)
    embedder = load(target, **options)
    if embedder.bundle.source == "registry":
        warnings.warn(
            f"HEAR model {target!r} is a registered architecture with random weights "
            f"({embedder.bundle.meta.get('weights', '')}); its embeddings only check the plumbing. Pass a model "
            "directory from `audiorep convert` or a training export for real results.",
            stacklevel=2,
        )
    if embedder.sample_rate not in HEAR_SAMPLE_RATES:
        raise ValueError(
            f"{target} runs at {embedder.sample_rate} Hz; HEAR accepts {HEAR_SAMPLE_RATES}. Export the model with a "
            "frontend at one of those rates."
        )
    if importlib.util.find_spec("torch") is not None:
        return _torch_model_class()(embedder)
    return HearModel(embedder)


def _embedder(model) -> Embedder:
    emb = getattr(model, "embedder", None)
    if not isinstance(emb, Embedder):
        raise TypeError(f"expected a model from audiorep.hear.load_model, got {type(model).__name__}.")
    return emb


def _check_batch(audio) -> None:
    shape = tuple(getattr(audio, "shape", ()))
    if len(shape) != 2:
        raise ValueError(f"HEAR audio must be a batch f32[n_sounds, n_samples]; got shape {shape}. "
                         "Add a batch axis for one clip: audio[None].")


def _like(x: np.ndarray, audio):
    """Return `x` (float32) as the same kind of array as `audio`."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if is_torch_tensor(audio):
        # torch only for the HEAR API's torch flavour (the hear-eval-kit's own install has it)
        import torch

        return torch.from_numpy(x).to(audio.device)
    if isinstance(audio, jax.Array):
        return jnp.asarray(x)
    return x


def get_scene_embeddings(audio, model):
    """f32[n_sounds, n_samples] at model.sample_rate -> f32[n_sounds, model.scene_embedding_size]."""
    _check_batch(audio)
    return _like(_embedder(model).scene(audio), audio)


def get_timestamp_embeddings(audio, model):
    """f32[n_sounds, n_samples] -> (f32[n_sounds, n_timestamps, D], f32[n_sounds, n_timestamps] centres in ms)."""
    _check_batch(audio)
    emb, times = _embedder(model).timestamps(audio)
    return _like(emb, audio), _like(times, audio)


__all__ = ["HearModel", "get_scene_embeddings", "get_timestamp_embeddings", "load_model"]
