"""The command table: every module that declares a command is listed, building the parser (`audiorep --help`)
imports no JAX, only a command declared with extra_args takes arguments argparse does not know, and the shared
embedding flags reach the model the same way in every command that takes them."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import pytest

import audiorep.cli
from audiorep.cli import COMMAND_MODULES, build_parser, main
from audiorep.cli.common import Command, embedder_options


def test_every_module_that_declares_a_command_is_listed():
    declared = set()
    for info in pkgutil.iter_modules(audiorep.cli.__path__):
        if info.name == "__main__":  # running it would run the command line
            continue
        module = importlib.import_module(f"audiorep.cli.{info.name}")
        if isinstance(getattr(module, "COMMAND", None), Command):
            declared.add(module.__name__)
    assert declared == {m.__name__ for m in COMMAND_MODULES}


def test_building_the_parser_imports_no_jax():
    code = ("import sys; from audiorep.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('jax', 'flax', 'optax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_command_without_extra_args_refuses_unknown_arguments(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["leaderboard", "r.jsonl", "--out", "o", "--config.train.steps=1"])
    assert exit_.value.code == 2 and "unrecognized arguments: --config.train.steps=1" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["probe", "robustness"])
def test_probe_and_robustness_give_the_model_every_embedding_flag(command):
    args = build_parser().parse_args([command, "--model", "beats-tiny", "--task", "fsdd", "--layer", "0,-1",
                                      "--pooling", "mean+max", "--frequency", "stack", "--batch-size", "3"])
    assert embedder_options(args) == {"layer": [0, -1], "pooling": "mean+max", "batch_size": 3, "frequency": "stack"}


def test_the_log_mel_baseline_gets_only_the_pooling_flag():
    args = build_parser().parse_args(["probe", "--model", "logmel-passt", "--task", "fsdd", "--layer", "3"])
    assert embedder_options(args) == {}
    args = build_parser().parse_args(["probe", "--model", "logmel", "--task", "fsdd", "--pooling", "mean+std+delta"])
    assert embedder_options(args) == {"pooling": "mean+std+delta"}


def test_a_command_is_either_a_function_or_a_group():
    with pytest.raises(ValueError, match="either a run function or subcommands"):
        Command("both", help="", run=lambda args: 0, subcommands=(Command("leaf", help="", run=lambda args: 0),))
    with pytest.raises(ValueError, match="either a run function or subcommands"):
        Command("neither", help="")
