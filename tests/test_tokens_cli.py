"""`audiorep tokens extract | bpe` and the token file (tokenizers/token_file.py) on a few generated clips."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tone
from flax import nnx

from audiorep.audio.frontends import get_frontend
from audiorep.audio.io import load_audio, save_audio
from audiorep.cli import main
from audiorep.data.synthetic import write_corpus
from audiorep.models.beats import BEATS_TINY, BEATsEncoder
from audiorep.models.families import seed_rng_state
from audiorep.tokenizers import RandomProjectionTokenizer
from audiorep.tokenizers.bpe import AcousticBPE
from audiorep.tokenizers.distilled import TOKENIZER_TINY
from audiorep.tokenizers.token_file import (
    RandomProjectionLabeler,
    TokenError,
    extract_tokens,
    load_labeler,
    load_tokens,
    parse_random_projection,
)
from audiorep.tokenizers.tokenizer_dir import abstract_tokenizer, save_tokenizer_dir


def random_tiny_tokenizer():
    """The tiny acoustic tokenizer with random arrays, built without running its initialisers (seconds, not tens)."""
    graphdef, state, rng_state = abstract_tokenizer(TOKENIZER_TINY)
    rs = np.random.RandomState(0)
    state = jax.tree.map(lambda a: jnp.asarray(0.2 * rs.standard_normal(a.shape), a.dtype), state)
    return nnx.merge(graphdef, state, seed_rng_state(rng_state, 0))


def error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Twelve 1-s synthetic clips (one per class)."""
    root = tmp_path_factory.mktemp("synth")
    write_corpus(root, per_class=1, seconds=1.0)
    return root


