"""Does a semi-supervised head beat supervised-only on the same labels by more than the seed-to-seed spread?

    .venv/bin/python benchmarks/semisup_gain.py --model logmel --data-root DIR [--task synthetic] [--fraction 0.1]
        [--seeds 3] [--max-folds 3] [--cache DIR]

Runs what `audiorep probe --semi-supervised fixmatch,mixmatch,meanteacher --labelled-fraction F --semi-seeds N
--max-folds K` runs (downstream/semisup.run_semisup: the same labelled subsets, views, heads and selection) and
prints, per method: test accuracy (mean ± std over splits x seeds), the gain over supervised-only paired by split
and seed (each seed of every method starts from the same initial head), the std of those paired gains, and the
seed-to-seed spread (std over seeds within a split, mean over splits). The bar: a gain larger than the
supervised-only seed-to-seed spread.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from audiorep.downstream.cache import EmbeddingCache
from audiorep.downstream.semisup import METHODS, run_semisup
from audiorep.downstream.tasks import resolve_model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="logmel", help="as `audiorep probe --model`")
    ap.add_argument("--task", default="synthetic")
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--max-folds", type=int, default=3)
    ap.add_argument("--cache", default=None, help="embedding cache folder (default: audiorep's)")
    args = ap.parse_args()

    start = time.time()
    report = run_semisup(args.task, resolve_model(args.model), args.data_root,
                         EmbeddingCache(args.cache) if args.cache else None, methods=METHODS[1:],
                         fractions=(args.fraction,), seeds=args.seeds, max_folds=args.max_folds)
    metric = report["metric"]
    per = {m: np.array([[t[metric] for t in c.seed_tests] for c in report["cells"]
                        if c.method == m and c.fraction == args.fraction]) for m in METHODS}  # [splits, seeds]
    sup = per["supervised"]
    print(f"{report['model']} on {report['task']}, {args.fraction:g} labelled, {sup.shape[0]} splits x "
          f"{sup.shape[1]} seeds, {metric} ({time.time() - start:.0f} s)")
    print(f"{'method':12s} {metric:>15s} {'gain':>7s} {'gain std':>9s} {'seed spread':>12s}")
    for m, a in per.items():
        gain = a - sup
        line = f"{m:12s} {a.mean():8.3f} ± {a.std():.3f} "
        line += "" if m == "supervised" else f"{gain.mean():+7.3f} {gain.std():9.3f}"
        print(line.ljust(48) + f"{a.std(1).mean():12.3f}")
    full = [np.mean([t[metric] for t in c.seed_tests]) for c in report["cells"]
            if c.method == "supervised" and c.fraction == 1.0]
    if full:
        print(f"supervised @ 100 %: {np.mean(full):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
