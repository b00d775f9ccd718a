"""Argument types and choices shared by several commands, the one-line form of an error, and the list of the files a
command could not use."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

# models.bundle's POOLINGS / FREQUENCY_MODES, spelled out so building the parser imports no JAX
# (tests/test_registry.py checks they agree)
POOLINGS_CHOICES = ("mean", "max", "mean+max", "mean+std", "mean+std+delta", "cls", "cls+mean")
FREQUENCY_CHOICES = ("mean", "stack")  # models.bundle.FREQUENCY_MODES


def parse_layer(text: str):
    """'last' | 'all' | '5' | '-1' | '0,6,12' -> the Embedder's layer argument."""
    text = text.strip()
    if text in ("last", "all"):
        return text
    try:
        items = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layer {text!r}: use last, all, an index (-1) or a list (0,6,12)") from None
    return items[0] if len(items) == 1 else items


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 1")
    return value


def nonnegative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 0")
    return value


def one_line(err: BaseException | str) -> str:
    """An error's message on one line (a message that spans lines is joined with spaces)."""
    return " ".join(part.strip() for part in str(err).splitlines() if part.strip()) or type(err).__name__


def print_error(err: BaseException | str) -> None:
    """`error: <message>` on stderr, one line."""
    print(f"error: {one_line(err)}", file=sys.stderr)


def print_with_failures(console, table, failed: Sequence[tuple[str, str]], *, label: str, max_list: int,
                        out) -> None:
    """Print a rich `table` with a last row counting the files that failed (`label`), then the first `max_list`
    of them as `  label name: error` and how many more there are (the output `out` lists every one in its
    failed_files). failed: (name, error) pairs."""
    table.add_row(label, f"{len(failed)}" + (" (listed below and in failed_files)" if failed else ""))
    console.print(table)
    for name, err in failed[:max_list]:
        console.print(f"  [red]{label}[/red] {name}: {err}", highlight=False)
    if len(failed) > max_list:
        console.print(f"  ... and {len(failed) - max_list} more (see failed_files in {out})")
