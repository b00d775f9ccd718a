"""`audiorep datasets list | inspect | synth | prepare | spoof`: local datasets, their readers, the synthetic corpus,
TFDS ArrayRecord copies and locally made spoofing attacks."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from audiorep.cli.common import (
    Command,
    add_quiet_argument,
    add_reader_option_argument,
    nonnegative_int,
    positive_int,
    print_error,
)
from audiorep.paths import output_location_problem


def coerce_option(value: str, param) -> object:
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


def reader_options(name: str, pairs: list[str] | None) -> dict:
    """`-o KEY=VALUE` pairs -> keyword options for `read_dataset(name, ...)`, typed by the reader's signature.

    Raises DatasetError for an unknown reader, an unknown key or a value of the wrong type.
    """
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
            out[key] = coerce_option(value, params[key])
        except ValueError as err:
            raise DatasetError(f"reader option {key}: {err}.") from None
    return out


def run_list(args: argparse.Namespace) -> int:
    # rich and the readers (numpy) load inside the commands: `audiorep --help` stays instant
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


def fmt_seconds(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.1f} s"


def run_inspect(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from audiorep.data.sources import DatasetError, check_audio, read_dataset

    console = Console()
    try:
        index = read_dataset(args.name, args.root, **reader_options(args.name, args.option))
    except DatasetError as err:
        print_error(err)
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
        summary.add_row("total duration", fmt_seconds(sum(durations.values())))
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
                           fmt_seconds(secs) if durations else "-")
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


def run_synth(args: argparse.Namespace) -> int:
    from audiorep.data.synthetic import CLASSES, write_corpus

    classes = tuple(c.strip() for c in args.classes.split(",")) if args.classes else CLASSES
    out = Path(args.out)
    problem = (f"{out} is a file; --out is the folder to write the corpus into" if out.exists() and not out.is_dir()
               else output_location_problem(out))
    if problem:  # before any work
        print_error(f"--out {problem}.")
        return 1
    try:
        index = write_corpus(args.out, args.per_class, args.seed, seconds=args.seconds, sample_rate=args.sample_rate,
                             classes=classes, clips_per_group=args.clips_per_group, overwrite=args.overwrite,
                             progress=True)
    except (FileExistsError, ValueError) as err:
        print_error(err)
        return 1
    print(f"wrote {len(index):,} clips of {len(index.classes)} classes to {index.root} (meta.csv, README.md); "
          f"inspect with: audiorep datasets inspect folder --root {index.root}")
    return 0


def add_inspect_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="reader name (audiorep datasets list)")
    p.add_argument("--root", required=True, help="the dataset's top folder on local disk")
    add_reader_option_argument(p, help="reader option, repeatable (e.g. -o esc10=true, -o num_classes=12, "
                                       "-o file_pattern='Y{ytid}.wav', -o label_regex='^(\\d)_')")
    p.add_argument("--no-audio-check", action="store_true", help="skip opening the audio files (no durations)")
    p.add_argument("--decode", action="store_true", help="decode every file fully (slow; catches truncated data)")
    p.add_argument("--skip-unreadable", action="store_true",
                   help="exit 0 even when some files are unreadable (they are still listed)")
    p.add_argument("--max-classes", type=nonnegative_int, default=60, help="most classes to show in the class table")
    p.add_argument("--max-list", type=nonnegative_int, default=20, help="most unreadable files to list")
    add_quiet_argument(p)


def add_synth_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder (created; must be empty unless --overwrite)")
    p.add_argument("--per-class", type=positive_int, required=True, help="clips per class")
    p.add_argument("--seed", type=int, default=0, help="random seed (the corpus is a function of the arguments)")
    p.add_argument("--seconds", type=float, default=2.0, help="clip length in seconds")
    p.add_argument("--sample-rate", type=int, default=16000, help="Hz")
    p.add_argument("--classes", default=None, help="comma-separated subset of the classes (default all)")
    p.add_argument("--clips-per-group", type=positive_int, default=4, help="clips that share a source (group id)")
    p.add_argument("--overwrite", action="store_true", help="replace a corpus previously written to --out")


def run_prepare(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from audiorep.audio.io import AudioError
    from audiorep.data.sources import DatasetError
    from audiorep.data.tfds import PrepareError, prepare, stale_builds

    console = Console()
    try:
        options = reader_options(args.name, args.option)
        for stale in stale_builds(args.out):
            console.print(f"[yellow]leftover of an interrupted build (never read as data; delete it when no "
                          f"other build runs):[/] {stale}")
        prepared = prepare(args.name, args.root, args.out, sample_rate=args.sample_rate, options=options,
                           skip_unreadable=args.skip_unreadable, num_workers=args.workers, overwrite=args.overwrite)
    except (DatasetError, PrepareError, AudioError) as err:
        print_error(err)
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


def add_prepare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="reader name (audiorep datasets list)")
    p.add_argument("--root", required=True, help="the dataset's top folder on local disk (TFDS manual dir)")
    p.add_argument("--out", required=True, help="TFDS data dir to write into")
    p.add_argument("--sample-rate", type=int, default=16000, help="store every clip at this rate, Hz")
    add_reader_option_argument(p, help="reader option, repeatable (as for `datasets inspect`); part of the config "
                                       "name")
    p.add_argument("--skip-unreadable", action="store_true",
                   help="skip (and list) unreadable audio instead of stopping at the first")
    p.add_argument("--workers", type=positive_int, default=1, help="decode in this many processes")
    p.add_argument("--overwrite", action="store_true", help="rebuild when this config was built before")


def run_spoof(args: argparse.Namespace) -> int:
    from audiorep.data.spoof import make_spoofs

    report = make_spoofs(args.source, args.out, args.attacks.split(","), seed=args.seed,
                         words=args.words, speaker_regex=args.speaker_regex,
                         speaker_meta=args.speaker_meta or "auto", sample_rate=args.sample_rate, limit=args.limit,
                         workers=args.workers, force=args.force, skip_unreadable=args.skip_unreadable,
                         world_f0=args.world_f0, tts_voice=args.tts_voice, progress=not args.quiet)
    speed = ", ".join(f"{a} {v:.1f}" for a, v in report.clips_per_second.items())
    print(f"wrote {report.sources:,} bona fide clips and {len(report.rows) - report.sources:,} spoofs "
          f"({', '.join(report.attacks)}) to {report.out} (bonafide/, spoof/<attack>/, labels.csv, spoof.json); "
          f"clips per CPU second per attack: {speed}")
    for message in report.skipped[:20]:
        print(f"skipped: {message}")
    unknown = sum(not r["speaker"] for r in report.rows if r["label"] == "bonafide")
    if unknown:
        print(f"{unknown:,} source clips have no speaker (each is then its own group in speaker-disjoint folds); "
              "name it with --speaker-regex")
    print(f"probe it: audiorep probe --task deepfake_folder --data-root {report.out} --protocol cross-attack")
    return 0


def add_spoof_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="source", required=True, metavar="BONAFIDE_DIR",
                   help="folder of bona fide speech (searched recursively), e.g. ../shared/data/fsdd/recordings")
    p.add_argument("--out", required=True, help="dataset folder to write (new or empty, or an earlier output with "
                                                "--force)")
    p.add_argument("--attacks", default="world,griffinlim,lpc",
                   help="comma-separated: world, griffinlim, lpc, tts (tts needs the apt package espeak-ng)")
    p.add_argument("--seed", type=int, default=0, help="random seed (the output is a function of the arguments)")
    p.add_argument("--words", default=None, metavar="CSV",
                   help="CSV of file,word: each clip's word (tts text, labels.csv word); FSDD names need none")
    p.add_argument("--speaker-regex", default=None,
                   help="regex on the path relative to --from whose group `speaker` (or group 1) is the speaker; "
                        "default: FSDD's <digit>_<speaker>_<take> file names")
    p.add_argument("--speaker-meta", default=None, metavar="CSV",
                   help="CSV of speaker plus gender/language copied into labels.csv "
                        "(default: SPEAKERS.csv in --from or its parent when present)")
    p.add_argument("--sample-rate", type=positive_int, default=None, help="resample every clip to this rate, Hz "
                                                                    "(default: keep each file's rate)")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="use this many files, evenly spread over the sorted list")
    p.add_argument("--workers", type=positive_int, default=1, help="processes; one job per source clip")
    p.add_argument("--world-f0", choices=("harvest", "dio"), default="harvest", help="WORLD's F0 estimator")
    p.add_argument("--tts-voice", default="en-us", help="espeak-ng voice (a variant is drawn per clip)")
    p.add_argument("--skip-unreadable", action="store_true", help="skip (and list) unreadable or too short inputs")
    p.add_argument("--force", action="store_true", help="replace an earlier `datasets spoof` output at --out")
    add_quiet_argument(p)


COMMAND = Command(
    "datasets", help="list, inspect, synthesise, prepare and spoof datasets",
    description="Local datasets: readers, inspection, the synthetic corpus, TFDS preparation, locally made spoofing "
                "attacks.",
    subcommands=(
        Command("list", help="the dataset readers and the on-disk layout each expects", run=run_list),
        Command("inspect", help="counts per split / fold / class, duration, missing and unreadable files",
                arguments=add_inspect_arguments, run=run_inspect),
        Command("synth", help="write the synthetic sound-event corpus (folder layout, 16 kHz wav)",
                arguments=add_synth_arguments, run=run_synth),
        Command("prepare", help="build a TFDS ArrayRecord copy (int16 at one rate) for fast training input",
                description="Read a dataset with its reader and write it as a TFDS ArrayRecord dataset under "
                            "OUT/audiorep_NAME/CONFIG/1.0.0 (atomic: an interrupted build never reads as data).",
                arguments=add_prepare_arguments, run=run_prepare),
        Command("spoof", help="make a deepfake_folder dataset from bona fide speech with local attacks",
                description="Resynthesise every bona fide clip with signal-processing attacks (WORLD vocoder, "
                            "Griffin-Lim from a mel spectrogram, LPC vocoder, espeak-ng TTS) and write "
                            "OUT/bonafide/, OUT/spoof/<attack>/ and OUT/labels.csv. Each spoof gets its source's "
                            "length and RMS, and every clip of a source the same noise-floor treatment, so duration, "
                            "loudness and silence do not give the class away.",
                arguments=add_spoof_arguments, run=run_spoof),
    ))
