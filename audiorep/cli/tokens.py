"""`audiorep tokens`: acoustic tokens of audio (`extract`) and a BPE model over them (`bpe`).

  audiorep tokens extract --tokenizer random-projection DATA --out tokens.npz
  audiorep tokens bpe tokens.npz --vocab 4096 --out bpe.model

`extract` writes the token file of tokenizers/token_file.py; `bpe` trains tokenizers/bpe.py's model on it and
prints tokens per second of audio before and after, and the compression ratio.
"""

from __future__ import annotations

import argparse

from audiorep.cli.common import (
    Command,
    add_out_file_arguments,
    add_quiet_argument,
    nonnegative_int,
    positive_int,
    print_with_failures,
)


def extract(args: argparse.Namespace) -> int:
    """Codes of every audio file under DATA -> one token file."""
    # numpy/jax/rich and the tokenizers load here: `audiorep --help` stays instant
    from rich.console import Console
    from rich.table import Table

    from audiorep.downstream.embed import find_audio_files
    from audiorep.tokenizers.token_file import check_token_output, extract_tokens, load_labeler, save_tokens

    out = check_token_output(args.out, overwrite=args.force)  # before any work: a bad --out costs nothing
    files, root = find_audio_files(args.data)
    labeler = load_labeler(args.tokenizer)
    names = [str(f.relative_to(root)) if f.is_relative_to(root) else str(f) for f in files]
    tokens = extract_tokens(labeler, files, names=names, batch_size=args.batch_size, progress=not args.quiet)
    save_tokens(out, tokens, overwrite=args.force)
    console = Console()
    table = Table(title="audiorep tokens extract", show_header=False)
    table.add_row("tokenizer", tokens.tokenizer)
    table.add_row("clips", f"{len(tokens):,} -> {out}")
    table.add_row("audio", f"{tokens.seconds:,.1f} s at {tokens.sample_rate} Hz")
    table.add_row("codes", f"{tokens.codes.size:,} of {tokens.codebook_size} ({len(set(tokens.codes.tolist()))} used)")
    table.add_row("tokens per second", f"{tokens.tokens_per_second:.2f}  ({tokens.tokens_per_step} per time step)")
    print_with_failures(console, table, tokens.failed, label="no tokens", max_list=args.max_list, out=out)
    return 0


def bpe(args: argparse.Namespace) -> int:
    """Train BPE on a token file, write the model, print tokens/s before and after."""
    from rich.console import Console
    from rich.table import Table

    from audiorep.tokenizers.bpe import AcousticBPE, BPEError, check_model_output
    from audiorep.tokenizers.token_file import load_tokens

    out = check_model_output(args.out, overwrite=args.force)
    train = load_tokens(args.tokens)
    held_out = load_tokens(args.eval) if args.eval else None
    if held_out is not None and (held_out.tokenizer, held_out.codebook_size) != (train.tokenizer, train.codebook_size):
        raise BPEError(f"--eval {args.eval} holds codes of {held_out.tokenizer!r} ({held_out.codebook_size} codes) "
                       f"but {args.tokens} of {train.tokenizer!r} ({train.codebook_size}); extract both with the same "
                       f"--tokenizer.")
    model = AcousticBPE.train(train.sequences(), codebook_size=train.codebook_size, vocab_size=args.vocab,
                              max_piece_length=args.max_piece_length)
    rows = [(f"train ({args.tokens})", train)]
    if held_out is not None:
        rows.append((f"held out ({args.eval})", held_out))
    figures = []
    for label, tokens in rows:
        n_pieces = sum(p.size for p in model.encode_batch(tokens.sequences()))
        figures.append((label, tokens, n_pieces))
    model.save(out, overwrite=args.force)
    console = Console()
    console.print(f"wrote {out}: vocab {model.vocab_size} = {model.codebook_size} codes + {model.merges} merges + "
                  f"<unk>", highlight=False)
    table = Table(title="tokens per second of audio, before and after BPE")
    for col in ("tokens", "clips", "audio s", "codes/s", "pieces/s", "compression"):
        table.add_column(col, justify="left" if col == "tokens" else "right")
    for label, tokens, n_pieces in figures:
        table.add_row(label, f"{len(tokens):,}", f"{tokens.seconds:,.1f}", f"{tokens.tokens_per_second:.2f}",
                      f"{n_pieces / tokens.seconds:.2f}", f"{tokens.codes.size / n_pieces:.3f}x")
    console.print(table)
    return 0


def add_extract_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="+", metavar="DATA", help="audio folders and/or files")
    p.add_argument("--tokenizer", required=True, metavar="T",
                   help="a tokenizer directory (`audiorep convert beats-tokenizer`, a distilled tokenizer's export), "
                        "or random-projection[:codes=1024,seed=0,dim=16]: BEATs' iteration-1 random-projection codes "
                        "of the 16x16 patches of the 'beats' fbank (no checkpoint needed)")
    add_out_file_arguments(p, "output .npz")
    p.add_argument("--batch-size", type=positive_int, default=16, help="clips per forward pass")
    p.add_argument("--max-list", type=nonnegative_int, default=20, help="most skipped files to list on screen")
    add_quiet_argument(p)


def add_bpe_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("tokens", metavar="F", help="token file written by `audiorep tokens extract`")
    p.add_argument("--vocab", type=positive_int, required=True, metavar="N",
                   help="pieces in the model: the codebook's K codes, <unk>, and N - K - 1 merges")
    add_out_file_arguments(p, "output sentencepiece .model file", metavar="M")
    p.add_argument("--eval", default=None, metavar="F2", help="also report the compression on this held-out token file")
    p.add_argument("--max-piece-length", type=positive_int, default=16, help="most codes one piece may hold")


COMMAND = Command(
    "tokens", help="acoustic tokens of audio, and BPE over them",
    description="Discrete acoustic tokens: `extract` codes a folder of audio with a tokenizer into a token file "
                "(.npz); `bpe` trains a sentencepiece BPE model over a token file and reports how much shorter the "
                "sequences get (tokens per second of audio before and after).",
    subcommands=(
        Command("extract", help="code every audio file under DATA -> token file (.npz)",
                description="Read every audio file given or found recursively in the folders given, at the "
                            "tokenizer's rate, code it, and write one token file (np.load(path) reads it without "
                            "pickle: codes, offsets, files, durations_s, codebook_size, tokens_per_second, tokenizer, "
                            "...). Clips that give no tokens (unreadable, shorter than one token) are skipped and "
                            "listed.",
                arguments=add_extract_arguments, run=extract),
        Command("bpe", help="train BPE over a token file; print tokens/s before and after",
                description="Train a sentencepiece BPE model over the codes of a token file (each code a private-use "
                            "character, each clip a sentence, no text normalisation) and write it; every code of the "
                            "codebook is a piece, so the vocab must exceed the codebook size. Prints codes per second "
                            "of audio, BPE pieces per second and the compression ratio, on the training file and on "
                            "--eval.",
                arguments=add_bpe_arguments, run=bpe),
    ))
