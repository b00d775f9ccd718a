"""Where an output may go and how it is written: one check, and one atomic write, shared by every command that
writes a file or folder.

Commands check their outputs before any work, so a bad path costs nothing, and write each file whole or not at all,
so a reader never sees half of one. Imports nothing of audiorep, so every layer may use it (as errors.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def nearest_existing(path: Path) -> Path:
    """`path` itself when it exists, else its nearest existing ancestor (the folder a new output would go into)."""
    existing = Path(path)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return existing


def output_location_problem(path: Path) -> str | None:
    """Why a new file or folder cannot be created at `path` (its nearest existing ancestor is a file, or a folder
    this process cannot write), or None. Checked before a command's work, so a bad output costs nothing."""
    existing = nearest_existing(Path(path).parent)
    if not existing.is_dir():
        return f"{path} lies under the file {existing}; choose a path under a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"the folder {existing} is not writable; choose a path you can write"
    return None


def output_file_problem(path: Path, *, flag: str, example: str, overwrite: bool, kind: str = "file") -> str | None:
    """Why `flag PATH` cannot take a new output file (a folder; an existing file without overwrite, i.e. --force;
    a bad location), or None. example: a file name to suggest under a folder; kind: what the file is, in words."""
    path = Path(path)
    if path.is_dir():
        return f"{flag} {path} is a folder; give the path of a {kind} (e.g. {path / example})"
    if path.exists() and not overwrite:
        return f"{flag} {path} already exists; choose another name, or pass --force to replace it"
    problem = output_location_problem(path)
    return f"{flag} {problem}" if problem else None


def is_remote(path) -> bool:
    """True for object-store paths (gs://, s3://): no atomic rename, no local folders."""
    return str(path).startswith(("gs://", "s3://"))


def write_atomically(path: str | os.PathLike, data: bytes | Callable[[BinaryIO], object]) -> None:
    """Write the file `path` whole or not at all. `data`: the bytes, or `write(fh)` that fills a binary file.

    Locally a temp file beside `path` (the folder must exist) replaces it (os.replace), and is removed when `write`
    fails. On an object store (gs://, s3://) the object is written in one upload, which readers see whole or not at
    all; there is no rename to do.
    """
    write = data if callable(data) else (lambda fh: fh.write(data))
    if is_remote(path):
        from etils import epath  # object stores only (etils comes with orbax); local writes need none of it

        with epath.Path(path).open("wb") as fh:
            write(fh)
        return
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
