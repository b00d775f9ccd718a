"""Detection plots and the scores behind them: DET curves on probit axes and bona fide / spoof score histograms as
PNG, and a run's per-split test scores as a plain .npz.

The tasks runner (downstream/tasks/runner.py) calls `write_detection_outputs` for 2-class detection tasks, one
folder per run; the leaderboard copies the PNGs into its assets folder and links them. A DET curve plots the
miss rate (bona fide rejected) against the false-alarm rate (spoof accepted) on normal-deviate axes, as the
ASVspoof and NIST evaluations draw them, one curve per split with its EER point marked. Drawn on matplotlib's
Agg canvas directly (no display, no pyplot state); what a picture shows (its kind and splits) is stored in the
PNG's text chunks, so tests and tools can read it back (`read_png_info`).

Score file (`scores.npz`, `np.load(path, allow_pickle=False)`): split i32[N] (index into split_names),
split_names U[S], score f64[N] (the detection score, higher = bona fide), bonafide bool[N], key U[N] (record
key: the audio path and window), and attack U[N] (attack id; '' for bona fide) when the data names attacks.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from scipy.special import ndtri

from audiorep.downstream.metrics import MetricError, det_curve, eer
from audiorep.paths import write_atomically

SCORES_FILE, DET_FILE, HISTOGRAM_FILE = "scores.npz", "det.png", "histogram.png"
DET_TICKS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.98, 0.99)
DET_LIMITS = (0.0005, 0.995)  # rates outside are drawn on the frame (0 and 1 have no normal deviate)


@dataclass
class SplitScores:
    """One split's test scores: score f64[N] (higher = bona fide), bonafide bool[N], key str[N], and the attack
    id of each row (str[N], '' for bona fide) or None when the data names no attacks."""

    name: str
    score: np.ndarray
    bonafide: np.ndarray
    key: np.ndarray
    attack: np.ndarray | None = None


def save_scores(path: str | os.PathLike, splits: Sequence[SplitScores]) -> None:
    """Write the splits' scores into one .npz (plain arrays, no pickles), atomically."""
    if not splits:
        raise MetricError("no splits to save; a detection run scores at least one split.")
    n = [len(s.score) for s in splits]
    arrays = {
        "split": np.repeat(np.arange(len(splits), dtype=np.int32), n),
        "split_names": np.array([s.name for s in splits], dtype=str),
        "score": np.concatenate([np.asarray(s.score, np.float64) for s in splits]),
        "bonafide": np.concatenate([np.asarray(s.bonafide, bool) for s in splits]),
        "key": np.concatenate([np.asarray(s.key, dtype=str) for s in splits]),
    }
    if any(s.attack is not None for s in splits):
        arrays["attack"] = np.concatenate([np.asarray(s.attack if s.attack is not None else [""] * len(s.score),
                                                      dtype=str) for s in splits])
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_atomically(Path(path), buf.getvalue())


def load_scores(path: str | os.PathLike) -> list[SplitScores]:
    """The splits of a score file written by `save_scores`."""
    with np.load(path, allow_pickle=False) as z:
        split, names = z["split"], z["split_names"]
        attack = z["attack"] if "attack" in z.files else None
        return [SplitScores(str(name), z["score"][split == i], z["bonafide"][split == i], z["key"][split == i],
                            None if attack is None else attack[split == i]) for i, name in enumerate(names)]


def _probit(p) -> np.ndarray:
    return ndtri(np.clip(np.asarray(p, np.float64), *DET_LIMITS))


def _png(fig: Figure, path: Path, info: dict[str, str]) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": "audiorep", **info})
    write_atomically(path, buf.getvalue())


def draw_det(splits: Sequence[SplitScores], path: str | os.PathLike, *, title: str = "") -> None:
    """DET curves (miss vs false-alarm rate, normal-deviate axes), one per split with its EER point, as a PNG."""
    fig = Figure(figsize=(5.2, 5.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for s in splits:
        tar, non = s.score[s.bonafide], s.score[~s.bonafide]
        if not (tar.size and non.size):
            continue
        frr, far, _ = det_curve(tar, non)
        e, _ = eer(tar, non)
        (line,) = ax.plot(_probit(far), _probit(frr), lw=1.4, label=f"{s.name}: EER {100 * e:.2f} %")
        ax.plot(_probit(e), _probit(e), "o", color=line.get_color(), mfc="none", ms=7)
    lo, hi = _probit(DET_LIMITS[0]), _probit(DET_LIMITS[1])
    ax.plot([lo, hi], [lo, hi], ls="--", color="0.6", lw=0.8)
    ticks = _probit(DET_TICKS)
    labels = [f"{100 * t:g}" for t in DET_TICKS]
    ax.set_xticks(ticks, labels, fontsize=7)
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("false-alarm rate: spoof accepted (%)")
    ax.set_ylabel("miss rate: bona fide rejected (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title(title or "DET curve", fontsize=10)
    _png(fig, Path(path), {"kind": "det", "splits": ",".join(s.name for s in splits)})


def draw_histograms(splits: Sequence[SplitScores], path: str | os.PathLike, *, title: str = "") -> None:
    """Bona fide and spoof score histograms (each class normalised to density), one panel per split, as a PNG."""
    cols = min(4, len(splits))
    rows = -(-len(splits) // cols)
    fig = Figure(figsize=(3.6 * cols, 2.6 * rows + 0.4), dpi=90, layout="constrained")
    FigureCanvasAgg(fig)
    for i, s in enumerate(splits):
        ax = fig.add_subplot(rows, cols, i + 1)
        edges = np.histogram_bin_edges(s.score, bins=int(np.clip(np.sqrt(s.score.size), 10, 50)))
        for mask, name, color in ((s.bonafide, "bona fide", "#2a9d8f"), (~s.bonafide, "spoof", "#e76f51")):
            if mask.any():
                ax.hist(s.score[mask], bins=edges, density=True, alpha=0.55, color=color,
                        label=f"{name} ({int(mask.sum())})")
        ax.set_title(s.name, fontsize=9)
        ax.set_xlabel("detection score (higher = bona fide)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.suptitle(title or "Score distributions", fontsize=10)
    _png(fig, Path(path), {"kind": "histogram", "splits": ",".join(s.name for s in splits)})


def write_detection_outputs(folder: str | os.PathLike, splits: Sequence[SplitScores], *,
                            title: str = "") -> dict[str, str]:
    """Write scores.npz, det.png and histogram.png into `folder` (created; each file atomically).
    Returns {'scores', 'det_png', 'histogram_png'}: absolute paths, as a result row records them."""
    out = Path(folder).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    save_scores(out / SCORES_FILE, splits)
    draw_det(splits, out / DET_FILE, title=title)
    draw_histograms(splits, out / HISTOGRAM_FILE, title=title)
    return {"scores": str(out / SCORES_FILE), "det_png": str(out / DET_FILE),
            "histogram_png": str(out / HISTOGRAM_FILE)}


def scores_dir_for(results: str | os.PathLike) -> Path:
    """Where the detection outputs of runs stored in a results file go: results.jsonl -> results-detection/."""
    path = Path(results).expanduser()
    return path.with_name(f"{path.stem}-detection")


def read_png_info(path: str | os.PathLike) -> dict[str, str]:
    """The text chunks of a PNG drawn here: {'kind': 'det' | 'histogram', 'splits': 'a,b', ...}."""
    with Image.open(path) as im:
        return dict(im.text)
