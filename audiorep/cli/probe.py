"""`audiorep probe`: embed a task's data with a model and train HEAR-style probes -> a score table (and a row)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from audiorep.cli.common import (
    GRID_CHOICES,
    Command,
    add_task_probe_arguments,
    embedder_options,
    positive_int,
    print_error,
    task_data_root,
)
from audiorep.paths import output_location_problem


def run(args: argparse.Namespace) -> int:
    # rich, the cache, the tasks and the probes (jax, flax, optax) load here: `audiorep --help` stays instant
    from rich.console import Console
    from rich.table import Table

    from audiorep.downstream.cache import EmbeddingCache
    from audiorep.downstream.leaderboard import append_result
    from audiorep.downstream.tasks import get_task, resolve_model
    from audiorep.downstream.tasks import run as run_task

    console = Console(stderr=True, soft_wrap=True)  # log lines hold paths: never broken mid-path
    spec = get_task(args.task)
    reader_opts = task_reader_options(spec.reader, args)  # before any work: a bad option is one line
    song_task, chunking = song_chunking(spec, args)
    semi = semisup_options(spec, args, song_task)  # before any work: bad methods or fractions are one line
    root = task_data_root(spec, args.data_root)
    if args.results:  # the row is appended after minutes of work: check where it goes first
        results = Path(args.results).expanduser()
        problem = (f"{results} is a folder" if results.is_dir() else None) or output_location_problem(results)
        if problem:
            print_error(f"--results {args.results}: {problem}; it names the JSONL file the result row is appended to.")
            return 2
    scores_dir = None
    if args.results and spec.positive is not None:  # a detection task: its scores and plots go beside the store
        from audiorep.downstream.plots import scores_dir_for

        scores_dir = scores_dir_for(results)
        problem = (f"{scores_dir} is a file" if scores_dir.exists() and not scores_dir.is_dir() else None) or \
            output_location_problem(scores_dir)
        if problem:
            print_error(f"--results {args.results}: {problem}; the detection scores and plots go in that folder. "
                        "Move the file or choose another --results.")
            return 2
    if args.save_head:  # the head is saved after the probes ran: check its folder first
        from audiorep.downstream.heads import check_head_dir

        check_head_dir(args.save_head, overwrite=args.force)
        if args.probe != "mlp" or song_task or args.model.startswith("logmel"):
            why = ("a kNN probe keeps no trained head" if args.probe != "mlp" else
                   f"{spec.name} trains song-level heads over chunks" if song_task else
                   "the log-mel baseline is not a model `audiorep stream` can load")
            print_error(f"--save-head: {why}; leave --save-head out.")
            return 2
    start = time.time()
    model = resolve_model(args.model, **embedder_options(args))
    say = None if args.quiet else (lambda m: console.print(m, highlight=False))
    if song_task:  # a duration x pooling table and one result row per duration
        return run_songs_command(args, spec, model, root, reader_opts, say, chunking)
    if semi is not None:  # a method x labelled-fraction table, the fraction plot, one row per cell
        return run_semisup_command(args, spec, model, root, reader_opts, say, semi)
    heads = [] if args.save_head else None
    result = run_task(spec, model, root, EmbeddingCache(args.cache), grid=args.grid, probe=args.probe,
                      seed=args.seed, max_folds=args.max_folds, model_name=args.name, progress=not args.quiet, log=say,
                      repeats=args.repeats, allow_missing=args.allow_missing, scores_dir=scores_dir,
                      reader_options=reader_opts, protocol=args.protocol, folds=args.folds, heads=heads)
    seconds = time.time() - start
    if heads:
        saved = save_probe_head(args, model, result, heads[0])
        if say:
            say(f"head of split {heads[0]['split']} saved to {saved} (`audiorep stream --model {args.model} --head "
                f"{saved}`)")
    if args.results:
        append_result(args.results, result)
    table = Table(title=f"audiorep probe: {result.model} on {result.task}")
    table.add_column("", style="bold")
    table.add_column("value", justify="left")
    table.add_row(result.metric, f"[bold green]{result.mean:.4f}[/] ± {result.std:.4f}" if len(result.folds) > 1
                  else f"[bold green]{result.mean:.4f}[/]")
    table.add_row("per split", "  ".join(f"{n}: {v:.4f}" for n, v in zip(result.extra["splits"], result.folds)))
    for k, v in result.scores.items():
        if k != result.metric:
            table.add_row(k, f"{v:.4f}")
    sizes = result.extra["sizes"][0]
    table.add_row("data", f"{result.extra['classes']} classes; train/val/test {sizes['train']}/{sizes['validation']}"
                          f"/{sizes['test']} (split 1); embedding dim {result.extra['embedding_dim']}")
    files = result.extra.get("files")
    if files and files["missing"]:
        table.add_row("files", f"[bold yellow]{files['present']:,} of {files['expected']:,} present, "
                               f"{files['missing']:,} missing[/] (recorded in the result row)")
    sel = result.extra["selected"]
    repeats = result.grid.get("repeats", 1)
    table.add_row("probe", f"{result.probe}, grid {result.grid.get('name', '')}"
                           f"{f' x {repeats} repeats' if repeats > 1 else ''}, seed {result.seed}; selected "
                           f"{short_selection(sel[0])}" + (f" (+{len(sel) - 1} more splits)" if len(sel) > 1 else ""))
    table.add_row("time", f"{seconds:.1f} s")
    if args.results:
        table.add_row("results", str(args.results))
    if "detection" in result.extra:
        table.add_row("DET / scores", str(Path(result.extra["detection"]["det_png"]).parent))
    Console().print(table)
    for extra_table in (protocol_table(result), groups_table(result)):
        if extra_table is not None:
            Console().print(extra_table)
    return 0


def save_probe_head(args: argparse.Namespace, model, result, trained: dict) -> Path:
    """Save the selected probe of the first split (trained on its training split) into --save-head."""
    from audiorep.downstream.heads import Head, model_of

    head = Head.from_probe(trained["head"], classes=trained["classes"], positive=trained["positive"],
                           multilabel=trained["multilabel"], model=model_of(model),
                           info={"task": result.task, "split": trained["split"], "crop_s": trained["crop_s"],
                                 "selected": result.extra["selected"][0], "seed": args.seed, "grid": args.grid})
    return head.save(args.save_head, overwrite=args.force)


# --flag -> the reader option it sets, for the tasks whose reader takes it
READER_FLAGS = {"bonafide_root": ("bonafide_root",), "train_root": ("train_root",),
                "group_regex": ("group_regex", "speaker_regex")}


def task_reader_options(reader: str, args: argparse.Namespace) -> dict:
    """Reader options from -o KEY=VALUE and the --bonafide-root / --train-root / --group-regex shortcuts
    (DatasetError naming the valid options when the task's reader takes none of that name)."""
    from audiorep.cli.datasets import reader_options
    from audiorep.data.sources import READERS, DatasetError

    options = reader_options(reader, args.option)
    for flag, names in READER_FLAGS.items():
        value = getattr(args, flag, None)
        if value is None:
            continue
        name = next((n for n in names if n in READERS[reader].options), None)
        if name is None:
            raise DatasetError(f"--{flag.replace('_', '-')} does not apply to the {reader} reader (its options are "
                               f"{sorted(READERS[reader].options)}); leave it out.")
        options[name] = str(Path(value).expanduser()) if flag.endswith("root") else value
    return options


def protocol_table(result):
    """In-domain and cross-domain scores side by side per held-out value, with the gap (None without a protocol)."""
    from rich.table import Table

    proto = result.extra.get("protocol")
    if not proto:
        return None
    arrow = "" if result.higher_is_better else " ↓"
    table = Table(title=f"{proto['name']}: {result.metric}{arrow} per held-out {proto['column']} "
                        "(gap = how much worse cross-domain is)")
    for col in (proto["column"], "in-domain", "cross-domain", "gap", "test clips"):
        table.add_column(col, justify="left" if col == proto["column"] else "right")
    for r in proto["rows"]:
        note = " (file split)" if r["unit"] == "file" else ""
        table.add_row(f"{r['held_out']}{note}", f"{r['in_domain']:.4f}", f"{r['cross_domain']:.4f}",
                      f"{r['gap']:+.4f}", str(r["test"]))
    table.add_row("[bold]mean[/]", f"{proto['in_domain_mean']:.4f}", f"{proto['cross_domain_mean']:.4f}",
                  f"{proto['gap_mean']:+.4f}", "")
    for value, why in proto.get("skipped", {}).items():
        table.add_row(f"[dim]{value}[/]", "", "", "", f"[dim]not held out: {why}[/]")
    return table


def groups_table(result):
    """The metric's worst group and max-min gap per metadata column (None when the data has no groups)."""
    from rich.table import Table

    from audiorep.downstream.leaderboard import higher_is_better

    groups = result.extra.get("groups")
    if not groups:
        return None
    table = Table(title="per group (test scores; mean over splits)")
    for col in ("column", "metric", "groups", "worst group", "worst", "best", "gap"):
        table.add_column(col, justify="left" if col in ("column", "worst group") else "right")
    for column, rep in groups.items():
        values = rep["per_group"]
        if not values:
            continue
        best = (max if higher_is_better(rep["metric"]) else min)(values.values())
        table.add_row(column, rep["metric"], str(len(values)), str(rep["worst_group"]), f"{rep['worst']:.4f}",
                      f"{best:.4f}", f"{rep['gap']:.4f}")
    return table


def song_chunking(spec, args: argparse.Namespace):
    """(is `spec` a song task, its Chunking from --chunk-seconds / --hop-seconds / --durations), checked before any
    work; those flags on another task are refused."""
    from audiorep.downstream.tasks.songs import Chunking, SongTaskSpec, parse_durations
    from audiorep.downstream.tasks.splits import TaskError

    given = [f for f in ("chunk_seconds", "hop_seconds", "durations") if getattr(args, f) is not None]
    if not isinstance(spec, SongTaskSpec):
        if given:
            raise TaskError(f"--{given[0].replace('_', '-')} applies to song tasks (sonics), not {spec.name}; "
                            "leave it out.")
        return False, None
    if getattr(args, "protocol", None) not in (None, "in-domain"):
        raise TaskError(f"{spec.name} is scored on its official split; --protocol {args.protocol} does not apply "
                        "(the per-generator and seen/unseen-artist scores are in every row). Leave it out.")
    if args.probe != "mlp":
        raise TaskError(f"{spec.name} trains song-level heads (mean, max, attention pooling over a song's chunks); "
                        f"--probe {args.probe} does not apply. Leave it out.")
    base = spec.chunking
    chunk = base.chunk_s if args.chunk_seconds is None else args.chunk_seconds
    hop = args.hop_seconds if args.hop_seconds is not None else (base.hop_s if args.chunk_seconds is None else None)
    durations = base.durations if args.durations is None else parse_durations(args.durations)
    return True, Chunking(chunk, hop, durations)


def run_songs_command(args, spec, model, root, reader_opts, say, chunking) -> int:
    """`audiorep probe` on a song task: train song heads per duration, print the duration x pooling table and the
    per-generator scores, append one result row per duration."""
    from rich.console import Console
    from rich.table import Table

    from audiorep.downstream.cache import EmbeddingCache
    from audiorep.downstream.leaderboard import append_result
    from audiorep.downstream.tasks.songs import run_songs

    start = time.time()
    report = run_songs(spec, model, root, EmbeddingCache(args.cache), chunking=chunking, grid=args.grid,
                       seed=args.seed, repeats=args.repeats, model_name=args.name, progress=not args.quiet, log=say,
                       reader_options=reader_opts, allow_missing=args.allow_missing)
    seconds = time.time() - start
    if args.results:
        for result in report.results:
            append_result(args.results, result)
    first = report.results[0]
    window = (f"chunks of {chunking.chunk_s:g} s every {chunking.hop:g} s" if chunking.chunk_s
              else "one window per duration")
    table = Table(title=f"audiorep probe: {first.model} on {spec.name}, first N seconds of each song ({window}); "
                        "* = pooling selected on validation F1")
    for col in ("duration", "pooling", "F1", "sensitivity", "specificity", "ROC-AUC", "EER", "val F1"):
        table.add_column(col, justify="left" if col in ("duration", "pooling") else "right",
                         no_wrap=col in ("duration", "pooling"))
    for row in report.table:
        mark = "*" if row["selected"] else " "
        cells = [f"{row[k]:.4f}" for k in ("f1", "sensitivity", "specificity", "roc_auc", "eer", "val_f1")]
        table.add_row(row["duration"], f"{row['pooling']} {mark}",
                      *([f"[bold green]{cells[0]}[/]"] + cells[1:] if row["selected"] else cells))
    Console().print(table)
    primary = report.primary
    gens = Table(title=f"per generator ({primary.task}: sensitivity on its fake songs; ROC-AUC / EER against all "
                       "real test songs)")
    for col in ("generator", "songs", "sensitivity", "ROC-AUC", "EER"):
        gens.add_column(col, justify="left" if col == "generator" else "right")
    for gen, g in primary.extra["per_generator"].items():
        gens.add_row(gen, str(g["n"]), f"{g['sensitivity']:.4f}", f"{g['roc_auc']:.4f}", f"{g['eer']:.4f}")
    Console().print(gens)
    groups = groups_table(primary)
    if groups is not None:
        Console().print(groups)
    sizes = first.extra["sizes"][0]
    Console().print(f"data: {sizes['train']}/{sizes['validation']}/{sizes['test']} songs train/val/test "
                    f"({primary.extra['songs']['split']}); embedding dim {first.extra['embedding_dim']}; "
                    f"{seconds:.1f} s" + (f"; {len(report.results)} rows appended to {args.results}" if args.results
                                          else ""), highlight=False)
    return 0


def semisup_options(spec, args: argparse.Namespace, song_task: bool):
    """(methods, fractions, plot path) of --semi-supervised / --labelled-fraction, checked before any work (None
    without --semi-supervised; --labelled-fraction alone, or with a flag that does not apply, is refused)."""
    from audiorep.downstream.semisup import FRACTIONS, parse_fractions, parse_methods
    from audiorep.downstream.tasks.splits import TaskError

    if args.semi_supervised is None:
        for flag in ("labelled_fraction", "fraction_plot"):
            if getattr(args, flag) is not None:
                raise TaskError(f"--{flag.replace('_', '-')} applies with --semi-supervised METHODS; add it or leave "
                                "the flag out.")
        return None
    methods = parse_methods(args.semi_supervised)
    fractions = FRACTIONS if args.labelled_fraction is None else parse_fractions(args.labelled_fraction)
    clash = ("a song task" if song_task else "--probe knn" if args.probe != "mlp" else
             "--protocol" if args.protocol not in (None, "in-domain") else "--save-head" if args.save_head else None)
    if clash:
        raise TaskError(f"--semi-supervised trains its own heads on the task's splits; {clash} does not apply with "
                        "it. Leave one of them out.")
    if args.fraction_plot is not None:
        plot = Path(args.fraction_plot).expanduser()
        problem = (f"{plot} exists (pass --force to replace it)" if plot.exists() and not args.force else None) or \
            (f"{plot} is a folder" if plot.is_dir() else None) or output_location_problem(plot)
    else:
        import datetime as dt
        import secrets

        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in (args.name or args.model))[:60]
        folder = Path(args.results).expanduser().parent if args.results else Path(".")
        plot = folder / f"semisup-{spec.name}-{slug}-{stamp}-{secrets.token_hex(3)}.png"
        problem = output_location_problem(plot)
    if problem:
        raise TaskError(f"--fraction-plot: {problem}; choose another path for the metric-vs-fraction PNG.")
    return methods, fractions, plot


