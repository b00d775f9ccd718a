"""What the commands share: `Command`, the declaration of a command that `add_command` turns into its sub-parser; the
flags several commands take with the same meaning (`add_*_argument`, `add_task_probe_arguments`) and what the
commands make of them (`embedder_options`, `task_data_root`); argument types and choices; the one-line form of an
error, and the list of the files a command could not use.

Nothing here imports JAX: building the parser (`audiorep --help`) stays instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# models.bundle's POOLINGS / FREQUENCY_MODES, spelled out so building the parser imports no JAX
# (tests/test_registry.py checks they agree)
POOLINGS_CHOICES = ("mean", "max", "mean+max", "mean+std", "mean+std+delta", "cls", "cls+mean")
FREQUENCY_CHOICES = ("mean", "stack")  # models.bundle.FREQUENCY_MODES
GRID_CHOICES = ("fast", "full", "linear")  # the grids of downstream.probes.make_grid


@dataclass(frozen=True)
class Command:
    """An `audiorep` command or subcommand, declared; `add_command` builds its parser.

    name: the word on the command line. help: its line in the parent's list of commands. description: the top of
    its own --help (None: none, or the one `arguments` sets: probe's lists the tasks of the task table).
    arguments: adds the command's own flags to its parser (None: it takes none). run: the command function,
    `run(args) -> exit status`. subcommands: a command group's commands (a group has no `run`). extra_args: the
    command takes the arguments argparse does not know, as the list `args.extra_args` (pretrain's
    --config.<field>=<value>); any other command refuses them.
    """

    name: str
    help: str
    description: str | None = None
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    run: Callable[[argparse.Namespace], int] | None = None
    subcommands: tuple[Command, ...] = ()
    extra_args: bool = False

    def __post_init__(self):
        if (self.run is None) == (not self.subcommands):
            raise ValueError(f"command {self.name!r}: give it either a run function or subcommands")


def add_command(sub: argparse._SubParsersAction, command: Command) -> argparse.ArgumentParser:
    """`command`'s parser in `sub`: its flags, then its subcommands' parsers (in `args.<name>_command`) or its
    function (`args.func`)."""
    parser = sub.add_parser(command.name, help=command.help, description=command.description)
    if command.arguments is not None:
        command.arguments(parser)
    if command.subcommands:
        group = parser.add_subparsers(dest=f"{command.name}_command", required=True, metavar="SUBCOMMAND")
        for subcommand in command.subcommands:
            add_command(group, subcommand)
    else:
        parser.set_defaults(func=command.run)
    if command.extra_args:
        parser.set_defaults(extra_args=[])
    return parser


def parse_layer(text: str):
    """'last' | 'all' | '5' | '-1' | '0,6,12' -> the Embedder's layer argument."""
    text = text.strip()
    if text in ("last", "all"):
        return text
    try:
        items = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layer {text!r}: use last, all, an index (-1) or a list (0,6,12)") from None
    return items[0] if len(items) == 1 else items


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 1")
    return value


def nonnegative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 0")
    return value


# The flags several commands take with the same meaning: one definition each (type, choices, default, help).
# Each helper adds its flag to a parser or to one of its argument groups (argparse's common base of the two).
Flags = argparse._ActionsContainer

MODEL_HELP = "registered name (audiorep.list_models()) or a model directory"
BASELINE_MODEL_HELP = ("registered name (audiorep.list_models()), a model directory, logmel[-beats|-ssast|-passt] (the "
                       "log-mel mean/std baseline) or a hand-crafted cepstral baseline: lfcc, mfcc, cqcc, "
                       "lfcc-asvspoof2021, cqcc-asvspoof2021")
LAYER_HELP = "last (default), all, a hidden-state index (-1) or a comma list (4,8,12)"
POOLING_HELP = "scene pooling (default: the model's)"


def add_model_argument(p: Flags, *, baselines: bool = False) -> None:
    """--model: what audiorep.load takes; `baselines`: also the baselines of downstream.tasks.resolve_model."""
    p.add_argument("--model", required=True, help=BASELINE_MODEL_HELP if baselines else MODEL_HELP)


def add_task_argument(p: Flags, help: str = "probing task") -> None:
    """--task, one of downstream.tasks.TASKS."""
    # the task table names the tasks in --help: it loads when the parser is built (numpy, no JAX), not when
    # cli.common is imported
    from audiorep.downstream.tasks import TASKS

    p.add_argument("--task", required=True, choices=sorted(TASKS), help=help)


def add_data_root_argument(p: Flags,
                           help: str = "the dataset's folder (fsdd defaults to ../shared/data/fsdd)") -> None:
    p.add_argument("--data-root", default=None, help=help)


def add_grid_argument(p: Flags) -> None:
    """--grid: the probe grid of downstream.probes."""
    p.add_argument("--grid", default="fast", choices=GRID_CHOICES,
                   help="probe grid: fast (6 points, <= 60 epochs), full (HEAR's 16 points, 500 epochs), linear")


def add_cache_argument(p: Flags) -> None:
    p.add_argument("--cache", default=None, help="embedding cache folder (default ~/.cache/audiorep/embeddings)")


def add_reader_option_argument(p: Flags, help: str = "reader option, repeatable") -> None:
    """-o/--option KEY=VALUE, repeatable: a dataset reader's option (cli.datasets.reader_options types it)."""
    p.add_argument("-o", "--option", action="append", metavar="KEY=VALUE", help=help)


def add_name_argument(p: Flags) -> None:
    p.add_argument("--name", default=None, help="model name in the results (default: the model's name)")


def add_embedder_arguments(p: Flags, *, layer_default: str | None = "last",
                           layer_help: str = LAYER_HELP, pooling_help: str = POOLING_HELP) -> None:
    """--layer, --pooling, --frequency: the options of audiorep.load that choose what a scene embedding is."""
    p.add_argument("--layer", type=parse_layer, default=layer_default, help=layer_help)
    p.add_argument("--pooling", default=None, choices=POOLINGS_CHOICES, help=pooling_help)
    p.add_argument("--frequency", default=None, choices=FREQUENCY_CHOICES,
                   help="a time step's frequency-row tokens averaged or stacked (default: the model's)")


def add_batch_size_argument(p: Flags) -> None:
    p.add_argument("--batch-size", type=positive_int, default=16, help="chunks per forward pass")


def add_out_file_arguments(p: Flags, what: str, *, metavar: str | None = None) -> None:
    """--out, an output file written atomically, and --force to replace it."""
    p.add_argument("--out", required=True, metavar=metavar,
                   help=f"{what} (written atomically; must not exist unless --force)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")


def add_quiet_argument(p: Flags, help: str = "no progress bar") -> None:
    p.add_argument("-q", "--quiet", action="store_true", help=help)


def add_task_probe_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of the commands that embed a task's data with a model and train its probes (probe, robustness), in
    a section of their own in --help: the task and its data, the model and what its embedding is, the probes."""
    g = p.add_argument_group("task, model and probes (the same in `audiorep probe` and `audiorep robustness`)")
    add_model_argument(g, baselines=True)
    add_task_argument(g)
    add_data_root_argument(g)
    add_reader_option_argument(g, help="reader option, repeatable (audiorep datasets list shows each reader's), e.g. "
                                       "-o subsets=eval")
    g.add_argument("--allow-missing", action="store_true",
                   help="probe the files present when some the dataset lists are missing (default: refuse)")
    g.add_argument("--folds", type=positive_int, default=None,
                   help="number of group folds for group-fold tasks (default: the task's, 5 or 6)")
    g.add_argument("--max-folds", type=positive_int, default=None, help="probe only the first K splits (quick runs)")
    add_grid_argument(g)
    add_cache_argument(g)
    add_name_argument(g)
    add_embedder_arguments(g, pooling_help="scene pooling (default: the model's; the log-mel baseline: mean+std, or "
                                           "mean+std+delta)")
    add_batch_size_argument(g)
    add_quiet_argument(g, help="no progress bars or log lines")


def embedder_options(args: argparse.Namespace) -> dict:
    """The keyword options of downstream.tasks.resolve_model from the flags of add_embedder_arguments and --batch-size
    (the log-mel baseline: only pooling, when given)."""
    if args.model.startswith("logmel"):
        return {} if args.pooling is None else {"pooling": args.pooling}
    return {"layer": args.layer, "pooling": args.pooling, "batch_size": args.batch_size, "frequency": args.frequency}


def task_data_root(spec, data_root: str | None) -> str:
    """The folder a task reads: --data-root, else the task's default (TaskError when there is none or it does
    not exist)."""
    from audiorep.downstream.tasks.splits import TaskError  # the tasks load inside the commands, as here

    root = data_root or spec.default_root
    if root is None or not Path(root).expanduser().exists():
        raise TaskError(f"task {spec.name} needs --data-root (the dataset folder); "
                        f"{'got ' + repr(root) + ', which does not exist' if root else 'none given'}.")
    return root


def one_line(err: BaseException | str) -> str:
    """An error's message on one line (a message that spans lines is joined with spaces)."""
    return " ".join(part.strip() for part in str(err).splitlines() if part.strip()) or type(err).__name__


def print_error(err: BaseException | str) -> None:
    """`error: <message>` on stderr, one line."""
    print(f"error: {one_line(err)}", file=sys.stderr)


def print_with_failures(console, table, failed: Sequence[tuple[str, str]], *, label: str, max_list: int,
                        out) -> None:
    """Print a rich `table` with a last row counting the files that failed (`label`), then the first `max_list`
    of them as `  label name: error` and how many more there are (the output `out` lists every one in its
    failed_files). failed: (name, error) pairs."""
    table.add_row(label, f"{len(failed)}" + (" (listed below and in failed_files)" if failed else ""))
    console.print(table)
    for name, err in failed[:max_list]:
        console.print(f"  [red]{label}[/red] {name}: {err}", highlight=False)
    if len(failed) > max_list:
        console.print(f"  ... and {len(failed) - max_list} more (see failed_files in {out})")
