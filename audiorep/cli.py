"""`audiorep` — the command line: info, features, datasets, convert, embed, pretrain, probe, leaderboard, demo.

Each sub-command is one `_cmd_*` function plus its argument block in `build_parser`; heavy imports
(jax, models, data) happen inside the command so `audiorep --help` stays instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path

# models.registry's POOLINGS / FREQUENCY_MODES, spelled out so building the parser imports no JAX
# (tests/test_registry.py checks they agree)
POOLINGS_CHOICES = ("mean", "max", "mean+max", "mean+std", "mean+std+delta", "cls", "cls+mean")
FREQUENCY_CHOICES = ("mean", "stack")  # models.registry.FREQUENCY_MODES

TCMALLOC_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
    "/usr/lib/libtcmalloc_minimal.so.4",
)


def tcmalloc_path() -> str | None:
    """The installed tcmalloc shared library, if any (Debian: libtcmalloc-minimal4)."""
    return next((p for p in TCMALLOC_CANDIDATES if os.path.exists(p)), None)


def _reexec_with_tcmalloc(argv: list[str]) -> None:
    """Restart this process with tcmalloc preloaded, once.

    XLA:CPU frees and re-allocates large buffers every step; glibc hands them back to the OS and each
    step page-faults gigabytes of fresh memory. tcmalloc keeps them, ~25 % faster on CPU. An allocator
    can only be chosen at process start, hence the re-exec. AUDIOREP_NO_TCMALLOC=1 turns it off.
    """
    if os.environ.get("AUDIOREP_NO_TCMALLOC") or "tcmalloc" in os.environ.get("LD_PRELOAD", ""):
        return
    lib = tcmalloc_path()
    if lib is None:
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = f"{lib}:{env['LD_PRELOAD']}" if env.get("LD_PRELOAD") else lib
    env["AUDIOREP_NO_TCMALLOC"] = "1"  # never loop
    try:
        os.execve(sys.executable, [sys.executable, "-m", "audiorep.cli", *argv], env)
    except OSError:
        return  # run without it rather than fail


_OFF = ("0", "off", "no", "false")


def compilation_cache_dir(environ: Mapping[str, str]) -> Path | None:
    """Where the `audiorep` command keeps compiled XLA programs between runs, or None when switched off.

    $AUDIOREP_XLA_CACHE: a folder, or 0/off to switch it off; default $XDG_CACHE_HOME/audiorep/xla
    (~/.cache/audiorep/xla). A rerun of a probe or the demo, and the second of two encoders of the same shape
    in one run, then skip most compilation (measured: the demo's second FSDD probe 64 -> 51 s on 2 CPU cores).
    """
    value = environ.get("AUDIOREP_XLA_CACHE", "").strip()
    if value.lower() in _OFF:
        return None
    if value:
        return Path(value).expanduser()
    return Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "audiorep" / "xla"


def _use_compilation_cache() -> None:
    """Point JAX's persistent compilation cache at `compilation_cache_dir` (through the environment, read when
    jax is first imported; fields the user set already are kept). Only the `audiorep` command does this: a
    library must not change its host's JAX settings."""
    path = compilation_cache_dir(os.environ)
    if path is None or "jax" in sys.modules:
        return
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(path))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # the demo's programs take 0.1-0.2 s
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


# ----------------------------------------------------------------------------------------------- info
def _cmd_info(args: argparse.Namespace) -> int:
    import importlib.metadata as md
    import platform

    import jax

    import audiorep

    print(f"audiorep {audiorep.__version__}  (Python {platform.python_version()}, {platform.machine()})")
    for pkg in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "tensorflow-datasets",
                "numpy", "soundfile", "soxr", "torch"):
        try:
            print(f"  {pkg:<20} {md.version(pkg)}")
        except md.PackageNotFoundError:
            print(f"  {pkg:<20} (not installed)")
    preload = os.environ.get("LD_PRELOAD", "")
    lib = tcmalloc_path()
    if "tcmalloc" in preload:
        state = "preloaded"
    elif lib:
        state = f"installed at {lib} but not preloaded"
    else:
        state = "not installed (CPU users: apt-get install libtcmalloc-minimal4, ~25 % faster steps)"
    print(f"  tcmalloc             {state}")
    cache = jax.config.jax_compilation_cache_dir
    print(f"  XLA compile cache    {cache or 'off'}" + ("" if cache else " (the audiorep command keeps one; "
                                                            "$AUDIOREP_XLA_CACHE)"))
    print(f"JAX backend: {jax.default_backend()}; process {jax.process_index()} of {jax.process_count()}")
    for d in jax.devices():
        print(f"  {d.id}: {d.device_kind} ({d.platform})")
    return 0


# ------------------------------------------------------------------------------------------- features
FEATURE_FRONTENDS = ("beats", "ssast", "passt")


