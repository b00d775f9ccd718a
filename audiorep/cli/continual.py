"""`audiorep continual`: train a detection head over a stream of attacks (naive, joint, replay, EWC, RWM) and report
the EER matrix, average EER and forgetting per method (a table, a PNG and result rows)."""

from __future__ import annotations

import argparse
import datetime as _dt
from pathlib import Path

from audiorep.cli.common import (
    Command,
    add_cache_argument,
    add_data_root_argument,
    add_model_argument,
    add_name_argument,
    add_quiet_argument,
    add_task_argument,
    nonnegative_int,
    positive_int,
    print_error,
    task_data_root,
)
from audiorep.paths import output_file_problem

SPLITS = ("speaker", "source")  # downstream.continual.SPLITS, spelled out so --help imports no JAX


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _seeds(value: str) -> list[int]:
    try:
        return [int(v) for v in _csv(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes comma-separated integers, got {value!r}") from None


def run(args: argparse.Namespace) -> int:
    # the cache, the tasks and JAX load here: `audiorep --help` stays instant
    from rich.console import Console
    from rich.table import Table

    from audiorep.downstream.cache import EmbeddingCache
    from audiorep.downstream.continual import METHODS, Settings, run_task, to_result_row, write_heatmaps
    from audiorep.downstream.leaderboard import append_result
    from audiorep.downstream.tasks import get_task, resolve_model

    methods, order = _csv(args.methods), (_csv(args.order) if args.order else None)
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        print_error(f"--methods: unknown {bad or 'empty list'}; choose from {','.join(METHODS)}.")
        return 2
    if order is not None and len(order) < 2:
        print_error(f"--order names {len(order)} attack(s); a stream needs two or more, e.g. --order world,lpc.")
        return 2
    spec = get_task(args.task)
    root = task_data_root(spec, args.data_root)
    # the results store is appended to (an existing one is fine), the plot replaced only with --force
    for flag, path, example, kind, overwrite in (("--results", args.results, "results.jsonl", "JSONL file", True),
                                                 ("--plot", args.plot, "continual.png", ".png file", args.force)):
        problem = path and output_file_problem(Path(path).expanduser(), flag=flag, example=example,
                                               overwrite=overwrite, kind=kind)
        if problem:
            print_error(f"{problem}.")
            return 2
    head_method = args.head_method or methods[-1]
    if args.save_head:  # the head is saved after the training: check its folder first
        from audiorep.downstream.heads import check_head_dir

        check_head_dir(args.save_head, overwrite=args.force)
        if head_method not in methods:
            print_error(f"--head-method {head_method} is not among --methods {','.join(methods)}; add it there.")
            return 2
        if args.model.startswith(("logmel", "lfcc", "mfcc", "cqcc")):
            print_error("--save-head: a hand-crafted baseline is not a model `audiorep stream` can load; leave "
                        "--save-head out.")
            return 2
    settings = Settings(hidden=args.hidden, steps=args.steps, lr=args.lr, batch_size=args.batch_size,
                        memory=args.memory, policy=args.policy, ewc_lambda=args.ewc_lambda, rwm_alpha=args.rwm_alpha,
                        replay_share=args.replay_share)
    model = resolve_model(args.model)
    console = Console(stderr=True, soft_wrap=True)
    say = None if args.quiet else (lambda m: console.print(m, highlight=False))
    heads: dict | None = {} if args.save_head else None
    results, experiences = run_task(spec, model, root, order, methods=methods, seeds=args.seeds, settings=settings,
                                    cache=EmbeddingCache(args.cache), split=args.split, progress=not args.quiet,
                                    log=say, heads=heads)
    order = [e.name for e in experiences]  # --order, or every attack of the data
    name = args.name or getattr(model, "name", args.model)
    out = Console()
    for res in results:
        m = res.eer.mean(0)
        t = Table(title=f"{res.method}: EER after experience (rows) on test set (columns), mean of seeds {res.seeds}")
        t.add_column("after \\ test", style="bold")
        for e in res.experiences:
            t.add_column(e, justify="right")
        for i, e in enumerate(res.experiences):
            t.add_row(e, *(f"{m[i, j]:.4f}" for j in range(len(res.experiences))))
        out.print(t)
    summary = Table(title=f"audiorep continual: {name} on {spec.name}, order {' -> '.join(order)} "
                          f"({', '.join(f'{e.name} {len(e.y_train)}/{len(e.y_test)}' for e in experiences)} "
                          "train/test clips)")
    for col in ("method", "average EER", "BWT", "forgetting", f"forgetting on {order[0]}", "per seed (avg EER)"):
        summary.add_column(col, justify="right" if col != "method" else "left")
    for res in results:
        s = res.summary()
        summary.add_row(res.method, f"{s['average_eer']:.4f} ± {s['average_eer_std']:.4f}", f"{s['bwt']:+.4f}",
                        f"{s['forgetting']:+.4f}", f"{s['forgetting_first']:+.4f}",
                        " ".join(f"{x['average_eer']:.3f}" for x in res.metrics))
    out.print(summary)
    plot = Path(args.plot).expanduser() if args.plot else Path(
        f"continual-{spec.name}-{_dt.datetime.now(_dt.UTC).strftime('%Y%m%dT%H%M%SZ')}.png")
    write_heatmaps(results, plot, title=f"{name} · {spec.name} · {' -> '.join(order)}")
    out.print(f"EER matrices: {plot}")
    if heads:
        saved = heads[head_method].save(args.save_head, overwrite=args.force)
        out.print(f"{head_method} head (seed {args.seeds[0]}, after {order[-1]}) saved to {saved} "
                  f"(`audiorep stream --model {args.model} --head {saved}`)")
    if args.results:
        for res in results:
            append_result(args.results, to_result_row(res, name, spec.name, settings, str(root), args.split))
        out.print(f"{len(results)} result row(s) appended to {args.results}")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_argument(p, baselines=True)
    add_task_argument(p, help="a detection task with attack ids, e.g. deepfake_folder")
    add_data_root_argument(p, help="the dataset's folder")
    p.add_argument("--order", default=None,
                   help="comma-separated attack ids in arrival order, e.g. world,griffinlim,lpc (default: every "
                        "attack of the data, sorted by name)")
    p.add_argument("--methods", default="naive,joint,replay,ewc,rwm", help="comma-separated methods (default all)")
    p.add_argument("--seeds", type=_seeds, default=[0, 1, 2], help="head seeds, comma-separated (default 0,1,2)")
    p.add_argument("--memory", type=int, default=100, help="replay memory in clips (default 100)")
    p.add_argument("--policy", default="balanced", choices=("balanced", "reservoir"), help="replay memory policy")
    p.add_argument("--replay-share", type=float, default=0.5,
                   help="share of the loss the replay memory gets (default 0.5: as much as the current experience)")
    p.add_argument("--ewc-lambda", type=float, default=1e4, help="EWC penalty weight (default 1e4)")
    p.add_argument("--rwm-alpha", type=float, default=0.01, help="RWM projector regulariser, relative to the mean "
                   "eigenvalue of a layer's input correlation (default 0.01; larger = less protection)")
    p.add_argument("--hidden", type=int, default=64, help="hidden units of the head (0 = linear; default 64)")
    p.add_argument("--steps", type=positive_int, default=600, help="Adam steps per experience (default 600)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 0.001)")
    p.add_argument("--batch-size", type=nonnegative_int, default=64,
                   help="clips of the experience per step, plus as many from replay's memory (default 64; 0 = the "
                        "whole experience every step)")
    p.add_argument("--split", default="speaker", choices=SPLITS,
                   help="what train and test never share: speaker (default), or source, a bona fide recording and "
                        "the spoofs made from it (labels.csv's source_clip, else the file name; speakers shared: for "
                        "folders with few speakers)")
    p.add_argument("--results", default=None, help="append one result row per method to this JSONL store")
    p.add_argument("--plot", default=None, help="heatmap PNG path (default continual-<task>-<time>.png here)")
    p.add_argument("--save-head", default=None, metavar="DIR",
                   help="save one method's final head (first seed) here, for `audiorep stream --head DIR`")
    p.add_argument("--head-method", default=None, help="the method whose head --save-head saves (default: the last "
                   "of --methods)")
    p.add_argument("--force", action="store_true", help="replace an existing --plot / --save-head head")
    add_cache_argument(p)
    add_name_argument(p)
    add_quiet_argument(p, help="no progress output")


COMMAND = Command(
    "continual", help="train a detection head over a stream of attacks; EER matrix and forgetting per method",
    description="Experience k = bona fide clips + the clips of the k-th attack of --order; the head on frozen "
                "embeddings is trained on each in turn with every --methods (naive fine-tuning, joint training, "
                "replay, EWC, Radian Weight Modification) and scored on every experience's test set after each one "
                "(train/test disjoint by speaker or by source recording: --split). Prints the EER matrix per method, "
                "the average EER, backward transfer and forgetting; writes a heatmap PNG and result rows.",
    arguments=add_arguments, run=run)
