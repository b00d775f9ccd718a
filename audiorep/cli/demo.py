"""`audiorep demo`: the main job — synthetic corpus -> tiny pretraining -> probes -> leaderboard."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from audiorep.cli.common import Command, add_grid_argument, add_quiet_argument, positive_int, print_error


def run(args: argparse.Namespace) -> int:
    # the demo pulls in everything (jax, flax, the trainer): `audiorep --help` stays instant
    from audiorep import demo

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fsdd = None if args.no_fsdd else (Path(args.fsdd) if args.fsdd else demo.default_fsdd())
    if fsdd is not None and not fsdd.exists():
        print_error(f"--fsdd {fsdd} does not exist (pass the FSDD folder holding recordings/).")
        return 2
    timing = {} if args.minutes is None else {"minutes": args.minutes}
    plan = demo.DemoPlan(out_dir=Path(args.out), per_class=args.per_class, seed=args.seed, fsdd=fsdd,
                         fsdd_folds=args.fsdd_folds, grid=args.grid, repeats=args.repeats, progress=not args.quiet,
                         **timing)
    demo.run_demo(plan)
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="out/demo", help="output folder (corpus, training run, cache, results)")
    p.add_argument("--minutes", type=float, default=None,
                   help="pretraining budget in minutes on 2 CPU cores, turned into a fixed step count "
                        "(default 3.5 = 4,200 steps)")
    p.add_argument("--per-class", type=int, default=40, help="synthetic clips per class (12 classes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fsdd", help="Free Spoken Digit Dataset folder (default: ../shared/data/fsdd when present)")
    p.add_argument("--no-fsdd", action="store_true", help="skip the FSDD task")
    p.add_argument("--fsdd-folds", type=int, default=3, help="speaker-disjoint FSDD folds to probe (of 6)")
    add_grid_argument(p)
    p.add_argument("--repeats", type=positive_int, default=1,
                   help="probe seeds per grid configuration, averaged (less probe noise, N times the probe time)")
    add_quiet_argument(p, help="no progress bars")


COMMAND = Command(
    "demo", help="the main job: synthetic corpus -> tiny pretraining -> probes -> leaderboard",
    description="Generate the synthetic corpus, pretrain a tiny SSAST encoder for a few minutes, probe the log-mel "
                "baseline, the randomly initialised encoder and the pretrained encoder, and write the leaderboard "
                "(markdown, CSV, HTML). Reruns resume.",
    arguments=add_arguments, run=run)