def _plot_features(path: Path, panels: list[tuple[str, object]], frontend) -> None:
    """One spectrogram panel per file (time in s, mel bin, colorbar), written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.8 * len(panels)), squeeze=False)
    for ax, (name, feats) in zip(axes[:, 0], panels):
        seconds = feats.shape[0] * frontend.hop_samples / frontend.sample_rate
        img = ax.imshow(feats.T, origin="lower", aspect="auto", interpolation="nearest", cmap="magma",
                        extent=(0.0, seconds, 0, feats.shape[1]))
        ax.set_title(f"{name}  ({frontend.name}: {feats.shape[0]} frames x {feats.shape[1]} mel bins)")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("mel bin")
        fig.colorbar(img, ax=ax, label="normalised log-mel")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        fig.savefig(tmp, dpi=100, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()


def _cmd_features(args: argparse.Namespace) -> int:
    """Compute a model family's input features for audio files; print a summary, optionally draw them."""
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from audiorep.audio.frontends import FrontendError, get_frontend
    from audiorep.audio.io import AudioError, load_audio

    frontend = get_frontend(args.frontend)
    clips, errors = [], []
    for f in args.files:
        try:
            clips.append((Path(f), load_audio(f, sample_rate=frontend.sample_rate)[0]))
        except AudioError as err:
            errors.append(str(err))
    if errors:
        for e in errors:
            print(f"error: {e}", file=sys.stderr)
        print(f"error: {len(errors)} of {len(args.files)} file(s) unreadable; nothing written.", file=sys.stderr)
        return 1
    table = Table(title=f"{frontend.name} features ({frontend.sample_rate} Hz, hop {frontend.hop_samples} samples)")
    for col in ("file", "seconds", "frames x mels", "min", "mean", "max"):
        table.add_column(col, justify="left" if col == "file" else "right", overflow="fold")
    panels = []
    for path, wave in clips:
        try:
            feats = np.asarray(frontend(wave[None]))[0]
        except FrontendError as err:
            print(f"error: {path}: {err}", file=sys.stderr)
            return 1
        panels.append((path.name, feats))
        table.add_row(str(path), f"{wave.size / frontend.sample_rate:.2f}", f"{feats.shape[0]} x {feats.shape[1]}",
                      f"{feats.min():.2f}", f"{feats.mean():.2f}", f"{feats.max():.2f}")
    Console().print(table)
    if args.png:
        _plot_features(Path(args.png), panels, frontend)
        print(f"wrote {args.png}")
    return 0


def _add_features_parser(sub) -> None:
    p = sub.add_parser(
        "features", help="compute a model's input features (Kaldi fbank / PaSST mel) and draw them",
        description="Load audio files at the frontend's rate, compute the normalised log-mel features a "
                    "BEATs / SSAST / PaSST encoder sees, print their shape and range, and draw them with --png.")
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files (any format soundfile reads)")
    p.add_argument("--frontend", choices=FEATURE_FRONTENDS, default="beats",
                   help="beats: Kaldi fbank 128 @16 kHz; ssast: AST-style fbank @16 kHz; passt: PaSST mel @32 kHz")
    p.add_argument("--png", default=None, metavar="OUT", help="write one spectrogram panel per file to this PNG")
    p.set_defaults(func=_cmd_features)


# -------------------------------------------------------------------------------------------- convert
CONVERT_FAMILIES = ("beats", "ssast", "passt")


def _cmd_convert(args: argparse.Namespace) -> int:
    """Official PyTorch checkpoint -> audiorep model directory (audiorep.models.convert.<family>.convert)."""
    import importlib

    from audiorep.models.convert.common import CheckpointError

    out = Path(args.out_dir)
    if out.exists() and not args.force:
        print(f"error: {out} already exists; choose a new OUT_DIR or pass --force to replace it.", file=sys.stderr)
        return 2
    module = importlib.import_module(f"audiorep.models.convert.{args.family}")
    shape = {"num_heads": args.num_heads, "stride": tuple(args.stride) if args.stride else None,
             "num_frames": args.frames, "num_mel_bins": args.mel_bins}
    shape = {k: v for k, v in shape.items() if v is not None}
    if shape and args.family == "beats":
        print("error: --num-heads/--stride/--frames/--mel-bins are for ssast and passt files; a BEATs checkpoint "
              "stores its whole config.", file=sys.stderr)
        return 2
    try:
        path = module.convert(args.ckpt, args.out_dir, force=args.force, reader=args.reader, **shape)
    except (CheckpointError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {path}  (load it with audiorep.load({str(path)!r}))")
    return 0


# ------------------------------------------------------------------------------------------- datasets
def _coerce_option(value: str, param) -> object:
    """A KEY=VALUE string -> the type of the reader option (from its annotation and default)."""
    text = value.strip()
    annotation = str(param.annotation)
    if text.lower() in ("none", "null"):
        return None
    if isinstance(param.default, bool) or annotation.startswith("bool"):
        if text.lower() in ("true", "1", "yes", "on"):
            return True
        if text.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"expects true or false, got {value!r}")
    if "Sequence[int]" in annotation:
        return [int(v) for v in text.split(",") if v.strip()]
    if "Sequence[str]" in annotation and "str |" not in annotation:
        return [v.strip() for v in text.split(",") if v.strip()]
    if isinstance(param.default, int) or annotation.startswith("int"):
        return int(text)
    if isinstance(param.default, float) or annotation.startswith("float"):
        return float(text)
    return value


