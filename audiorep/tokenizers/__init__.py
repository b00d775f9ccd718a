"""Discrete acoustic tokenizers: the targets of masked token prediction (BEATs, BEST-RQ).

random_projection: BEATs iteration 1's frozen random-projection tokenizer (codes raw patches).
teacher: a later iteration's targets, k-means codes of a pretrained teacher encoder's outputs (codes features
in context). BEATs' own later tokenizers are trained by self-distillation with a VQ codebook (vq, distilled).
tokenizer_dir: the on-disk tokenizer directory (official checkpoints converted by `audiorep convert
beats-tokenizer`, distilled tokenizers' exports): `load_tokenizer_dir(path).labels_from_audio(audio)`.
"""

from audiorep.tokenizers.random_projection import RandomProjectionTokenizer
from audiorep.tokenizers.teacher import TeacherTokenizer, spherical_kmeans
from audiorep.tokenizers.tokenizer_dir import TokenizerBundle, load_tokenizer_dir, save_tokenizer_dir

__all__ = ["RandomProjectionTokenizer", "TeacherTokenizer", "TokenizerBundle", "load_tokenizer_dir",
           "save_tokenizer_dir", "spherical_kmeans"]
