"""`audiorep leaderboard`: a results JSONL -> markdown table, static HTML page, CSV (HEAR layout too)."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from audiorep.cli.common import Command, one_line


def run(args: argparse.Namespace) -> int:
    # rich and the leaderboard writer (numpy, matplotlib) load here: `audiorep --help` stays instant
    from rich.console import Console

    from audiorep.downstream.leaderboard import check_out_dir, read_results, write_leaderboard

    console = Console()
    check_out_dir(Path(args.out))
    with warnings.catch_warnings(record=True) as skipped:  # rows skipped as unreadable: one line each
        warnings.simplefilter("always")
        results = read_results(args.results)
    for w in skipped:
        print(f"warning: {one_line(w.message)}", file=sys.stderr)
    files = write_leaderboard(results, args.out, title=args.title)
    console.print(leaderboard_table(results, args.title))
    for kind, path in files.items():
        console.print(f"  {kind:<9} {path}", highlight=False)
    return 0


def leaderboard_table(results, title: str):
    """The leaderboard as a rich Table: one row per model, one column per task, the mean normalised score."""
    from rich.table import Table

    from audiorep.downstream.leaderboard import Board, format_number, format_score

    board = Board.from_results(results)
    table = Table(title=title)
    table.add_column("model", style="bold")
    for t in board.tasks:
        table.add_column(f"{t}\n{board.metric(t)}", justify="right")
    table.add_column("mean norm.", justify="right")
    for m in board.models:
        cells = [format_score(board.cells.get((m, t))) for t in board.tasks]
        table.add_row(m, *cells, format_number(board.mean_normalised(m)))
    return table


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", metavar="RESULTS", help="results JSONL file")
    p.add_argument("--out", required=True, help="output folder (created; its leaderboard files are replaced)")
    p.add_argument("--title", default="audiorep leaderboard", help="page title")


COMMAND = Command(
    "leaderboard", help="results JSONL -> markdown table, static HTML page, CSV (HEAR layout too)",
    description="Tabulate the latest result per (model, task) of a results store written by `audiorep probe --results "
                "FILE`: OUT/leaderboard.md, OUT/index.html (self-contained: sortable table, heatmap, per-task bar "
                "charts), OUT/leaderboard.csv, OUT/hear_leaderboard.csv.",
    arguments=add_arguments, run=run)
