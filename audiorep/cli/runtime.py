"""What the `audiorep` command sets up before any JAX import: tcmalloc (a re-exec) and XLA's compile cache.

Only the command does this; a library must not change its host's allocator or JAX settings.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

TCMALLOC_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
    "/usr/lib/libtcmalloc_minimal.so.4",
)


def tcmalloc_path() -> str | None:
    """The installed tcmalloc shared library, if any (Debian: libtcmalloc-minimal4)."""
    return next((p for p in TCMALLOC_CANDIDATES if os.path.exists(p)), None)


def reexec_with_tcmalloc(argv: list[str], *, script: str | None = None) -> None:
    """Restart this process with tcmalloc preloaded, once: `python -m audiorep.cli ARGV`, or `python SCRIPT ARGV`
    (a benchmark re-executing itself).

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
        program = [script] if script else ["-m", "audiorep.cli"]
        os.execve(sys.executable, [sys.executable, *program, *argv], env)
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


def use_compilation_cache() -> None:
    """Point JAX's persistent compilation cache at `compilation_cache_dir` (through the environment, read when
    jax is first imported; fields the user set already are kept)."""
    path = compilation_cache_dir(os.environ)
    if path is None or "jax" in sys.modules:
        return
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(path))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # the demo's programs take 0.1-0.2 s
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
