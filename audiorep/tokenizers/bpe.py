"""Byte-pair encoding over acoustic tokens (sentencepiece): shorter sequences of the same codes, for audio LMs.

A tokenizer turns audio into codes i32[T] in [0, K) (e.g. 50 a second for BEATs' 16x16 patches). BPE merges the
most frequent adjacent pairs into new pieces, so a sequence of T codes becomes one of fewer pieces, and decoding
the pieces gives back exactly the same codes (the acoustic BPE of Shen et al., 2023, over discrete audio units).

How codes become text sentencepiece can train on: code c is the character U+E000 + c, in the Basic Multilingual
Plane's private-use area (U+E000..U+F8FF, so K <= 6400); a clip is one sentence. Training disables everything
sentencepiece does for text (normalisation is 'identity'; no dummy prefix, no whitespace splitting or removal, no
script / number / digit splitting, no byte fallback), keeps every character (character_coverage 1.0), and has no
BOS / EOS / pad pieces; id 0 is `<unk>`, which `encode` never emits.

Codes never seen in training (where we had to choose): every code 0..K-1 is made a piece of the model, by adding
each as a one-character sentence to the training input. A one-character sentence has no adjacent pair, so it
changes no merge; it only puts all K codes into the alphabet. So a model encodes any code sequence over [0, K)
-- new audio included -- and decode(encode(x)) == x always holds; the price is vocab >= K + 1 (K codes and
`<unk>`), refused with the minimum when smaller. A code outside [0, K) is refused, never mapped to `<unk>`.

The model is an ordinary sentencepiece .model file (spm_encode reads it); `AcousticBPE.load` recognises one of
ours by its settings and pieces (BPE, identity normalisation, `<unk>` at id 0, every other piece private-use
characters U+E000..U+E000+K-1 with each of the K codes a piece of its own) and refuses a text model.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

from audiorep.errors import AudiorepError
from audiorep.paths import output_file_problem, write_atomically

PRIVATE_USE_START = 0xE000
"""The character of code 0."""
MAX_CODEBOOK_SIZE = 0xF8FF - 0xE000 + 1
"""Codes the BMP private-use area holds (6400)."""
UNK_ID = 0
"""The id of `<unk>`, the one piece that is not codes."""

_NORMAL = sentencepiece_model_pb2.ModelProto.SentencePiece.NORMAL
_UNKNOWN = sentencepiece_model_pb2.ModelProto.SentencePiece.UNKNOWN
_BPE = sentencepiece_model_pb2.TrainerSpec.BPE


class BPEError(AudiorepError, ValueError):
    """An acoustic BPE model or input that cannot work: the message says which and how to fix it."""


def check_codebook_size(codebook_size: int) -> int:
    """K as an int in [2, 6400], else BPEError (the private-use area holds 6400 codes)."""
    k = int(codebook_size)
    if not 2 <= k <= MAX_CODEBOOK_SIZE:
        raise BPEError(f"codebook size {k}: acoustic BPE maps codes to the {MAX_CODEBOOK_SIZE} private-use "
                       f"characters U+E000..U+F8FF, so it needs 2 <= K <= {MAX_CODEBOOK_SIZE}; use a tokenizer with "
                       f"at most {MAX_CODEBOOK_SIZE} codes.")
    return k


def check_codes(codes, codebook_size: int, what: str = "codes") -> np.ndarray:
    """codes (any integer array-like) -> i32[T], refused (BPEError) unless 1-D integers within [0, K)."""
    arr = np.asarray(codes)
    if arr.ndim != 1:
        raise BPEError(f"{what} must be one sequence i32[T], got shape {arr.shape}; encode clips one at a time "
                       f"(encode_batch takes a list).")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise BPEError(f"{what} must be integers, got dtype {arr.dtype}.")
    if arr.size and (arr.min() < 0 or arr.max() >= codebook_size):
        bad = int(arr[(arr < 0) | (arr >= codebook_size)][0])
        raise BPEError(f"{what} hold code {bad}, outside [0, {codebook_size}) of this model's codebook; the tokens "
                       f"come from another tokenizer (train a BPE model on tokens of the same tokenizer).")
    return arr.astype(np.int32)


def codes_to_text(codes: np.ndarray) -> str:
    """i32[T] -> the string of private-use characters sentencepiece sees (code c -> chr(U+E000 + c))."""
    return (np.asarray(codes, np.int64) + PRIVATE_USE_START).astype("<u4").tobytes().decode("utf-32-le")


def text_to_codes(text: str) -> np.ndarray:
    """The inverse of `codes_to_text`: str -> i32[len(text)]."""
    return (np.frombuffer(text.encode("utf-32-le"), "<u4").astype(np.int64) - PRIVATE_USE_START).astype(np.int32)


class AcousticBPE:
    """A trained acoustic BPE model: codes i32[T] in [0, K) <-> piece ids i32[M] in [1, vocab_size).

    Build one with `AcousticBPE.train(...)` or `AcousticBPE.load(path)`; `model_proto` is the sentencepiece model
    (the bytes of the .model file).
    """

    def __init__(self, model_proto: bytes, *, source: str = "the model"):
        proto = sentencepiece_model_pb2.ModelProto()
        try:
            proto.ParseFromString(bytes(model_proto))
        except Exception:  # protobuf's DecodeError and friends: the bytes are not a model at all
            raise BPEError(f"{source} is not a sentencepiece model; give a model written by `audiorep tokens bpe` "
                           f"(AcousticBPE.save).") from None
        self.codebook_size, self.piece_codes = _check_ours(proto, source)
        self.model_proto = bytes(model_proto)
        self.processor = spm.SentencePieceProcessor(model_proto=self.model_proto)
        self._piece_lengths = np.array([len(p) for p in self.piece_codes], np.int64)

    # ------------------------------------------------------------------------------------------ training
    @classmethod
    def train(cls, sequences: Iterable, *, codebook_size: int, vocab_size: int, max_piece_length: int = 16,
              threads: int | None = None) -> AcousticBPE:
        """Train BPE on code sequences (one per clip).

        sequences: iterable of i32[T_i] codes in [0, codebook_size) (empty ones are skipped).
        vocab_size: pieces in the model: `<unk>`, the K codes, and vocab_size - K - 1 merges.
        max_piece_length: the most codes one piece may hold (sentencepiece's max_sentencepiece_length).

        Raises:
          BPEError: K outside [2, 6400], a vocab smaller than K + 1 (the minimum is named) or larger than the
            tokens support (the maximum is named), codes outside [0, K), or no code at all.
        """
        k = check_codebook_size(codebook_size)
        vocab_size = int(vocab_size)
        if vocab_size < k + 1:
            raise BPEError(f"vocab {vocab_size} is smaller than the alphabet: every one of the {k} codes is a piece, "
                           f"plus <unk>, so the vocab must be at least {k + 1}; pass --vocab {k + 1} or more "
                           f"(e.g. {2 * k} for {k - 1} merges).")
        if int(max_piece_length) < 2:
            raise BPEError(f"max_piece_length={max_piece_length}: a merged piece holds at least 2 codes.")
        texts, longest, total = [], 0, 0
        for i, seq in enumerate(sequences):
            arr = check_codes(seq, k, f"sequence {i}")
            if arr.size:
                texts.append(codes_to_text(arr))
                longest, total = max(longest, arr.size), total + arr.size
        if not total:
            raise BPEError("no codes to train on (every sequence is empty); extract tokens from audio first "
                           "(`audiorep tokens extract`).")
        texts.extend(chr(PRIVATE_USE_START + c) for c in range(k))  # the whole alphabet, without a single pair
        writer = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(texts), model_writer=writer, model_type="bpe", vocab_size=vocab_size,
                character_coverage=1.0, normalization_rule_name="identity", add_dummy_prefix=False,
                remove_extra_whitespaces=False, split_by_whitespace=False, split_by_unicode_script=False,
                split_by_number=False, split_digits=False, treat_whitespace_as_suffix=False, byte_fallback=False,
                unk_id=UNK_ID, bos_id=-1, eos_id=-1, pad_id=-1, hard_vocab_limit=True,
                max_sentencepiece_length=int(max_piece_length), max_sentence_length=4 * longest + 16,
                input_sentence_size=0, shuffle_input_sentence=False, minloglevel=2,
                num_threads=int(threads or min(8, os.cpu_count() or 1)))
        except RuntimeError as err:
            most = re.search(r"Vocabulary size too high \(\d+\)\. Please set it to a value <= (\d+)", str(err))
            if most:
                raise BPEError(f"vocab {vocab_size} is more than these {total:,} codes support: they hold at most "
                               f"{int(most.group(1)) - k - 1} distinct merges, so the vocab can be at most "
                               f"{most.group(1)}; pass a smaller --vocab, or train on more audio.") from None
            raise
        return cls(writer.getvalue(), source="the trained model")

    # ------------------------------------------------------------------------------------------ use
    @property
    def vocab_size(self) -> int:
        """Pieces, `<unk>` included (ids 0..vocab_size-1)."""
        return len(self.piece_codes)

    @property
    def merges(self) -> int:
        """Pieces of two or more codes."""
        return int((self._piece_lengths >= 2).sum())

    def piece_length(self, ids) -> np.ndarray:
        """Codes in each piece.  i32[M] -> i64[M]."""
        return self._piece_lengths[self._check_ids(ids)]

    def encode(self, codes) -> np.ndarray:
        """codes i32[T] in [0, K) -> piece ids i32[M] (M <= T), never `<unk>`."""
        return self.encode_batch([codes])[0]

    def encode_batch(self, sequences: Sequence) -> list[np.ndarray]:
        """[i32[T_i]] -> [i32[M_i]]: clips encoded in one call (sentencepiece's threads)."""
        texts = [codes_to_text(check_codes(s, self.codebook_size, f"sequence {i}")) for i, s in enumerate(sequences)]
        ids = self.processor.encode(texts, out_type=int)
        return [np.asarray(x, np.int32) for x in ids]

    def decode(self, ids) -> np.ndarray:
        """piece ids i32[M] -> codes i32[T]: the concatenated codes of the pieces (exact inverse of encode)."""
        ids = self._check_ids(ids)
        if not ids.size:
            return np.zeros(0, np.int32)
        return np.concatenate([self.piece_codes[i] for i in ids.tolist()])

    def _check_ids(self, ids) -> np.ndarray:
        arr = np.asarray(ids)
        if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
            raise BPEError(f"piece ids must be one integer sequence i32[M], got shape {arr.shape} ({arr.dtype}).")
        if arr.size and (arr.min() < 1 or arr.max() >= self.vocab_size):
            raise BPEError(f"piece id {int(arr[(arr < 1) | (arr >= self.vocab_size)][0])} is not a piece of codes "
                           f"(ids 1..{self.vocab_size - 1}; 0 is <unk>); the ids come from another model.")
        return arr.astype(np.int64)

    # ------------------------------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the sentencepiece .model file atomically (refused if it exists, unless `overwrite`)."""
        path = check_model_output(path, overwrite=overwrite)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda fh: fh.write(self.model_proto))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> AcousticBPE:
        """Read a model written by `save`; a text BPE model (or anything else) is refused with BPEError."""
        path = Path(path)
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "does not exist"
            raise BPEError(f"{path} {what}; give the .model file `audiorep tokens bpe --out` wrote.")
        return cls(path.read_bytes(), source=str(path))

    def __repr__(self) -> str:
        return f"AcousticBPE(codebook_size={self.codebook_size}, vocab_size={self.vocab_size})"


def check_model_output(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Check, before training, that `path` can take a new model file; returns it as a Path (else BPEError)."""
    path = Path(path)
    problem = output_file_problem(path, flag="--out", example="bpe.model", overwrite=overwrite, kind="model file")
    if problem:
        raise BPEError(f"{problem}.")
    return path


def _check_ours(proto, source: str) -> tuple[int, list[np.ndarray]]:
    """(K, codes of each piece) of an acoustic BPE model proto; BPEError naming what makes it someone else's."""
    text_model = (f"{source} is a sentencepiece model for text, not acoustic tokens ({{}}); train one on acoustic "
                  f"tokens with `audiorep tokens bpe`.")
    if proto.trainer_spec.model_type != _BPE:
        kind = sentencepiece_model_pb2.TrainerSpec.ModelType.Name(proto.trainer_spec.model_type).lower()
        raise BPEError(f"{source} is a sentencepiece {kind} model; acoustic token models are BPE models written by "
                       f"`audiorep tokens bpe`.")
    if proto.normalizer_spec.name != "identity" or proto.normalizer_spec.add_dummy_prefix:
        raise BPEError(text_model.format(f"it normalises its input with {proto.normalizer_spec.name!r}"))
    pieces = list(proto.pieces)
    if not pieces or pieces[UNK_ID].type != _UNKNOWN:
        raise BPEError(text_model.format("<unk> is not piece 0"))
    codes = [np.zeros(0, np.int32)]
    for i, piece in enumerate(pieces[1:], 1):
        arr = text_to_codes(piece.piece) if piece.type == _NORMAL else np.array([-1])
        if not arr.size or arr.min() < 0 or arr.max() >= MAX_CODEBOOK_SIZE:
            raise BPEError(text_model.format(f"piece {i} is {piece.piece!r}"))
        codes.append(arr)
    singles = sorted(int(c[0]) for c in codes if c.size == 1)
    k = len(singles)
    if k < 2 or singles != list(range(k)) or max(int(c.max()) for c in codes[1:]) >= k:
        raise BPEError(f"{source}: its single-code pieces are not the codes 0..K-1 (a model written by another "
                       f"program); train one with `audiorep tokens bpe`.")
    return k, codes


__all__ = ["MAX_CODEBOOK_SIZE", "PRIVATE_USE_START", "UNK_ID", "AcousticBPE", "BPEError", "check_codebook_size",
           "check_codes", "check_model_output", "codes_to_text", "text_to_codes"]
