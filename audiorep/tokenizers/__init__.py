"""Discrete acoustic tokenizers: the targets of masked token prediction (BEATs, BEST-RQ).

random_projection: BEATs iteration 1's frozen random-projection tokenizer. The learned tokenizers of later
BEATs iterations (VQ codebook, self-distilled tokenizer) are not built yet.
"""

from audiorep.tokenizers.random_projection import RandomProjectionTokenizer

__all__ = ["RandomProjectionTokenizer"]
