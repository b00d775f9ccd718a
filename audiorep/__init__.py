"""audiorep: self-supervised audio representation learning in JAX/Flax.

Public API (the rest of the package is reachable but may change):
  audiorep.load(name_or_dir, *, layer='last', pooling=None, batch_size=16) -> Embedder
                                            frozen scene / timestamp embeddings
  audiorep.list_models()                    registered model names
  audiorep.Embedder                         the class `load` returns
  audiorep.__version__

    import audiorep, numpy as np
    model = audiorep.load("beats-tiny")              # or a model directory from `audiorep convert`
    emb = model.scene(np.zeros((2, 16000), "f4"))    # f32[2, model.scene_embedding_size]
    seq, times_ms = model.timestamps(np.zeros((2, 16000), "f4"))

JAX and the models are imported on first use, so `import audiorep` (and `audiorep --help`) stays fast.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("audiorep")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"


def load(name_or_dir, *, layer="last", pooling=None, batch_size=16, bucket_patches=None, window_seconds=None,
         verify=True, devices=None, frequency=None):
    """An Embedder for a registered model name or a model directory.

    Args:
      name_or_dir: a name from `list_models()` (architecture with a fixed-seed random init: for tests and
        pipelines) or a model directory (`audiorep convert ...`, a training export): its weights.
      layer: 'last' | int | list of ints | 'all' (hidden states concatenated along features).
      pooling: scene pooling 'mean' | 'max' | 'mean+max' | 'mean+std' | 'mean+std+delta' | 'cls' | 'cls+mean'; None:
        the model's default.
      batch_size: chunks per forward pass.
      bucket_patches: padding granularity of short clips in time patches (None: 1/8 of the window).
      window_seconds: chunk long audio into windows shorter than the model's (None: the model's window).
      verify: check the model directory's parameter sha256.
      devices: devices that share each batch (None: all local devices; parameters are replicated).
      frequency: a time step's frequency rows 'mean' (averaged) | 'stack' (concatenated); None: the model's default.

    Returns:
      `Embedder` with `sample_rate`, `scene_embedding_size`, `timestamp_embedding_size`,
      `scene(audio, sample_rate=None)` and `timestamps(audio, sample_rate=None)`.
    """
    # imported on use: `import audiorep` stays light (no JAX until a model is loaded)
    from audiorep.downstream.embed import load as _load

    return _load(name_or_dir, layer=layer, pooling=pooling, batch_size=batch_size, bucket_patches=bucket_patches,
                 window_seconds=window_seconds, verify=verify, devices=devices, frequency=frequency)


def list_models() -> list[str]:
    """Registered model names (each also loads from a model directory path with real weights)."""
    # imported on use: `import audiorep` stays light (no JAX until a model is loaded)
    from audiorep.models.registry import list_models as _list

    return _list()


def __getattr__(name):
    if name == "Embedder":
        # imported on use: `import audiorep` stays light (no JAX until a model is loaded)
        from audiorep.downstream.embed import Embedder

        return Embedder
    raise AttributeError(f"module 'audiorep' has no attribute {name!r}")


__all__ = ["Embedder", "__version__", "list_models", "load"]
