"""`audiorep leaderboard`: a results JSONL -> markdown table, static HTML page, CSV (HEAR layout too)."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    # rich and the leaderboard writer (numpy, matplotlib) load here: `audiorep --help` stays instant
    from rich.console import Console

    from audiorep.downstream.leaderboard import read_results, write_leaderboard

    console = Console()
    results = read_results(args.results)
    files = write_leaderboard(results, args.out, title=args.title)
    console.print(leaderboard_table(results, args.title))
    for kind, path in files.items():
        console.print(f"  {kind:<9} {path}", highlight=False)
    return 0


def leaderboard_table(results, title: str):
    """The leaderboard as a rich Table: one row per model, one column per task, the mean normalised score."""
    from rich.table import Table

    from audiorep.downstream.leaderboard import Board

    board = Board.from_results(results)
    table = Table(title=title)
    table.add_column("model", style="bold")
    for t in board.tasks:
        table.add_column(f"{t}\n{board.metric(t)}", justify="right")
    table.add_column("mean norm.", justify="right")
    for m in board.models:
        cells = []
        for t in board.tasks:
            r = board.cells.get((m, t))
            cells.append("–" if r is None else (f"{r.mean:.4f} ± {r.std:.4f}" if len(r.folds) > 1 else f"{r.mean:.4f}"))
        table.add_row(m, *cells, f"{board.mean_normalised(m):.3f}")
    return table


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "leaderboard", help="results JSONL -> markdown table, static HTML page, CSV (HEAR layout too)",
        description="Tabulate the latest result per (model, task) of a results store written by `audiorep probe "
                    "--results FILE`: OUT/leaderboard.md, OUT/index.html (self-contained: sortable table, "
                    "heatmap, per-task bar charts), OUT/leaderboard.csv, OUT/hear_leaderboard.csv.")
    p.add_argument("results", metavar="RESULTS", help="results JSONL file")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--title", default="audiorep leaderboard", help="page title")
    p.set_defaults(func=run)
