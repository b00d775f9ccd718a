"""`audiorep info`: versions, allocator, compile cache, JAX backend and devices."""

from __future__ import annotations

import argparse
import importlib.metadata as md
import os
import platform

from audiorep.cli.common import Command
from audiorep.cli.runtime import tcmalloc_path

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "tensorflow-datasets", "numpy",
            "soundfile", "soxr", "torch")


def run(args: argparse.Namespace) -> int:
    # jax and audiorep (which imports jax) load here, not at module level: `audiorep --help` stays instant
    import jax

    import audiorep

    print(f"audiorep {audiorep.__version__}  (Python {platform.python_version()}, {platform.machine()})")
    for pkg in PACKAGES:
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


COMMAND = Command("info", help="versions, JAX backend and devices", run=run)
