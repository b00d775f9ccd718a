"""`audiorep convert`: an official PyTorch checkpoint -> an audiorep model directory (a tokenizer directory for
`beats-tokenizer`)."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from audiorep.cli.common import Command, positive_int, print_error
from audiorep.paths import output_location_problem

CONVERT_FAMILIES = ("beats", "beats-tokenizer", "ssast", "passt")


def run(args: argparse.Namespace) -> int:
    """Official PyTorch checkpoint -> audiorep model or tokenizer directory (audiorep.models.convert.<family>)."""
    # the converters (numpy, jax, flax) load here: `audiorep --help` stays instant
    from audiorep.models.convert.common import CheckpointError

    out = Path(args.out_dir)
    if out.exists() and not args.force:
        print_error(f"{out} already exists; choose a new OUT_DIR or pass --force to replace it.")
        return 2
    problem = output_location_problem(out)
    if problem:
        print_error(f"OUT_DIR {problem}.")
        return 2
    module = importlib.import_module(f"audiorep.models.convert.{args.family.replace('-', '_')}")
    shape = {"num_heads": args.num_heads, "stride": tuple(args.stride) if args.stride else None,
             "num_frames": args.frames, "num_mel_bins": args.mel_bins}
    shape = {k: v for k, v in shape.items() if v is not None}
    if shape and args.family.startswith("beats"):
        print_error("--num-heads/--stride/--frames/--mel-bins are for ssast and passt files; a BEATs checkpoint "
                    "stores its whole config.")
        return 2
    try:
        path = module.convert(args.ckpt, args.out_dir, force=args.force, reader=args.reader, **shape)
    except (CheckpointError, FileNotFoundError) as err:  # a file that is not a usable checkpoint: exit 1
        print_error(err)
        return 1
    if args.family == "beats-tokenizer":
        print(f"wrote {path}  (a tokenizer directory: audiorep.tokenizers.load_tokenizer_dir({str(path)!r}))")
    else:
        print(f"wrote {path}  (load it with audiorep.load({str(path)!r}))")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("family", choices=CONVERT_FAMILIES, help="model family of the checkpoint")
    p.add_argument("ckpt", help="the official .pt/.pth file (read with weights_only safety; torch not required)")
    p.add_argument("out_dir", help="model (or tokenizer) directory to create (must not exist unless --force)")
    p.add_argument("--force", action="store_true", help="replace OUT_DIR if it exists")
    p.add_argument("--reader", choices=("auto", "torch", "builtin"), default="auto",
                   help="checkpoint reader: torch.load(weights_only=True) when installed (auto), or the built-in one")
    g = p.add_argument_group("ssast / passt: facts the official files do not store")
    g.add_argument("--num-heads", type=positive_int, help="attention heads (default: width / 64, as every DeiT/ViT)")
    g.add_argument("--stride", type=positive_int, nargs=2, metavar=("F", "T"),
                   help="patch stride: fine-tuned AST files (AST AudioSet: 10 10), PaSST s12/s14/s16 releases, or an "
                        "overlapping fine-tuning stride for SSAST pretraining files")
    g.add_argument("--frames", type=positive_int, help="input window in frames (fine-tuned AST files: e.g. 1024)")
    g.add_argument("--mel-bins", type=positive_int, help="mel bins of the input (default: from the file, else 128)")


COMMAND = Command("convert", help="official BEATs / SSAST / PaSST checkpoint -> audiorep model directory; official "
                                  "BEATs tokenizer -> tokenizer directory", arguments=add_arguments, run=run)
