"""Discrete acoustic tokenizers: the targets of masked token prediction (BEATs, BEST-RQ).

random_projection: BEATs iteration 1's frozen random-projection tokenizer (codes raw patches).
teacher: a later iteration's targets, k-means codes of a pretrained teacher encoder's outputs (codes features
in context). BEATs' own later tokenizers are trained by self-distillation with a VQ codebook; not built.
"""

from audiorep.tokenizers.random_projection import RandomProjectionTokenizer
from audiorep.tokenizers.teacher import TeacherTokenizer, spherical_kmeans

__all__ = ["RandomProjectionTokenizer", "TeacherTokenizer", "spherical_kmeans"]
