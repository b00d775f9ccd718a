"""Discrete acoustic tokenizers: BEATs random projection, VQ codebooks, distilled tokenizers, BPE."""
