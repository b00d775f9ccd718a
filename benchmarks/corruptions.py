r"""Corruption throughput: seconds of audio corrupted per second, per corruption, one clip at a time.

    .venv/bin/python benchmarks/corruptions.py                       # all corruptions, 4 s clips at 16 kHz
    .venv/bin/python benchmarks/corruptions.py --quick               # 1 repeat
    .venv/bin/python benchmarks/corruptions.py --corruptions compression --severity 5 --rate 44100

Each corruption runs `audiorep.audio.corruptions.corrupt` on a speech-like clip (a harmonic tone with vibrato plus
noise) the way the robustness sweep calls it: one clip per call, a new seed per call. The first call is timed
apart ("first call"): it includes one-off work such as simulating the room of `reverb` (cached per rate and
level) or reading the background-noise folder. Rates are medians over --repeats runs of --clips clips; besides
wall-clock rates the audio seconds per CPU-second (all threads of this process) are printed, which stay comparable
on a machine shared with other jobs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from audiorep.audio import corruptions as C


def speech_like(seconds: float, rate: int, seed: int) -> np.ndarray:
    """f32[seconds * rate]: harmonics of a 120-220 Hz gliding fundamental, amplitude-modulated, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 170 + 50 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6.3))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    return (0.1 * voiced * envelope + 0.005 * rng.standard_normal(t.shape[0])).astype(np.float32)


def bench(name: str, clips: list[np.ndarray], rate: int, severity: int, repeats: int, context) -> tuple:
    """(first-call seconds, audio s per wall s, audio s per CPU s) for one corruption."""
    t0 = time.perf_counter()
    C.corrupt(clips[0], rate, name, severity, seed=0, context=context)
    first = time.perf_counter() - t0
    audio_seconds = sum(c.shape[0] for c in clips) / rate
    wall, cpu = [], []
    for r in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for i, clip in enumerate(clips):
            C.corrupt(clip, rate, name, severity, seed=r * len(clips) + i + 1, context=context)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return first, audio_seconds / statistics.median(wall), audio_seconds / max(statistics.median(cpu), 1e-9)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corruptions", default="all", help="'all', a family, or comma-separated names")
    parser.add_argument("--severity", type=int, default=3, help="1..5 (default 3)")
    parser.add_argument("--seconds", type=float, default=4.0, help="clip length (default 4 s)")
    parser.add_argument("--rate", type=int, default=16000)
    parser.add_argument("--clips", type=int, default=4, help="clips per repeat (default 4)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 repeat of 2 clips")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.clips = 1, 2
    names = C.select(args.corruptions)
    clips = [speech_like(args.seconds, args.rate, seed) for seed in range(args.clips)]
    with tempfile.TemporaryDirectory() as tmp:
        noise = np.random.default_rng(99).standard_normal(10 * args.rate).astype(np.float32) * 0.05
        sf.write(Path(tmp) / "noise.wav", noise, args.rate)
        pool = [speech_like(args.seconds, args.rate, seed) for seed in range(100, 108)]
        context = C.CorruptionContext(background_dir=tmp, babble_pool=pool)
        print(f"{len(names)} corruptions at severity {args.severity}, {args.clips} clips of {args.seconds:g} s at "
              f"{args.rate} Hz, median of {args.repeats}")
        print(f"{'corruption':<18} {'family':<13} {'level':>18} {'first call s':>12} {'audio s/s':>10} "
              f"{'audio s/CPU s':>13}")
        for name in names:
            spec = C.corruption(name)
            first, per_wall, per_cpu = bench(name, clips, args.rate, args.severity, args.repeats, context)
            level = f"{spec.level(args.severity):g} {spec.unit}"
            print(f"{name:<18} {spec.family:<13} {level:>18} {first:>12.3f} {per_wall:>10.1f} {per_cpu:>13.1f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
