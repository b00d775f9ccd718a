"""Training curves: the loss, the learning rate and every objective metric of a run, one panel each, as a PNG.

The trainer (pretrain/trainer.py) draws WORKDIR/curves.png from its metrics rows at each checkpoint, and its
export copies the picture into the model directory as `training_curves.png`, which the leaderboard page links
for pretrained models. Drawn on matplotlib's Agg canvas directly (no display, no pyplot global state); the
panel names are stored in the PNG's text chunk `panels`, so what a picture shows can be read back
(`read_panels`).
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from audiorep.paths import write_atomically

CURVES_FILE = "curves.png"                 # in the training workdir
EXPORTED_CURVES_FILE = "training_curves.png"  # in an exported model directory
FIRST = ("loss", "lr", "grad_norm")        # trainer metrics, shown first; then the objective's, by name
NOT_CURVES = ("step", "steps_per_s")       # bookkeeping and speed, not training curves


def panel_names(rows: Sequence[Mapping[str, float]]) -> list[str]:
    """The panels to draw for metrics rows: loss, lr, grad_norm, then the objective's metrics in name order."""
    seen = {k for r in rows for k in r if k not in NOT_CURVES}
    return [k for k in FIRST if k in seen] + sorted(seen - set(FIRST))


def draw_curves(rows: Sequence[Mapping[str, float]], path: str | os.PathLike, *, title: str = "") -> list[str]:
    """Draw one panel per metric against the step and write it atomically to `path` (local or gs://).

    rows: metrics rows as in metrics.jsonl ({'step': int, name: float, ...}); non-finite values are left out.
    Returns the panel names, in drawing order (also stored in the PNG's `panels` text chunk).
    """
    names = panel_names(rows)
    cols = min(3, max(len(names), 1))
    nrows = max(math.ceil(len(names) / cols), 1)
    fig = Figure(figsize=(4.2 * cols, 2.8 * nrows), dpi=90, layout="constrained")
    FigureCanvasAgg(fig)
    for i, name in enumerate(names):
        ax = fig.add_subplot(nrows, cols, i + 1)
        points = [(r["step"], float(r[name])) for r in rows if name in r and math.isfinite(float(r[name]))]
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, lw=1.2)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if name == "lr":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    if title:
        fig.suptitle(title, fontsize=11)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"panels": ",".join(names), "Software": "audiorep"})
    write_atomically(path, buf.getvalue())
    return names


def read_panels(path: str | os.PathLike) -> list[str]:
    """The panel names stored in a curves PNG written by `draw_curves`."""
    with Image.open(path) as im:
        text = im.text.get("panels", "")
    return [n for n in text.split(",") if n]


def read_rows(lines: Iterable[str]) -> list[dict[str, float]]:
    """metrics.jsonl lines -> rows (blank lines skipped)."""
    return [json.loads(ln) for ln in lines if ln.strip()]
