"""Flax NNX encoders (BEATs, SSAST/AST, PaSST), shared layers, the model registry and converters."""