def run_semisup_command(args, spec, model, root, reader_opts, say, semi) -> int:
    """`audiorep probe --semi-supervised`: every method and supervised-only at every labelled fraction; print the
    method x fraction table, write the fraction plot, append one result row per method and fraction."""
    from rich.console import Console
    from rich.table import Table

    from audiorep.downstream.cache import EmbeddingCache
    from audiorep.downstream.leaderboard import append_result, fraction_figure, semisup_curves, semisup_table
    from audiorep.downstream.semisup import run_semisup

    methods, fractions, plot = semi
    start = time.time()
    report = run_semisup(spec, model, root, EmbeddingCache(args.cache), methods=methods, fractions=fractions,
                         grid=args.semi_grid, seeds=args.semi_seeds, seed=args.seed, max_folds=args.max_folds,
                         model_name=args.name, progress=not args.quiet, log=say, reader_options=reader_opts,
                         allow_missing=args.allow_missing, folds=args.folds)
    seconds = time.time() - start
    if args.results:
        for result in report["results"]:
            append_result(args.results, result)
    curves = semisup_curves(report["results"])[(report["model"], report["task"])]
    cols, rows = semisup_table(curves)
    arrow = "" if report["higher_is_better"] else " ↓"
    n_splits = len({c.split for c in report["cells"]})
    table = Table(title=f"audiorep probe --semi-supervised: {report['model']} on {report['task']}, test "
                        f"{report['metric']}{arrow} by labelled fraction (mean ± std over {n_splits} split(s) x "
                        f"{args.semi_seeds} seeds)")
    for col in cols:
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in rows:
        table.add_row(*r)
    Console().print(table)
    fig = fraction_figure(curves, f"{report['model']} · {report['task']}")
    plot.parent.mkdir(parents=True, exist_ok=True)
    tmp = plot.with_name(f".{plot.stem}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    tmp.replace(plot)
    Console().print(f"plot: {plot}; {seconds:.1f} s" + (f"; {len(report['results'])} rows appended to "
                                                        f"{args.results}" if args.results else ""), highlight=False)
    return 0


def short_selection(sel: dict) -> str:
    """The selected grid point in a few words (hidden_layers, lr, init, best_epoch or k)."""
    keys = ("hidden_layers", "lr", "init", "best_epoch", "k")
    return ", ".join(f"{k}={sel[k]}" for k in keys if k in sel)


def add_arguments(p: argparse.ArgumentParser) -> None:
    # the task table and protocols name the tasks in --help: they load when the parser is built (numpy, no JAX)
    from audiorep.downstream.tasks import TASKS
    from audiorep.downstream.tasks.protocols import PROTOCOLS

    p.description = ("Embed a dataset with a model (cached on disk), train the probe grid on every split (the whole "
                     "grid at once), select on validation, score the test split. Tasks: "
                     + "; ".join(f"{t.name}: {t.description}" for t in TASKS.values()) + ".")
    add_task_probe_arguments(p)
    p.add_argument("--probe", default="mlp", choices=("mlp", "knn"), help="MLP/linear grid or cosine kNN")
    p.add_argument("--repeats", type=positive_int, default=1,
                   help="train each grid configuration N times with other seeds; select and score on the mean "
                        "(N times the probe time, less probe noise on small tasks)")
    p.add_argument("--results", default=None,
                   help="append the result row (with the counts of files expected, present and missing) to this JSONL "
                        "store (detection tasks: test scores, DET curve and score histograms go in a folder beside "
                        "it, RESULTS-detection/)")
    p.add_argument("--seed", type=int, default=0, help="seed of the probe grid and of group-fold assignment")
    p.add_argument("--protocol", default=None, choices=list(PROTOCOLS),
                   help="in-domain (the task's own splits) or leave-one-group-out over a metadata column: "
                        "cross-attack (attack_id), cross-speaker, cross-language, cross-source; each held-out value "
                        "is probed twice (in-domain reference and cross-domain, same test clips) and the table "
                        "shows both and their gap (--max-folds K: the first K held-out values)")
    p.add_argument("--bonafide-root", default=None,
                   help="mlaad: the M-AILABS folder the bona fide clips come from (reader option bonafide_root)")
    p.add_argument("--train-root", default=None,
                   help="asvspoof2021_la/df: an ASVspoof 2019 LA folder to train on (the challenge protocol)")
    p.add_argument("--group-regex", default=None,
                   help="folder: the group (speaker) from each file name, e.g. '^\\d_([a-z]+)_'; deepfake_folder: "
                        "the speaker likewise")
    p.add_argument("--chunk-seconds", type=float, default=None,
                   help="song tasks (sonics): chunk window in seconds (default 10; 0 = one window over the audio "
                        "used, up to the whole song)")
    p.add_argument("--hop-seconds", type=float, default=None,
                   help="song tasks: seconds between chunk starts (default: the chunk length, no overlap)")
    p.add_argument("--durations", default=None,
                   help="song tasks: the audio used per song, first N seconds, comma-separated, 'whole' = the whole "
                        "song (default 5,10,30,whole); one result row per duration")
    p.add_argument("--save-head", default=None, metavar="DIR",
                   help="save the selected probe of the first split (plain arrays + JSON) into this new folder, for "
                        "`audiorep stream --head DIR`")
    p.add_argument("--force", action="store_true",
                   help="with --save-head: replace the head already in DIR; with --fraction-plot: replace that PNG")
    p.add_argument("--semi-supervised", default=None, metavar="METHODS",
                   help="train semi-supervised heads instead: comma-separated fixmatch, mixmatch, meanteacher, each "
                        "beside supervised-only on the same labels, at every --labelled-fraction; prints the method x "
                        "fraction table and writes the metric-vs-fraction plot")
    p.add_argument("--labelled-fraction", default=None, metavar="F,F,...",
                   help="with --semi-supervised: labelled fractions of each training split (stratified, seeded; the "
                        "rest unlabelled), default 0.01,0.05,0.1,0.25,1.0")
    p.add_argument("--semi-grid", default="semi", choices=("semi", *GRID_CHOICES),
                   help="with --semi-supervised: the heads (semi: the fast grid's MLP and linear head, 60 epochs, best "
                        "validation checkpoint)")
    p.add_argument("--semi-seeds", type=positive_int, default=2,
                   help="with --semi-supervised: seeds per head (the table's spread is over splits and seeds)")
    p.add_argument("--fraction-plot", default=None, metavar="PNG",
                   help="with --semi-supervised: where the plot goes (default: a new semisup-<task>-<model>-<time>.png "
                        "beside --results, else in the current folder)")


COMMAND = Command("probe", help="embed a task's data with a model and train HEAR-style probes -> score table",
                  arguments=add_arguments, run=run)  # the description, listing the tasks, comes with the arguments
