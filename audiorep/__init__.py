"""audiorep: self-supervised audio representation learning in JAX/Flax.

Public API (the rest of the package is reachable but may change):
  audiorep.load(name_or_dir) -> Embedder   frozen scene / timestamp embeddings
  audiorep.list_models()                    registered model names
  audiorep.__version__
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("audiorep")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
