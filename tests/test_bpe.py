"""Acoustic-token BPE (tokenizers/bpe.py): exact round trip, merges of the most frequent pair, clear refusals."""

from __future__ import annotations

import functools
import io

import numpy as np
import pytest
import sentencepiece as spm
from hypothesis import given, settings
from hypothesis import strategies as st

from audiorep.tokenizers.bpe import AcousticBPE, BPEError, codes_to_text, text_to_codes

K = 32


@functools.cache
def trained() -> AcousticBPE:
    """A model trained on skewed random sequences over codes 0..19 only (codes 20..31 never occur)."""
    rng = np.random.default_rng(0)
    probs = np.r_[np.geomspace(1, 0.02, 20), np.zeros(K - 20)]
    seqs = [rng.choice(K, size=300, p=probs / probs.sum()) for _ in range(20)]
    return AcousticBPE.train(seqs, codebook_size=K, vocab_size=K + 1 + 40)


codes_lists = st.lists(st.integers(0, K - 1), max_size=200)


@settings(max_examples=60, deadline=None)
@given(codes_lists)
def test_decode_of_encode_is_the_codes_for_any_sequence_over_the_codebook(codes):
    model = trained()
    ids = model.encode(np.array(codes, np.int32))
    assert ids.size <= len(codes) and (ids >= 1).all()
    np.testing.assert_array_equal(model.decode(ids), np.array(codes, np.int32))


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 12), st.lists(st.lists(st.integers(0, 11), min_size=1, max_size=80), min_size=1, max_size=6),
       st.integers(0, 12))
def test_a_model_trained_on_any_sequences_round_trips_them(k, seqs, extra):
    seqs = [np.array(s) % k for s in seqs]
    try:
        model = AcousticBPE.train(seqs, codebook_size=k, vocab_size=k + 1 + extra)
    except BPEError as err:  # more merges asked than the pairs allow: refused, with the maximum named
        assert "can be at most" in str(err)
        return
    for seq, ids in zip(seqs, model.encode_batch(seqs)):
        np.testing.assert_array_equal(model.decode(ids), seq)


def test_codes_become_private_use_characters_and_back():
    text = codes_to_text(np.array([0, 5, 6399]))
    assert text == "\ue000\ue005\uf8ff"
    np.testing.assert_array_equal(text_to_codes(text), [0, 5, 6399])


def test_the_first_merge_is_the_most_frequent_pair():
    # (5, 7) occurs 20 times, (1, 2) 3 times: with room for one merge, the piece is (5, 7)
    seq = np.array([5, 7] * 20 + [1, 2] * 3 + [3])
    model = AcousticBPE.train([seq], codebook_size=8, vocab_size=8 + 1 + 1)
    assert model.merges == 1
    ids = model.encode(np.array([5, 7, 5, 7, 1, 2]))
    assert [model.decode([i]).tolist() for i in ids] == [[5, 7], [5, 7], [1], [2]]


def test_every_code_of_the_codebook_is_a_piece_even_when_unseen_in_training():
    model = trained()
    assert model.codebook_size == K
    unseen = np.arange(20, K, dtype=np.int32)
    np.testing.assert_array_equal(model.decode(model.encode(unseen)), unseen)


def test_bpe_compresses_a_repetitive_sequence():
    seq = np.tile(np.array([1, 2, 3, 4]), 100)
    model = AcousticBPE.train([seq], codebook_size=8, vocab_size=8 + 1 + 6)
    assert seq.size / model.encode(seq).size >= 4


def test_a_vocab_smaller_than_the_codebook_is_refused_with_the_minimum():
    with pytest.raises(BPEError, match="at least 33"):
        AcousticBPE.train([np.arange(K)], codebook_size=K, vocab_size=K)


def test_a_vocab_larger_than_the_pairs_allow_is_refused_with_the_maximum():
    with pytest.raises(BPEError, match="can be at most"):
        AcousticBPE.train([np.array([0, 1, 0, 1])], codebook_size=4, vocab_size=500)


def test_a_codebook_beyond_the_private_use_area_is_refused():
    with pytest.raises(BPEError, match="6400"):
        AcousticBPE.train([np.array([0, 1])], codebook_size=6401, vocab_size=7000)


def test_codes_outside_the_codebook_are_refused_not_mapped_to_unk():
    with pytest.raises(BPEError, match="code 32, outside"):
        trained().encode(np.array([1, 32]))
    with pytest.raises(BPEError, match="code -1, outside"):
        AcousticBPE.train([np.array([0, -1])], codebook_size=4, vocab_size=6)


def test_decode_refuses_unk_and_ids_beyond_the_vocab():
    model = trained()
    for bad in ([0], [model.vocab_size]):
        with pytest.raises(BPEError, match="is not a piece of codes"):
            model.decode(np.array(bad))


def test_a_saved_model_loads_with_the_same_pieces(tmp_path):
    model = trained()
    path = model.save(tmp_path / "bpe.model")
    again = AcousticBPE.load(path)
    assert again.vocab_size == model.vocab_size and again.codebook_size == K
    seq = np.array([3, 1, 0, 0, 2, 19, 25])
    np.testing.assert_array_equal(again.encode(seq), model.encode(seq))


def test_save_refuses_to_replace_a_file_without_overwrite(tmp_path):
    path = tmp_path / "bpe.model"
    path.write_text("keep me")
    with pytest.raises(BPEError, match="already exists"):
        trained().save(path)
    assert path.read_text() == "keep me"
    trained().save(path, overwrite=True)
    assert AcousticBPE.load(path).vocab_size == trained().vocab_size


def test_a_text_bpe_model_is_refused(tmp_path):
    writer = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(["the quick brown fox jumps over the lazy dog"] * 20),
                                   model_writer=writer, model_type="bpe", vocab_size=40, minloglevel=2)
    path = tmp_path / "text.model"
    path.write_bytes(writer.getvalue())
    with pytest.raises(BPEError, match="for text, not acoustic tokens"):
        AcousticBPE.load(path)


def test_a_file_that_is_not_a_model_is_refused(tmp_path):
    path = tmp_path / "notes.model"
    path.write_bytes(b"\xff\xfe not a model")
    with pytest.raises(BPEError, match="not a sentencepiece model"):
        AcousticBPE.load(path)
