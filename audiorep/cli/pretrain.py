"""`audiorep pretrain`: train an encoder from an experiment file (configs/*.py); resumable."""

from __future__ import annotations

import argparse
import logging
import sys

from audiorep.cli.common import Command, print_error


def run(args: argparse.Namespace) -> int:
    # the config loader, trainer and iterations (jax, flax, orbax) load here: `audiorep --help` stays instant
    from audiorep.pretrain import config as config_lib
    from audiorep.pretrain import iterations, trainer

    rest, overrides = config_lib.split_overrides(getattr(args, "extra_args", None) or [])
    if rest:
        raise config_lib.ConfigError(f"unrecognized arguments: {' '.join(rest)} (config fields are set with "
                                     f"--config.<field>=<value>, e.g. --config.train.steps=100).")
    cfg = trainer.with_defaults(config_lib.load_config(args.config))
    config_lib.apply_overrides(cfg, overrides)
    if args.show_config:
        for key, value in config_lib.flatten(cfg).items():
            print(f"--config.{key}={value!r}")
        return 0
    # force: importing orbax (above, via the trainer) already gave the root logger absl's WARNING-level default
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", force=True)
    for noisy in ("absl", "jax._src", "orbax"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    if args.export_only:
        out = iterations.export_latest(cfg, args.workdir, args.export_dir)
        print(f"exported to {out}")
        return 0
    try:
        result = iterations.run(cfg, args.workdir)
    except trainer.NonFiniteLossError as err:  # training diverged: its own exit status
        print_error(err)
        return 3
    if result.status != "done":
        print(f"stopped at step {result.step}; run the same command to resume.", file=sys.stderr)
        return 130
    if int(cfg.iterations.count) > 1:
        print(iterations.read_table(args.workdir))
    if result.export_dir:
        print(f"done: step {result.step}; encoder exported to {result.export_dir} "
              f"(audiorep.load({result.export_dir!r}))")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="experiment file, e.g. configs/tiny_ssast.py (or file.py:arg)")
    p.add_argument("--workdir", required=True, help="checkpoints, metrics.jsonl, TensorBoard events (local or gs://)")
    p.add_argument("--show-config", action="store_true", help="print every field (with overrides) and exit")
    p.add_argument("--export-only", action="store_true", help="export the newest checkpoint's encoder and exit")
    p.add_argument("--export-dir", default=None, help="where --export-only writes (default WORKDIR/export)")


COMMAND = Command(
    "pretrain", help="train an encoder from an experiment file (configs/*.py); resumable",
    description="Train from an experiment file. Any config field can be overridden with --config.<field>=<value> "
                "(e.g. --config.train.steps=100). Re-running the same command resumes from the last checkpoint in "
                "WORKDIR; Ctrl-C saves and exits. BEATs iterations (masked token recipes): "
                "--config.iterations.count=2 trains encoder 1 in WORKDIR/iter1, distils tokenizer 2 from it in "
                "WORKDIR/iter2/tokenizer (--config.iterations.tokenizer=kmeans: k-means codes instead), trains "
                "encoder 2 on its labels in WORKDIR/iter2, and prints the per-iteration table "
                "(WORKDIR/iterations.md).",
    arguments=add_arguments, run=run, extra_args=True)
