"""`python -m audiorep.cli ...`: the `audiorep` command (also what the tcmalloc re-exec runs)."""

import sys

from audiorep.cli import main

sys.exit(main(command=True))