@pytest.fixture(scope="module")
def token_file(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("tokens") / "tokens.npz"
    assert main(["tokens", "extract", "--tokenizer", "random-projection:codes=64", str(corpus), "--out", str(out),
                 "-q"]) == 0
    return out


def test_extract_writes_time_major_codes_of_every_clip(token_file):
    tokens = load_tokens(token_file)
    assert len(tokens) == 12 and not tokens.failed
    assert tokens.codebook_size == 64 and tokens.tokens_per_step == 8
    assert tokens.tokenizer == "random-projection:codes=64,seed=0,dim=16"
    # 1 s at 16 kHz: 98 fbank frames -> 6 time patches x 8 frequency patches
    assert np.diff(tokens.offsets).tolist() == [48] * 12
    assert tokens.tokens_per_second == pytest.approx(48.0)
    assert tokens.files == sorted(tokens.files) and tokens.files[0].endswith(".wav")


def test_the_token_file_reads_without_pickle(token_file):
    with np.load(token_file, allow_pickle=False) as z:
        assert str(z["format"]) == "audiorep-tokens" and z["codes"].dtype == np.int32


def test_bpe_prints_tokens_per_second_before_and_after_and_writes_a_model_that_round_trips(token_file, tmp_path,
                                                                                           capsys):
    out = tmp_path / "bpe.model"
    assert main(["tokens", "bpe", str(token_file), "--vocab", "100", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "codes/s" in printed and "pieces/s" in printed and "48.00" in printed
    ratio = float(printed.split("x │")[0].split()[-1])
    tokens = load_tokens(token_file)
    model = AcousticBPE.load(out)
    pieces = model.encode_batch(tokens.sequences())
    assert ratio == pytest.approx(tokens.codes.size / sum(p.size for p in pieces), abs=1e-3) and ratio > 1
    for seq, ids in zip(tokens.sequences(), pieces):
        np.testing.assert_array_equal(model.decode(ids), seq)


def test_bpe_reports_a_held_out_file(token_file, tmp_path, capsys):
    assert main(["tokens", "bpe", str(token_file), "--vocab", "80", "--out", str(tmp_path / "m.model"),
                 "--eval", str(token_file)]) == 0
    assert "held out" in capsys.readouterr().out


def test_random_projection_codes_are_the_labels_a_beats_encoder_is_pretrained_on():
    # configs/beats_iter.py's iteration 1: 1024 codes of 16 dimensions, seed 0, raw patches in the encoder's order
    encoder = nnx.eval_shape(lambda: BEATsEncoder(BEATS_TINY, rngs=nnx.Rngs(0)))  # patches() reads only the config
    frontend = get_frontend("beats")
    audio = np.stack([tone(440, 1.3), 0.3 * tone(2000, 1.3) + 0.1 * tone(90, 1.3)])
    objective_labels = RandomProjectionTokenizer(in_dim=256, codebook_size=1024, code_dim=16, seed=0)(
        encoder.patches(frontend(audio)))
    np.testing.assert_array_equal(RandomProjectionLabeler().labels_from_audio(audio), objective_labels)


def test_a_clip_padded_in_a_batch_gets_the_codes_it_gets_alone(tmp_path):
    short, long = tmp_path / "a.wav", tmp_path / "b.wav"
    save_audio(short, tone(300, 0.7), 16000)
    save_audio(long, tone(900, 2.3) + 0.1 * tone(200, 2.3), 16000)
    labeler = RandomProjectionLabeler(codebook_size=64)
    together = extract_tokens(labeler, [short, long], batch_size=2)
    alone = extract_tokens(labeler, [short], batch_size=1)
    assert together.clip(0).size == labeler.num_tokens(int(0.7 * 16000)) == 32
    np.testing.assert_array_equal(together.clip(0), alone.clip(0))


@pytest.mark.slow  # a tokenizer directory written and read, two compiles of the Transformer tokenizer
def test_a_tokenizer_directory_codes_each_clip_as_it_codes_the_clip_alone(tmp_path):
    tok_dir = tmp_path / "tok"
    save_tokenizer_dir(tok_dir, random_tiny_tokenizer(), config=TOKENIZER_TINY, frontend=get_frontend("beats"))
    waves = {"a.wav": tone(300, 0.6), "b.wav": tone(700, 1.1), "c.wav": tone(500, 1.1) + 0.2 * tone(90, 1.1)}
    for name, wave in waves.items():
        save_audio(tmp_path / name, wave, 16000)
    labeler = load_labeler(str(tok_dir))  # what `tokens extract --tokenizer DIR` uses
    tokens = extract_tokens(labeler, [tmp_path / n for n in waves], names=list(waves), batch_size=3)
    assert tokens.files == ["a.wav", "b.wav", "c.wav"] and tokens.codebook_size == TOKENIZER_TINY.quant_n
    read = {n: load_audio(tmp_path / n, 16000)[0] for n in waves}
    # the 0.6-s clip is never padded to its 1.1-s neighbours' length: its codes are those of the clip alone
    np.testing.assert_array_equal(tokens.clip(0), np.asarray(labeler.labels_from_audio(read["a.wav"][None]))[0])
    both = np.asarray(labeler.labels_from_audio(np.stack([read["b.wav"], read["c.wav"]])))
    np.testing.assert_array_equal(np.stack([tokens.clip(1), tokens.clip(2)]), both)
    assert tokens.clip(0).size == labeler.num_tokens(read["a.wav"].size) == 3 * 8


def test_a_clip_shorter_than_one_token_is_listed_not_coded(tmp_path, capsys):
    save_audio(tmp_path / "ok.wav", tone(440, 1.0), 16000)
    save_audio(tmp_path / "blip.wav", tone(440, 0.1), 16000)
    out = tmp_path / "t.npz"
    assert main(["tokens", "extract", "--tokenizer", "random-projection", str(tmp_path), "--out", str(out),
                 "-q"]) == 0
    tokens = load_tokens(out)
    assert tokens.files == ["ok.wav"] and tokens.failed[0][0] == "blip.wav"
    assert "shorter than one token" in capsys.readouterr().out


def test_extract_of_an_empty_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["tokens", "extract", "--tokenizer", "random-projection", str(tmp_path / "empty"), "--out",
                 str(tmp_path / "t.npz"), "-q"]) == 2
    assert "no audio files" in error_line(capsys)
    assert not (tmp_path / "t.npz").exists()


def test_extract_refuses_to_replace_a_file_without_force(corpus, tmp_path, capsys):
    out = tmp_path / "t.npz"
    out.write_bytes(b"the user's file")
    assert main(["tokens", "extract", "--tokenizer", "random-projection", str(corpus), "--out", str(out), "-q"]) == 2
    assert "already exists" in error_line(capsys) and out.read_bytes() == b"the user's file"


def test_extract_refuses_an_output_that_is_not_npz(corpus, tmp_path, capsys):
    assert main(["tokens", "extract", "--tokenizer", "random-projection", str(corpus), "--out",
                 str(tmp_path / "t.txt"), "-q"]) == 2
    assert ".npz name" in error_line(capsys)


def test_extract_names_a_missing_tokenizer_directory(corpus, tmp_path, capsys):
    assert main(["tokens", "extract", "--tokenizer", str(tmp_path / "nope"), str(corpus), "--out",
                 str(tmp_path / "t.npz"), "-q"]) == 2
    assert "no such tokenizer directory" in error_line(capsys)


def test_a_random_projection_spec_with_an_unknown_option_is_refused():
    assert parse_random_projection("random-projection:codes=256,seed=3") == RandomProjectionLabeler(256, seed=3)
    with pytest.raises(TokenError, match="options are codes=N"):
        parse_random_projection("random-projection:size=256")


def test_bpe_of_a_missing_file_is_one_line(tmp_path, capsys):
    assert main(["tokens", "bpe", str(tmp_path / "none.npz"), "--vocab", "100", "--out", str(tmp_path / "m")]) == 2
    assert "does not exist" in error_line(capsys)


def test_bpe_refuses_a_file_that_is_not_a_token_file(tmp_path, capsys):
    emb = tmp_path / "emb.npz"
    np.savez(emb, embeddings=np.zeros((2, 3), np.float32))
    text = tmp_path / "notes.npz"
    text.write_text("not an archive")
    for path, words in ((emb, "not a token file (no format"), (text, "not a NumPy .npz")):
        assert main(["tokens", "bpe", str(path), "--vocab", "100", "--out", str(tmp_path / "m.model")]) == 2
        assert words in error_line(capsys)
    assert not (tmp_path / "m.model").exists()


def test_bpe_refuses_a_vocab_smaller_than_the_codebook(token_file, tmp_path, capsys):
    assert main(["tokens", "bpe", str(token_file), "--vocab", "64", "--out", str(tmp_path / "m.model")]) == 2
    assert "must be at least 65" in error_line(capsys)
    assert not (tmp_path / "m.model").exists()


def test_bpe_refuses_to_replace_a_model_without_force(token_file, tmp_path, capsys):
    out = tmp_path / "m.model"
    out.write_text("keep")
    assert main(["tokens", "bpe", str(token_file), "--vocab", "100", "--out", str(out)]) == 2
    assert "already exists" in error_line(capsys) and out.read_text() == "keep"
