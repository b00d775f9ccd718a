"""`audiorep` — the command line: one module per command group (`COMMAND_MODULES` lists them in help order).

Each command module declares what it is, `COMMAND = Command(name, help, description, arguments=add_arguments,
run=run)` (a group: `subcommands=(Command(...), ...)` instead of `run`), and `build_parser` turns every declaration
into its sub-parser with `common.add_command`, the one place parsers are built. A new command: a module with its
`COMMAND`, listed in `COMMAND_MODULES`; flags that several commands take with the same meaning come from the
`common.add_*_argument` helpers. Heavy imports (jax, models, data) happen inside the command functions so
`audiorep --help` stays instant. `main` prints any `AudiorepError` (a problem with the user's input) as one line and
exits 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from audiorep.cli import (
    continual,
    convert,
    datasets,
    demo,
    embed,
    features,
    info,
    leaderboard,
    pretrain,
    probe,
    robustness,
    runtime,
    stream,
    tokens,
)
from audiorep.cli.common import add_command, print_error
from audiorep.errors import AudiorepError

COMMAND_MODULES = (info, convert, features, datasets, pretrain, tokens, embed, probe, robustness, continual, stream,
                   leaderboard, demo)
"""The command groups, in the order `audiorep --help` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audiorep",
        description="Self-supervised audio representations in JAX: pretrain, embed, probe.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        add_command(sub, module.COMMAND)
    return parser


def main(argv: list[str] | None = None, *, command: bool | None = None) -> int:
    """Run `audiorep ARGV`; returns the exit status.

    `command`: this process is the `audiorep` command (not a library caller): preload tcmalloc and keep XLA's
    compile cache. None: decided from the program name (the `audiorep` console script).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if command is None:
        command = Path(sys.argv[0]).name == "audiorep"
    if command:
        runtime.reexec_with_tcmalloc(argv)
        runtime.use_compilation_cache()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # only commands declared with extra_args (pretrain: --config.<field>=<value>) take them
        if not hasattr(args, "extra_args"):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.extra_args = extra
    try:
        return int(args.func(args) or 0)
    except AudiorepError as err:  # the user's to fix: the message names the problem and the fix
        print_error(err)
        return 2


__all__ = ["build_parser", "main"]