def _reader_options(name: str, pairs: list[str] | None) -> dict:
    """`-o KEY=VALUE` pairs -> keyword options for `read_dataset(name, ...)`, typed by the reader's signature."""
    from audiorep.data.sources import READERS, DatasetError

    if name not in READERS:
        raise DatasetError(f"unknown dataset reader {name!r}; readers are {sorted(READERS)} (audiorep datasets list).")
    params = READERS[name].options
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in params:
            raise DatasetError(
                f"reader option {pair!r} is not KEY=VALUE with KEY one of {sorted(params)} "
                f"(e.g. -o {next(iter(params), 'key')}=...)."
            )
        try:
            out[key] = _coerce_option(value, params[key])
        except ValueError as err:
            raise DatasetError(f"reader option {key}: {err}.") from None
    return out


def _cmd_datasets_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from audiorep.data.sources import READERS

    table = Table(title="dataset readers (audiorep datasets inspect NAME --root PATH [-o KEY=VALUE ...])",
                  show_lines=True)
    table.add_column("name", style="bold")
    table.add_column("expected layout under --root")
    table.add_column("options (-o KEY=VALUE)")
    for reader in READERS.values():
        opts = ", ".join(f"{k}={p.default!r}" for k, p in reader.options.items())
        table.add_row(reader.name, reader.layout, opts or "-")
    Console().print(table)
    return 0


def _fmt_seconds(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.1f} s"


def _cmd_datasets_inspect(args: argparse.Namespace) -> int:
    from collections import Counter

    from rich.console import Console
    from rich.table import Table

    from audiorep.data.sources import DatasetError, check_audio, read_dataset

    console = Console()
    try:
        index = read_dataset(args.name, args.root, **_reader_options(args.name, args.option))
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    records = index.records
    durations: dict[str, float] = {}
    unreadable: list[tuple[str, str]] = []
    if not args.no_audio_check:
        report = check_audio(records, skip_unreadable=True, decode=args.decode, progress=not args.quiet)
        durations, unreadable = report.durations, report.unreadable

    # the columns: splits when the dataset has them, else folds, else one "all" column
    if index.splits and index.splits != ("",):
        column_of, title = (lambda r: r.split or "(none)"), "split"
    elif index.folds:
        column_of, title = (lambda r: f"fold {r.fold}"), "fold"
    else:
        column_of, title = (lambda r: "all"), ""
    columns = sorted({column_of(r) for r in records},
                     key=lambda c: ({"train": 0, "validation": 1, "test": 2}.get(c, 3), c))
    summary = Table(title=f"{args.name} at {index.root}", show_header=False)
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("records", f"{len(records):,}")
    summary.add_row("classes", f"{len(index.classes):,}" + ("  (multi-label)" if index.multilabel else ""))
    groups = {r.group for r in records if r.group is not None}
    summary.add_row("groups", f"{len(groups):,}" if groups else "-")
    if durations:
        summary.add_row("total duration", _fmt_seconds(sum(durations.values())))
    elif args.no_audio_check:
        summary.add_row("total duration", "(not measured: --no-audio-check)")
    summary.add_row("missing / skipped", str(len(index.problems)) + " finding(s)" if index.problems else "none")
    if not args.no_audio_check:
        summary.add_row("unreadable audio", f"{len(unreadable):,}")
    console.print(summary)

    per_column = Table(title=f"records{' per ' + title if title else ''}")
    per_column.add_column(title or "subset")
    per_column.add_column("records", justify="right")
    per_column.add_column("groups", justify="right")
    per_column.add_column("duration", justify="right")
    for col in columns:
        rs = [r for r in records if column_of(r) == col]
        secs = sum(durations.get(r.key, 0.0) for r in rs)
        per_column.add_row(col, f"{len(rs):,}", f"{len({r.group for r in rs if r.group is not None}):,}",
                           _fmt_seconds(secs) if durations else "-")
    console.print(per_column)

    if index.classes:
        counts = {col: Counter() for col in columns}
        for r in records:
            counts[column_of(r)].update(r.label_names)
        total = Counter()
        for c in counts.values():
            total.update(c)
        ordered = list(index.classes)
        shown = ordered if len(ordered) <= args.max_classes else [c for c, _ in total.most_common(args.max_classes)]
        table = Table(title="records per class" + (f" (the {len(shown)} most frequent of {len(ordered)})"
                                                   if len(shown) < len(ordered) else ""))
        table.add_column("#", justify="right")
        table.add_column("class")
        for col in columns:
            table.add_column(col, justify="right")
        if len(columns) > 1:
            table.add_column("total", justify="right")
        for name in shown:
            cells = [f"{counts[col][name]:,}" for col in columns] + ([f"{total[name]:,}"] if len(columns) > 1 else [])
            table.add_row(str(ordered.index(name)), name, *cells)
        console.print(table)
    seen = set().union(*(r.label_names for r in records)) if records else set()
    absent = [c for c in index.classes if c not in seen]
    if absent:
        console.print(f"[yellow]{len(absent)} class(es) have no records[/]: {', '.join(absent[:10])}"
                      + (" ..." if len(absent) > 10 else ""))
    for problem in index.problems:
        console.print(f"[yellow]missing:[/] {problem}")
    for path, why in unreadable[:args.max_list]:
        console.print(f"[red]unreadable:[/] {path}: {why}")
    if len(unreadable) > args.max_list:
        console.print(f"[red]... and {len(unreadable) - args.max_list} more unreadable files[/]")
    if unreadable and not args.skip_unreadable:
        console.print("[red]Some audio is unreadable[/]: re-extract or re-download it, or pass --skip-unreadable "
                      "to accept skipping these files.")
        return 1
    return 0


