r"""Hand-crafted baselines' throughput: audiorep's batched LFCC / MFCC / CQCC against references, same run.

    .venv/bin/python benchmarks/detection.py            # 64 clips of 4 s, 5 repeats
    .venv/bin/python benchmarks/detection.py --quick    # 16 clips, 3 repeats

Clips: `--clips` clips of `--seconds` s at 16 kHz (noise + two harmonics; 4 s ~ an ASVspoof utterance).
For each feature, clips per second of
  * audiorep (audio/features.py): the whole batch at once (`--batch` clips per call), numpy/scipy
    (CQCC: librosa's VQT over the batch, then one matmul for resampling + DCT);
  * the reference one clip at a time, as a per-file extraction script runs it (tests/feature_reference.py):
    LFCC: a numpy transcription of the official ASVspoof 2019 MATLAB front end (extract_lfcc.m);
    MFCC: librosa.feature.mfcc with matched settings (and librosa on the whole batch, its multichannel mode);
    CQCC: cqcc.m's steps after a librosa VQT of the clip (spline resampling to 8,059 points, full DCT).
and the ratio audiorep / reference. Medians of `--repeats` runs after a warm-up call; clips per CPU-second
(all threads of the process) are printed too: on a machine shared with other jobs they stay comparable
when wall-clock rates do not. The outputs are checked equal (as tests/test_features.py does) before timing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import feature_reference as ref  # noqa: E402  (tests/: the per-clip references the tests check against)
from timing import median_seconds  # noqa: E402  (benchmarks/, next to this script)

from audiorep.audio import features as F  # noqa: E402


def make_clips(n: int, seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.05 * rng.standard_normal((n, len(t))) + 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 1870 * t)
    return x.astype(np.float32)


def batched(x: np.ndarray, cfg, batch: int):
    def run():
        return [F.extract(x[i:i + batch], None, cfg)[0] for i in range(0, len(x), batch)]
    return run


def per_clip(x: np.ndarray, fn):
    def run():
        return [fn(c) for c in x]
    return run


def librosa_batch_mfcc(x: np.ndarray):
    """librosa on the whole batch (multichannel), settings as ref.mfcc_librosa; static + deltas."""
    import librosa
    import scipy.signal

    def run():
        y = scipy.signal.lfilter([1, -0.97], 1, x.astype(np.float64), axis=-1)
        y = np.pad(y, ((0, 0), (96, 512 + 160)))
        s = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=160, win_length=320,
                                           window=ref.matlab_hamming(320), center=False, n_mels=20, fmin=0.0,
                                           fmax=8000.0, htk=True, norm=None)
        m = librosa.feature.mfcc(S=librosa.power_to_db(s, amin=1e-20, top_db=None), n_mfcc=20, norm="ortho") / 10
        d1 = 2 * librosa.feature.delta(m, width=3, mode="nearest")
        return np.concatenate([m, d1, 2 * librosa.feature.delta(d1, width=3, mode="nearest")], axis=-2)
    return run


def check(x: np.ndarray, cfg, fn) -> float:
    """Largest difference between audiorep and the reference on the first clip, relative to each column's size."""
    got = F.extract(x[:1], None, cfg)[0][0]
    want = fn(x[0])
    scale = np.maximum(np.abs(want).max(axis=0), 1e-6)
    return float(np.max(np.abs(got - want) / scale))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=64, help="clips per timed run (default 64)")
    ap.add_argument("--seconds", type=float, default=4.0, help="clip length (default 4 s)")
    ap.add_argument("--batch", type=int, default=32, help="audiorep clips per call (default 32)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is reported")
    ap.add_argument("--only", default="lfcc,mfcc,cqcc", help="comma-separated subset of lfcc,mfcc,cqcc")
    ap.add_argument("--quick", action="store_true", help="16 clips, 3 repeats")
    args = ap.parse_args(argv)
    if args.quick:
        args.clips, args.repeats = 16, 3
    import librosa
    from rich.console import Console
    from rich.table import Table

    console = Console(width=150)
    console.print(f"numpy {np.__version__}, librosa {librosa.__version__}; {os.cpu_count()} CPU cores; "
                  f"{args.clips} clips of {args.seconds:g} s at 16 kHz; audiorep batch {args.batch}; "
                  f"median of {args.repeats}")
    x = make_clips(args.clips, args.seconds)
    cases = {
        "lfcc": (F.PRESETS["lfcc"], lambda c: ref.extract_lfcc(c, 16000, 20, 512, 20),
                 "numpy transcription of extract_lfcc.m, per clip"),
        "mfcc": (F.PRESETS["mfcc"], ref.mfcc_librosa, "librosa.feature.mfcc, per clip"),
        "cqcc": (F.PRESETS["cqcc"], ref.cqcc, "cqcc.m steps on librosa.vqt, per clip"),
    }
    table = Table(title="hand-crafted baselines")
    for col in ("feature", "implementation", "clips/s", "clips/CPU-s", "audiorep speed-up", "max rel. diff"):
        table.add_column(col, justify="left" if col in ("feature", "implementation") else "right")
    for name in args.only.split(","):
        cfg, fn, what = cases[name]
        diff = check(x, cfg, fn)
        mine_fn, ref_fn = batched(x, cfg, args.batch), per_clip(x, fn)
        mine_fn(), ref_fn()  # warm-up: librosa's first call, filterbank / matrix caches
        mine = median_seconds(mine_fn, args.repeats)
        rows = [(what, median_seconds(ref_fn, max(1, args.repeats // 2 + 1)))]
        if name == "mfcc":
            lb = librosa_batch_mfcc(x)
            lb()
            rows.append(("librosa.feature.mfcc, whole batch", median_seconds(lb, args.repeats)))
        table.add_row(name, "audiorep, batched", f"{len(x) / mine[0]:.1f}", f"{len(x) / mine[1]:.1f}", "",
                      f"{diff:.1e}")
        for label, (wall, cpu) in rows:
            table.add_row("", label, f"{len(x) / wall:.1f}", f"{len(x) / cpu:.1f}", f"{wall / mine[0]:.2f}x", "")
        console.print(f"{name}: audiorep {len(x) / mine[0]:.1f} clips/s, reference ({what}) "
                      f"{len(x) / rows[0][1][0]:.1f} clips/s, ratio {rows[0][1][0] / mine[0]:.2f}")
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
