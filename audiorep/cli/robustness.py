"""`audiorep robustness`: a task's probes scored on corrupted test audio -> a corruption x severity table, a heatmap
and a result row."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from audiorep.cli.common import Command, add_task_probe_arguments, embedder_options, print_error, task_data_root
from audiorep.paths import output_location_problem


def out_dir_for(results: str | None) -> Path:
    """Where a sweep's state and heatmap go: beside the results store (RESULTS-robustness/), else ./robustness/."""
    if results:
        path = Path(results).expanduser()
        return path.with_name(f"{path.stem}-robustness")
    return Path("robustness")


def run(args: argparse.Namespace) -> int:
    # rich, the cache, the tasks, the corruptions and the probes (JAX) load here: `audiorep --help` stays instant
    from rich.console import Console

    from audiorep.audio import corruptions
    from audiorep.cli.probe import task_reader_options
    from audiorep.downstream.cache import EmbeddingCache
    from audiorep.downstream.leaderboard import append_result
    from audiorep.downstream.robustness import parse_severities, sweep
    from audiorep.downstream.tasks import get_task, resolve_model

    console = Console(stderr=True, soft_wrap=True)
    spec = get_task(args.task)
    reader_opts = task_reader_options(spec.reader, args)
    levels = parse_severities(args.severities)  # before any work: a bad level or name is one line
    for chosen in (args.corruptions, args.train_augment):
        if chosen:
            corruptions.select(chosen)
    root = task_data_root(spec, args.data_root)
    out = Path(args.out).expanduser() if args.out else out_dir_for(args.results)
    checks = [("--out", out, "the folder the sweep's state and heatmap go in")]
    if args.results:
        checks.append(("--results", Path(args.results).expanduser(), "the JSONL file the result row is appended to"))
    if args.heatmap:
        checks.append(("--heatmap", Path(args.heatmap).expanduser(), "the heatmap PNG"))
    for flag, path, what in checks:
        wrong = (flag != "--out" and path.is_dir()) or (flag == "--out" and path.exists() and not path.is_dir())
        problem = (f"{path} is a {'folder' if path.is_dir() else 'file'}" if wrong else None) or \
            output_location_problem(path)
        if problem:
            print_error(f"{flag} {path}: {problem}; it names {what}.")
            return 2
    if args.heatmap and Path(args.heatmap).expanduser().exists() and not args.force:
        print_error(f"--heatmap {args.heatmap} exists; pass --force to replace it, or choose another path.")
        return 2
    context = {"background_dir": str(Path(args.background_dir).expanduser())} if args.background_dir else None
    start = time.time()
    model = resolve_model(args.model, **embedder_options(args))
    say = None if args.quiet else (lambda m: console.print(m, highlight=False))
    report = sweep(spec, model, root, EmbeddingCache(args.cache), corruptions=args.corruptions, severities=levels,
                   train_augment=args.train_augment, out_dir=out, heatmap=args.heatmap, grid=args.grid,
                   seed=args.seed, max_folds=args.max_folds, folds=args.folds, model_name=args.name,
                   progress=not args.quiet, log=say, reader_options=reader_opts, allow_missing=args.allow_missing,
                   context=context)
    seconds = time.time() - start
    result = report.result
    if args.results:
        append_result(args.results, result)
    Console().print(robustness_table(result))
    rob = result.extra["robustness"]
    cells = len(rob["table"]) * len(rob["severities"])
    Console().print(f"{result.metric}: clean {rob['clean']:.4f}, mean over {cells} corrupted cells {result.mean:.4f} "
                    f"(drop {rob['mean_drop']:+.3f}); {report.computed} cells computed, {cells - report.computed} "
                    f"from {report.state}; {seconds:.1f} s in all"
                    + (f", {report.cell_seconds / report.computed:.2f} s per computed cell" if report.computed else "")
                    + (f"\nheatmap: {report.heatmap}" if report.heatmap else "")
                    + (f"\nrow appended to {args.results}" if args.results else ""), highlight=False)
    return 0


def robustness_table(result):
    """A rich table of a sweep's row: a row per corruption, the clean score, the metric per severity and the mean
    drop (relative for accuracy-like metrics, absolute for error rates such as EER)."""
    from rich.table import Table

    rob = result.extra["robustness"]
    sev = [str(s) for s in rob["severities"]]
    kind = "relative drop" if result.higher_is_better else "increase"
    aug = f"; probes trained with {', '.join(rob['train_augment'])}" if rob["train_augment"] else ""
    table = Table(title=f"audiorep robustness: {result.model} on {result.task}, {result.metric}"
                        f"{'' if result.higher_is_better else ' ↓'} per corruption x severity{aug}")
    table.caption = f"drop: the mean {kind} over the severities shown"
    for col in ("family", "corruption", "levels", "clean", *[f"sev {s}" for s in sev], "drop"):
        table.add_column(col, justify="left" if col in ("family", "corruption", "levels") else "right",
                         no_wrap=col != "levels", overflow="fold")
    for name, r in sorted(rob["table"].items(), key=lambda kv: (kv[1]["family"], kv[0])):
        levels = ", ".join(f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in r["levels"])
        drops = [r["drop"][s] for s in sev]
        table.add_row(r["family"][:5], name, f"{levels.replace(', ', '/')} {r['unit']}", f"{rob['clean']:.4f}",
                      *[f"{r['values'][s]:.4f}" for s in sev], f"{sum(drops) / len(drops):+.3f}")
    return table


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_task_probe_arguments(p)
    p.add_argument("--corruptions", default="all",
                   help="all | a family (noise, modification, compression) | comma-separated names")
    p.add_argument("--severities", default="1-5", help="levels 1..5 as a range (1-5) or a list (1,3,5)")
    p.add_argument("--train-augment", default=None, metavar="FAMILY|NAMES",
                   help="train the probes on clean + corrupted training clips (one copy each, corruption and "
                        "severity drawn per clip from this set x --severities); test the other corruptions")
    p.add_argument("--background-dir", default=None,
                   help="folder of noise recordings for the background-noise corruption (e.g. Speech Commands' "
                        "_background_noise_)")
    p.add_argument("--results", default=None,
                   help="append the sweep's row to this JSONL store; state and heatmap go in RESULTS-robustness/")
    p.add_argument("--out", default=None,
                   help="folder of the sweep state and heatmap (default: beside --results, else ./robustness)")
    p.add_argument("--heatmap", default=None, help="heatmap PNG path (default: in --out, named after the sweep)")
    p.add_argument("--force", action="store_true", help="replace an existing --heatmap file")
    p.add_argument("--seed", type=int, default=0, help="seed of the probes, folds and corruptions")


COMMAND = Command(
    "robustness", help="score a task's probes on corrupted test audio: corruption x severity table + heatmap",
    description="Train the task's probes on clean embeddings (as `audiorep probe`), then score them on the test clips "
                "corrupted by each corruption at each severity (noise, modification, compression; "
                "audio/corruptions.py). Corrupted embeddings are cached per corruption x severity; finished cells are "
                "kept in a state file, so a killed sweep resumes where it stopped.",
    arguments=add_arguments, run=run)