def _cmd_datasets_synth(args: argparse.Namespace) -> int:
    from audiorep.data.synthetic import CLASSES, write_corpus

    classes = tuple(c.strip() for c in args.classes.split(",")) if args.classes else CLASSES
    try:
        index = write_corpus(args.out, args.per_class, args.seed, seconds=args.seconds, sample_rate=args.sample_rate,
                             classes=classes, clips_per_group=args.clips_per_group, overwrite=args.overwrite,
                             progress=True)
    except (FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {len(index):,} clips of {len(index.classes)} classes to {index.root} (meta.csv, README.md); "
          f"inspect with: audiorep datasets inspect folder --root {index.root}")
    return 0


def _add_datasets_parser(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The `datasets` command group; returns its sub-parsers so other commands (prepare) can be added."""
    group = sub.add_parser("datasets", help="list, inspect, synthesise and prepare datasets",
                           description="Local datasets: readers, inspection, the synthetic corpus, TFDS preparation.")
    ds = group.add_subparsers(dest="datasets_command", required=True, metavar="DATASETS_COMMAND")

    p = ds.add_parser("list", help="the dataset readers and the on-disk layout each expects")
    p.set_defaults(func=_cmd_datasets_list)

    p = ds.add_parser("inspect", help="counts per split / fold / class, duration, missing and unreadable files")
    p.add_argument("name", help="reader name (audiorep datasets list)")
    p.add_argument("--root", required=True, help="the dataset's top folder on local disk")
    p.add_argument("-o", "--option", action="append", metavar="KEY=VALUE",
                   help="reader option, repeatable (e.g. -o esc10=true, -o num_classes=12, "
                        "-o file_pattern='Y{ytid}.wav', -o label_regex='^(\\d)_')")
    p.add_argument("--no-audio-check", action="store_true", help="skip opening the audio files (no durations)")
    p.add_argument("--decode", action="store_true", help="decode every file fully (slow; catches truncated data)")
    p.add_argument("--skip-unreadable", action="store_true",
                   help="exit 0 even when some files are unreadable (they are still listed)")
    p.add_argument("--max-classes", type=int, default=60, help="most classes to show in the class table")
    p.add_argument("--max-list", type=int, default=20, help="most unreadable files to list")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_datasets_inspect)

    p = ds.add_parser("synth", help="write the synthetic sound-event corpus (folder layout, 16 kHz wav)")
    p.add_argument("--out", required=True, help="output folder (created; must be empty unless --overwrite)")
    p.add_argument("--per-class", type=int, required=True, help="clips per class")
    p.add_argument("--seed", type=int, default=0, help="random seed (the corpus is a function of the arguments)")
    p.add_argument("--seconds", type=float, default=2.0, help="clip length in seconds")
    p.add_argument("--sample-rate", type=int, default=16000, help="Hz")
    p.add_argument("--classes", default=None, help="comma-separated subset of the classes (default all)")
    p.add_argument("--clips-per-group", type=int, default=4, help="clips that share a source (group id)")
    p.add_argument("--overwrite", action="store_true", help="replace a corpus previously written to --out")
    p.set_defaults(func=_cmd_datasets_synth)
    return ds


def _cmd_datasets_prepare(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from audiorep.audio.io import AudioError
    from audiorep.data.sources import DatasetError
    from audiorep.data.tfds import PrepareError, prepare, stale_builds

    console = Console()
    try:
        options = _reader_options(args.name, args.option)
        for stale in stale_builds(args.out):
            console.print(f"[yellow]leftover of an interrupted build (never read as data; delete it when no "
                          f"other build runs):[/] {stale}")
        prepared = prepare(args.name, args.root, args.out, sample_rate=args.sample_rate, options=options,
                           skip_unreadable=args.skip_unreadable, num_workers=args.workers, overwrite=args.overwrite)
    except (DatasetError, PrepareError, AudioError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    state = "reused: pass --overwrite to rebuild" if prepared.reused else "built"
    table = Table(title=f"{prepared.name}/{prepared.config} ({state})", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("path", str(prepared.path))
    table.add_row("format", "ArrayRecord, int16 waveforms")
    table.add_row("sample rate", f"{prepared.sample_rate} Hz")
    table.add_row("classes", f"{len(prepared.classes):,}" + ("  (multi-label)" if prepared.multilabel else ""))
    for split, count in prepared.splits.items():
        table.add_row(f"split {split}", f"{count:,} examples")
    table.add_row("skipped unreadable", f"{len(prepared.skipped):,}")
    console.print(table)
    for message in prepared.skipped[:20]:
        console.print(f"[red]skipped:[/] {message.splitlines()[0]}")
    split = next(iter(prepared.splits))
    console.print(f"read it back: audiorep.data.pipeline.tfds_source({str(args.out)!r}, {split!r})  "
                  f"or tfds.data_source({f'{prepared.name}/{prepared.config}'!r}, data_dir={str(args.out)!r}, "
                  f"split={split!r}) after `import audiorep.data.tfds`")
    return 0


def _add_datasets_prepare(ds: argparse._SubParsersAction) -> None:
    """`datasets prepare`: added to the `datasets` group made by `_add_datasets_parser`."""
    p = ds.add_parser("prepare", help="build a TFDS ArrayRecord copy (int16 at one rate) for fast training input",
                      description="Read a dataset with its reader and write it as a TFDS ArrayRecord dataset under "
                                  "OUT/audiorep_NAME/CONFIG/1.0.0 (atomic: an interrupted build never reads as data).")
    p.add_argument("name", help="reader name (audiorep datasets list)")
    p.add_argument("--root", required=True, help="the dataset's top folder on local disk (TFDS manual dir)")
    p.add_argument("--out", required=True, help="TFDS data dir to write into")
    p.add_argument("--sample-rate", type=int, default=16000, help="store every clip at this rate, Hz")
    p.add_argument("-o", "--option", action="append", metavar="KEY=VALUE",
                   help="reader option, repeatable (as for `datasets inspect`); part of the config name")
    p.add_argument("--skip-unreadable", action="store_true",
                   help="skip (and list) unreadable audio instead of stopping at the first")
    p.add_argument("--workers", type=int, default=1, help="decode in this many processes")
    p.add_argument("--overwrite", action="store_true", help="rebuild when this config was built before")
    p.set_defaults(func=_cmd_datasets_prepare)


# ------------------------------------------------------------------------------------------- pretrain
def _cmd_pretrain(args: argparse.Namespace) -> int:
    import logging

    from audiorep.pretrain import config as config_lib

    try:
        rest, overrides = config_lib.split_overrides(getattr(args, "extra_args", None) or [])
        if rest:
            raise config_lib.ConfigError(f"unrecognized arguments: {' '.join(rest)} (config fields are set with "
                                         f"--config.<field>=<value>, e.g. --config.train.steps=100).")
        from audiorep.pretrain import trainer

        cfg = trainer.with_defaults(config_lib.load_config(args.config))
        config_lib.apply_overrides(cfg, overrides)
    except config_lib.ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.show_config:
        for key, value in config_lib.flatten(cfg).items():
            print(f"--config.{key}={value!r}")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("absl", "jax._src", "orbax"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from audiorep.pretrain import iterations

    if args.export_only:
        out = iterations.export_latest(cfg, args.workdir, args.export_dir)
        print(f"exported to {out}")
        return 0
    try:
        result = iterations.run(cfg, args.workdir)
    except trainer.NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    if result.status != "done":
        print(f"stopped at step {result.step}; run the same command to resume.", file=sys.stderr)
        return 130
    if result.export_dir:
        print(f"done: step {result.step}; encoder exported to {result.export_dir} "
              f"(audiorep.load({result.export_dir!r}))")
    return 0


def _add_pretrain_parser(sub) -> None:
    p = sub.add_parser(
        "pretrain", help="train an encoder from an experiment file (configs/*.py); resumable",
        description="Train from an experiment file. Any config field can be overridden with "
                    "--config.<field>=<value> (e.g. --config.train.steps=100). Re-running the same command "
                    "resumes from the last checkpoint in WORKDIR; Ctrl-C saves and exits. BEATs-style "
                    "iterations (masked token recipes): --config.iterations.count=2 "
                    "--config.iterations.steps=3000,1500 trains WORKDIR/iter1, then WORKDIR/iter2 on k-means "
                    "codes of the first encoder.")
    p.add_argument("--config", required=True, help="experiment file, e.g. configs/tiny_ssast.py (or file.py:arg)")
    p.add_argument("--workdir", required=True, help="checkpoints, metrics.jsonl, TensorBoard events (local or gs://)")
    p.add_argument("--show-config", action="store_true", help="print every field (with overrides) and exit")
    p.add_argument("--export-only", action="store_true", help="export the newest checkpoint's encoder and exit")
    p.add_argument("--export-dir", default=None, help="where --export-only writes (default WORKDIR/export)")
    p.set_defaults(func=_cmd_pretrain, extra_args=[])


# ---------------------------------------------------------------------------------------------- embed
def _parse_layer(text: str):
    """'last' | 'all' | '5' | '-1' | '0,6,12' -> the Embedder's layer argument."""
    text = text.strip()
    if text in ("last", "all"):
        return text
    try:
        items = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layer {text!r}: use last, all, an index (-1) or a list (0,6,12)") from None
    return items[0] if len(items) == 1 else items


def _positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 1")
    return value


def _cmd_embed(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    import audiorep
    from audiorep.audio.io import AudioError
    from audiorep.downstream.embed import EmbedError, embed_files
    from audiorep.models.registry import ModelDirError, UnknownModelError

    console = Console(stderr=True)
    try:
        model = audiorep.load(args.model, layer=args.layer, pooling=args.pooling, batch_size=args.batch_size,
                              frequency=args.frequency)
        result = embed_files(model, args.paths, args.out, timestamps=args.timestamps, progress=not args.quiet)
    except (AudioError, EmbedError, ModelDirError, UnknownModelError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    table = Table(title=f"audiorep embed: {model.name}", show_header=False)
    table.add_row("embedded", f"{len(result.files):,} files -> {result.out}")
    table.add_row("scene embedding", f"f32[{len(result.files)}, {result.dim}]  layer={model.layer} "
                                      f"pooling={model.pooling} frequency={model.frequency}")
    if args.timestamps:
        table.add_row("timestamps", f"every {model.time_resolution_ms:g} ms, D={model.timestamp_embedding_size}")
    table.add_row("time", f"{result.seconds:.1f} s ({len(result.files) / max(result.seconds, 1e-9):.1f} files/s)")
    table.add_row("unreadable", f"{len(result.failed)}" + (" (listed below and in failed_files)" if result.failed
                                                           else ""))
    console.print(table)
    for name, err in result.failed[: args.max_list]:
        console.print(f"  [red]unreadable[/red] {name}: {err}", highlight=False)
    if len(result.failed) > args.max_list:
        console.print(f"  ... and {len(result.failed) - args.max_list} more (see failed_files in {result.out})")
    return 0 if result.files else 1


def _add_embed_parser(sub) -> None:
    p = sub.add_parser(
        "embed", help="embed audio files or folders with a model -> .npz",
        description="Scene embeddings (and optionally timestamp embeddings) of every audio file given or found "
                    "recursively in the folders given. Unreadable files are skipped and listed. The .npz is read "
                    "with np.load(path) (no pickle): embeddings, files, durations_s, failed_files, ...")
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files and/or folders")
    p.add_argument("--model", required=True, help="registered name (audiorep.list_models()) or a model directory")
    p.add_argument("--out", required=True, help="output .npz (written atomically)")
    p.add_argument("--layer", type=_parse_layer, default="last",
                   help="last (default), all, a hidden-state index (-1) or a comma list (4,8,12)")
    p.add_argument("--pooling", default=None, choices=POOLINGS_CHOICES,
                   help="scene pooling (default: the model's)")
    p.add_argument("--frequency", default=None, choices=FREQUENCY_CHOICES,
                   help="a time step's frequency-row tokens averaged or stacked (default: the model's)")
    p.add_argument("--timestamps", action="store_true", help="also store timestamp embeddings (one per time patch)")
    p.add_argument("--batch-size", type=int, default=16, help="chunks per forward pass")
    p.add_argument("--max-list", type=int, default=20, help="most unreadable files to list on screen")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_embed)


# ------------------------------------------------------------------------------------ probe, leaderboard
def _cmd_probe(args: argparse.Namespace) -> int:
    import time

    from rich.console import Console
    from rich.table import Table

    from audiorep.audio.io import AudioError
    from audiorep.data.sources import DatasetError
    from audiorep.downstream.cache import CacheError, EmbeddingCache
    from audiorep.downstream.leaderboard import append_result
    from audiorep.downstream.probes import ProbeError
    from audiorep.downstream.tasks import TaskError, get_task, resolve_model
    from audiorep.downstream.tasks import run as run_task

    console = Console(stderr=True)
    try:
        spec = get_task(args.task)
    except TaskError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    root = args.data_root or spec.default_root
    if root is None or not Path(root).expanduser().exists():
        print(f"error: task {spec.name} needs --data-root (the dataset folder); "
              f"{'got ' + repr(root) + ', which does not exist' if root else 'none given'}.", file=sys.stderr)
        return 2
    start = time.time()
    try:
        if args.model.startswith("logmel"):
            options = {} if args.pooling is None else {"pooling": args.pooling}
        else:
            options = {"layer": args.layer, "pooling": args.pooling, "batch_size": args.batch_size,
                       "frequency": args.frequency}
        model = resolve_model(args.model, **options)
        result = run_task(spec, model, root, EmbeddingCache(args.cache), grid=args.grid, probe=args.probe,
                          seed=args.seed, max_folds=args.max_folds, model_name=args.name,
                          progress=not args.quiet, log=lambda m: console.print(m, highlight=False),
                          repeats=args.repeats)
    except (AudioError, CacheError, DatasetError, ProbeError, TaskError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # model loading errors come from the registry helper's module
        if type(err).__name__ in ("ModelDirError", "UnknownModelError", "EmbedError"):
            print(f"error: {err}", file=sys.stderr)
            return 2
        raise
    seconds = time.time() - start
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
    sel = result.extra["selected"]
    repeats = result.grid.get("repeats", 1)
    table.add_row("probe", f"{result.probe}, grid {result.grid.get('name', '')}"
                           f"{f' x {repeats} repeats' if repeats > 1 else ''}, seed {result.seed}; selected "
                           f"{_short_selection(sel[0])}" + (f" (+{len(sel) - 1} more splits)" if len(sel) > 1 else ""))
    table.add_row("time", f"{seconds:.1f} s")
    if args.results:
        table.add_row("results", str(args.results))
    Console().print(table)
    return 0


def _short_selection(sel: dict) -> str:
    keys = ("hidden_layers", "lr", "init", "best_epoch", "k")
    return ", ".join(f"{k}={sel[k]}" for k in keys if k in sel)


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    from rich.console import Console

    from audiorep.downstream.leaderboard import ResultsError, read_results, write_leaderboard

    console = Console()
    try:
        results = read_results(args.results)
        files = write_leaderboard(results, args.out, title=args.title)
    except ResultsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    console.print(_leaderboard_table(results, args.title))
    for kind, path in files.items():
        console.print(f"  {kind:<9} {path}", highlight=False)
    return 0


def _leaderboard_table(results, title: str):
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


def _add_probe_parsers(sub) -> None:
    from audiorep.downstream.tasks import TASKS

    p = sub.add_parser(
        "probe", help="embed a task's data with a model and train HEAR-style probes -> score table",
        description="Embed a dataset with a model (cached on disk), train the probe grid on every split (the whole "
                    "grid at once), select on validation, score the test split. Tasks: "
                    + "; ".join(f"{t.name}: {t.description}" for t in TASKS.values()) + ".")
    p.add_argument("--model", required=True,
                   help="registered name (audiorep.list_models()), a model directory, or logmel[-beats|-ssast|-passt] "
                        "(the log-mel mean/std baseline)")
    p.add_argument("--task", required=True, choices=sorted(TASKS), help="probing task")
    p.add_argument("--data-root", default=None, help="the dataset's folder (fsdd defaults to ../shared/data/fsdd)")
    p.add_argument("--grid", default="fast", choices=("fast", "full", "linear"),
                   help="probe grid: fast (6 points, <= 60 epochs), full (HEAR's 16 points, 500 epochs), linear")
    p.add_argument("--probe", default="mlp", choices=("mlp", "knn"), help="MLP/linear grid or cosine kNN")
    p.add_argument("--repeats", type=_positive_int, default=1,
                   help="train each grid configuration N times with other seeds; select and score on the mean "
                        "(N times the probe time, less probe noise on small tasks)")
    p.add_argument("--results", default=None, help="append the result row to this JSONL store")
    p.add_argument("--cache", default=None, help="embedding cache folder (default ~/.cache/audiorep/embeddings)")
    p.add_argument("--seed", type=int, default=0, help="seed of the probe grid and of group-fold assignment")
    p.add_argument("--max-folds", type=int, default=None, help="probe only the first K splits (quick runs)")
    p.add_argument("--name", default=None, help="model name in the results (default: the model's name)")
    p.add_argument("--layer", type=_parse_layer, default="last", help="encoder layer(s), as for `audiorep embed`")
    p.add_argument("--pooling", default=None, choices=POOLINGS_CHOICES,
                   help="scene pooling (default: the model's; the log-mel baseline: mean+std, or mean+std+delta)")
    p.add_argument("--frequency", default=None, choices=FREQUENCY_CHOICES,
                   help="a time step's frequency-row tokens averaged or stacked (default: the model's)")
    p.add_argument("--batch-size", type=int, default=16, help="chunks per forward pass")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or log lines")
    p.set_defaults(func=_cmd_probe)

    p = sub.add_parser(
        "leaderboard", help="results JSONL -> markdown table, static HTML page, CSV (HEAR layout too)",
        description="Tabulate the latest result per (model, task) of a results store written by `audiorep probe "
                    "--results FILE`: OUT/leaderboard.md, OUT/index.html (self-contained: sortable table, "
                    "heatmap, per-task bar charts), OUT/leaderboard.csv, OUT/hear_leaderboard.csv.")
    p.add_argument("results", metavar="RESULTS", help="results JSONL file")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--title", default="audiorep leaderboard", help="page title")
    p.set_defaults(func=_cmd_leaderboard)


# ----------------------------------------------------------------------------------------------- demo
def _cmd_demo(args: argparse.Namespace) -> int:
    import logging

    from audiorep import demo

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fsdd = None if args.no_fsdd else (Path(args.fsdd) if args.fsdd else demo.default_fsdd())
    if fsdd is not None and not fsdd.exists():
        print(f"error: --fsdd {fsdd} does not exist (pass the FSDD folder holding recordings/).", file=sys.stderr)
        return 2
    timing = {} if args.minutes is None else {"minutes": args.minutes}
    plan = demo.DemoPlan(out_dir=Path(args.out), per_class=args.per_class, seed=args.seed, fsdd=fsdd,
                         fsdd_folds=args.fsdd_folds, grid=args.grid, repeats=args.repeats, progress=not args.quiet,
                         **timing)
    demo.run_demo(plan)
    return 0


def _add_demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="the main job: synthetic corpus -> tiny pretraining -> probes -> leaderboard",
                       description="Generate the synthetic corpus, pretrain a tiny SSAST encoder for a few minutes, "
                                   "probe the log-mel baseline, the randomly initialised encoder and the pretrained "
                                   "encoder, and write the leaderboard (markdown, CSV, HTML). Reruns resume.")
    p.add_argument("--out", default="out/demo", help="output folder (corpus, training run, cache, results)")
    p.add_argument("--minutes", type=float, default=None,
                   help="pretraining budget in minutes on 2 CPU cores, turned into a fixed step count "
                        "(default 3.5 = 4,200 steps)")
    p.add_argument("--per-class", type=int, default=40, help="synthetic clips per class (12 classes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fsdd", help="Free Spoken Digit Dataset folder (default: ../shared/data/fsdd when present)")
    p.add_argument("--no-fsdd", action="store_true", help="skip the FSDD task")
    p.add_argument("--fsdd-folds", type=int, default=3, help="speaker-disjoint FSDD folds to probe (of 6)")
    p.add_argument("--grid", choices=("fast", "full", "linear"), default="fast", help="probe grid")
    p.add_argument("--repeats", type=_positive_int, default=1,
                   help="probe seeds per grid configuration, averaged (less probe noise, N times the probe time)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)


# ----------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audiorep",
        description="Self-supervised audio representations in JAX: pretrain, embed, probe.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="versions, JAX backend and devices")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("convert", help="official BEATs / SSAST / PaSST checkpoint -> audiorep model directory")
    p.add_argument("family", choices=CONVERT_FAMILIES, help="model family of the checkpoint")
    p.add_argument("ckpt", help="the official .pt/.pth file (read with weights_only safety; torch not required)")
    p.add_argument("out_dir", help="model directory to create (must not exist unless --force)")
    p.add_argument("--force", action="store_true", help="replace OUT_DIR if it exists")
    p.add_argument("--reader", choices=("auto", "torch", "builtin"), default="auto",
                   help="checkpoint reader: torch.load(weights_only=True) when installed (auto), or the built-in one")
    g = p.add_argument_group("ssast / passt: facts the official files do not store")
    g.add_argument("--num-heads", type=int, help="attention heads (default: width / 64, as every DeiT/ViT)")
    g.add_argument("--stride", type=int, nargs=2, metavar=("F", "T"),
                   help="patch stride: fine-tuned AST files (AST AudioSet: 10 10), PaSST s12/s14/s16 releases, or an "
                        "overlapping fine-tuning stride for SSAST pretraining files")
    g.add_argument("--frames", type=int, help="input window in frames (fine-tuned AST files: e.g. 1024)")
    g.add_argument("--mel-bins", type=int, help="mel bins of the input (default: from the file, else 128)")
    p.set_defaults(func=_cmd_convert)

    _add_features_parser(sub)
    _add_datasets_prepare(_add_datasets_parser(sub))
    _add_pretrain_parser(sub)
    _add_embed_parser(sub)
    _add_probe_parsers(sub)
    _add_demo_parser(sub)

    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if __name__ == "__main__" or Path(sys.argv[0]).name == "audiorep":
        _reexec_with_tcmalloc(argv)
        _use_compilation_cache()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # only commands that declare extra_args (pretrain: --config.<field>=<value>) take them
        if not hasattr(args, "extra_args"):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.extra_args = extra
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
