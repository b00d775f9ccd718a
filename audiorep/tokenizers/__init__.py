"""Discrete acoustic tokenizers: the targets of masked token prediction (BEATs, BEST-RQ).

random_projection: BEATs iteration 1's frozen random-projection tokenizer (codes raw patches).
teacher: a later iteration's targets, k-means codes of a pretrained teacher encoder's outputs (codes features
in context). BEATs' own later tokenizers are trained by self-distillation with a VQ codebook:
vq: the NormEMA vector quantiser (official k-means init and norm-EMA codewords, straight-through, commitment
loss, optional dead-code restart); distilled: the `AcousticTokenizer` (BEATs Transformer + quantize layer + vq;
`labels(feats)` = official extract_labels) and its estimator, trained from a frozen teacher encoder by
pretrain/distill.py (the `Distillation` objective).
tokenizer_dir: the on-disk tokenizer directory (official checkpoints converted by `audiorep convert
beats-tokenizer`, distilled tokenizers' exports): `load_tokenizer_dir(path).labels_from_audio(audio)`.
token_file: codes of a folder of audio in one .npz (`audiorep tokens extract`); bpe: sentencepiece BPE over them,
an exact round trip to shorter sequences (`audiorep tokens bpe`).
"""

from audiorep.tokenizers.bpe import AcousticBPE, BPEError
from audiorep.tokenizers.distilled import (
    TOKENIZER_PRESETS,
    AcousticTokenizer,
    DistillationModel,
    Estimator,
    TokenizerConfig,
)
from audiorep.tokenizers.random_projection import RandomProjectionTokenizer
from audiorep.tokenizers.teacher import TeacherTokenizer, spherical_kmeans
from audiorep.tokenizers.token_file import (
    RandomProjectionLabeler,
    TokenError,
    TokenFile,
    extract_tokens,
    load_labeler,
    load_tokens,
    save_tokens,
)
from audiorep.tokenizers.tokenizer_dir import TokenizerBundle, load_tokenizer_dir, save_tokenizer_dir
from audiorep.tokenizers.vq import NormEMAVectorQuantizer, VQOutput

__all__ = ["TOKENIZER_PRESETS", "AcousticBPE", "AcousticTokenizer", "BPEError", "DistillationModel",
           "Estimator", "NormEMAVectorQuantizer", "RandomProjectionLabeler", "RandomProjectionTokenizer",
           "TeacherTokenizer", "TokenError", "TokenFile", "TokenizerBundle", "TokenizerConfig", "VQOutput",
           "extract_tokens", "load_labeler", "load_tokenizer_dir", "load_tokens", "save_tokenizer_dir", "save_tokens",
           "spherical_kmeans"]
