"""`audiorep features`: a model family's input features (Kaldi fbank / PaSST mel) of audio files, drawn to PNG."""

from __future__ import annotations

import argparse
from pathlib import Path

from audiorep.cli.common import Command, print_error
from audiorep.paths import output_file_problem, write_atomically

FEATURE_FRONTENDS = ("beats", "ssast", "passt")


def plot_features(path: Path, panels: list[tuple[str, object]], frontend) -> None:
    """One spectrogram panel per file (time in s, mel bin, colorbar), written atomically as PNG."""
    # matplotlib loads only when a PNG is asked for (slow import, optional for the command)
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
    try:
        write_atomically(path, lambda fh: fig.savefig(fh, dpi=100, format="png"))
    finally:
        plt.close(fig)


def png_problem(path: Path, force: bool) -> str | None:
    """Why --png cannot be written (a folder, an existing file without --force, under a file), or None."""
    return output_file_problem(path, flag="--png", example="features.png", overwrite=force, kind=".png file")


def run(args: argparse.Namespace) -> int:
    """Compute a model family's input features for audio files; print a summary, optionally draw them."""
    problem = png_problem(Path(args.png), args.force) if args.png else None
    if problem:  # before any work
        print_error(problem + ".")
        return 2
    # numpy/rich/the frontends (jax) load here: `audiorep --help` stays instant
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
            errors.append(err)
    if errors:  # every unreadable file listed, then exit 1 (nothing drawn)
        for err in errors:
            print_error(err)
        print_error(f"{len(errors)} of {len(args.files)} file(s) unreadable; nothing written.")
        return 1
    table = Table(title=f"{frontend.name} features ({frontend.sample_rate} Hz, hop {frontend.hop_samples} samples)")
    for col in ("file", "seconds", "frames x mels", "min", "mean", "max"):
        table.add_column(col, justify="left" if col == "file" else "right", overflow="fold")
    panels = []
    for path, wave in clips:
        try:
            feats = np.asarray(frontend(wave[None]))[0]
        except FrontendError as err:  # exit 1 with the file's name (the frontend does not know it)
            print_error(f"{path}: {err}")
            return 1
        panels.append((path.name, feats))
        table.add_row(str(path), f"{wave.size / frontend.sample_rate:.2f}", f"{feats.shape[0]} x {feats.shape[1]}",
                      f"{feats.min():.2f}", f"{feats.mean():.2f}", f"{feats.max():.2f}")
    Console().print(table)
    if args.png:
        plot_features(Path(args.png), panels, frontend)
        print(f"wrote {args.png}")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files (any format soundfile reads)")
    p.add_argument("--frontend", choices=FEATURE_FRONTENDS, default="beats",
                   help="beats: Kaldi fbank 128 @16 kHz; ssast: AST-style fbank @16 kHz; passt: PaSST mel @32 kHz")
    p.add_argument("--png", default=None, metavar="OUT", help="write one spectrogram panel per file to this PNG")
    p.add_argument("--force", action="store_true", help="replace the --png file if it exists")


COMMAND = Command(
    "features", help="compute a model's input features (Kaldi fbank / PaSST mel) and draw them",
    description="Load audio files at the frontend's rate, compute the normalised log-mel features a BEATs / SSAST / "
                "PaSST encoder sees, print their shape and range, and draw them with --png.",
    arguments=add_arguments, run=run)
