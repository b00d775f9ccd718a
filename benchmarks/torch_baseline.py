"""Where the benchmarks find PyTorch for their baselines: the interpreter named by $AUDIOREP_TORCH_PYTHON.

torch is not a dependency of audiorep, so each PyTorch baseline runs in a subprocess of a separate Python
that has it (and numpy), for example:

    python3 -m venv ~/torch-env && ~/torch-env/bin/pip install torch numpy
    export AUDIOREP_TORCH_PYTHON=~/torch-env/bin/python

When the variable is unset (or names no file) the baselines are skipped with a message; the audiorep side
still runs. `bash benchmarks/gpu.sh` sets it to the GPU machine's python3.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "AUDIOREP_TORCH_PYTHON"
HELP = (f"PyTorch baseline: runs in the Python interpreter named by ${ENV} (one that has torch and numpy); "
        f"skipped with a message when it is unset.")


def python() -> str | None:
    """The interpreter in $AUDIOREP_TORCH_PYTHON when it names an existing file, else None."""
    cand = os.environ.get(ENV)
    if not cand:
        return None
    path = Path(cand).expanduser()
    return str(path) if path.exists() else None
