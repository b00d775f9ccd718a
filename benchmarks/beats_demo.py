"""The BEATs encoder of configs/tiny_beats.py under the demo's probe: pretrained vs its random init vs log-mel.

    .venv/bin/python benchmarks/beats_demo.py --out out/beats-demo [--steps 1500] [--seed 0] [--fsdd DIR]

The demo's measurement (audiorep/demo.py) with the tiny BEATs recipe in place of the demo's SSAST one: the
same synthetic corpus (40 clips per class, 3 s, the seed's draw), the same pretraining audio (the corpus plus,
when FSDD is there, the unlabelled recordings of the speakers no probed fold tests on, folders sampled
equally), the same probes (`fast` HEAR grid, `mean+std` pooling of the frequency-stacked tokens, synthetic
task 5 folds, FSDD 3 speaker-disjoint folds) against the same baselines (log-mel mean/std through the
encoder's own frontend, and the encoder's random initial weights, exported before the first step). Prints
the leaderboard and, per task, the fold-by-fold margin against the best baseline. Resumable: a second run
reuses the corpus, the training run and the cached embeddings. docs/results.md has the measured table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from audiorep import demo
from audiorep.downstream import leaderboard
from audiorep.pretrain import config as config_lib
from audiorep.pretrain import experiment
from audiorep.pretrain.trainer import Trainer, with_defaults

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "tiny_beats.py"


def beats_config(plan: demo.DemoPlan, steps: int, data_root: Path):
    """configs/tiny_beats.py (`steps`) on the demo's pretraining audio, with the plan's seed and pooling."""
    c = with_defaults(config_lib.load_config(f"{RECIPE}:steps={steps}"))
    c.seed = plan.seed
    c.data.dataset = "folder"
    c.data.root = str(data_root)
    c.data.balance = "folder"  # as the demo's recipe: the synthetic corpus and FSDD sampled equally
    del c.data["synthetic"]
    c.train.progress = plan.progress
    c.export_pooling = plan.pooling
    c.export_frequency = plan.frequency
    return c


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="output folder (corpus, run, cache, results)")
    ap.add_argument("--steps", type=int, default=1500, help="pretraining steps (tiny_beats.py's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fsdd", type=Path, default=None, help="FSDD folder (default: the demo's)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    fsdd = args.fsdd or demo.default_fsdd()
    plan = demo.DemoPlan(out_dir=args.out, seed=args.seed, fsdd=fsdd, progress=not args.no_progress)
    t0 = time.perf_counter()
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    demo.write_corpus(plan)
    config = beats_config(plan, args.steps, demo.pretraining_audio(plan, plan.out_dir / "synthetic"))
    task, make_iterator = experiment.build(config)
    random_dir = plan.out_dir / "random_init"
    if not (random_dir / "audiorep_model.json").is_file():
        task.export(task.model, str(random_dir))  # the very weights training starts from
    t1 = time.perf_counter()
    result = Trainer(config, str(plan.out_dir / "pretrain"), task, make_iterator).run()
    if result.status != "done" or not result.export_dir:
        print(f"pretraining stopped at step {result.step}; run again to resume.", file=sys.stderr)
        return 1
    print(f"pretraining: step {result.step} in {time.perf_counter() - t1:.0f} s -> {result.export_dir}")
    rows = demo.probe_all(plan, random_dir, Path(result.export_dir))
    print()
    print(leaderboard.to_markdown(rows))
    for name in sorted({r.task for r in rows}):
        by_model = {r.model: r for r in rows if r.task == name}
        pre = by_model["demo-pretrained"]
        for base in ("demo-logmel", "demo-random-init"):
            b = by_model[base]
            print(f"{name}: pretrained {pre.mean:.3f} vs {base.removeprefix('demo-')} {b.mean:.3f}: "
                  f"{demo.paired_margin(pre, b).describe()}; folds {[round(x, 3) for x in pre.folds]} vs "
                  f"{[round(x, 3) for x in b.folds]}")
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
