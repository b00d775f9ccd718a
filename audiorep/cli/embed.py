"""`audiorep embed`: scene (and timestamp) embeddings of audio files and folders -> one .npz."""

from __future__ import annotations

import argparse

from audiorep.cli.common import (
    Command,
    add_batch_size_argument,
    add_embedder_arguments,
    add_model_argument,
    add_out_file_arguments,
    add_quiet_argument,
    nonnegative_int,
    print_with_failures,
)


def run(args: argparse.Namespace) -> int:
    # rich, audiorep.load and the Embedder (jax, flax) load here: `audiorep --help` stays instant
    from rich.console import Console
    from rich.table import Table

    import audiorep
    from audiorep.downstream.embed import check_npz_output, embed_files

    console = Console(stderr=True)
    check_npz_output(args.out, overwrite=args.force)  # before loading the model: a bad --out costs nothing
    model = audiorep.load(args.model, layer=args.layer, pooling=args.pooling, batch_size=args.batch_size,
                          frequency=args.frequency)
    result = embed_files(model, args.paths, args.out, timestamps=args.timestamps, progress=not args.quiet,
                         overwrite=args.force)
    table = Table(title=f"audiorep embed: {model.name}", show_header=False)
    table.add_row("embedded", f"{len(result.files):,} files -> {result.out}")
    table.add_row("scene embedding", f"f32[{len(result.files)}, {result.dim}]  layer={model.layer} "
                                      f"pooling={model.pooling} frequency={model.frequency}")
    if args.timestamps:
        table.add_row("timestamps", f"every {model.time_resolution_ms:g} ms, D={model.timestamp_embedding_size}")
    table.add_row("time", f"{result.seconds:.1f} s ({len(result.files) / max(result.seconds, 1e-9):.1f} files/s)")
    print_with_failures(console, table, result.failed, label="unreadable", max_list=args.max_list, out=result.out)
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files and/or folders")
    add_model_argument(p)
    add_out_file_arguments(p, "output .npz")
    add_embedder_arguments(p)
    p.add_argument("--timestamps", action="store_true", help="also store timestamp embeddings (one per time patch)")
    add_batch_size_argument(p)
    p.add_argument("--max-list", type=nonnegative_int, default=20, help="most unreadable files to list on screen")
    add_quiet_argument(p)


COMMAND = Command(
    "embed", help="embed audio files or folders with a model -> .npz",
    description="Scene embeddings (and optionally timestamp embeddings) of every audio file given or found recursively "
                "in the folders given. Unreadable files are skipped and listed; when none is readable nothing is "
                "written. The .npz is read with np.load(path) (no pickle): embeddings, files, durations_s, "
                "failed_files, ...",
    arguments=add_arguments, run=run)
