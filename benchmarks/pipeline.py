r"""Input pipeline throughput: 10-s clips through the grain train pipeline, ArrayRecord vs wav files.

    python benchmarks/pipeline.py                       # 200 clips, files at 16 kHz
    python benchmarks/pipeline.py --file-rate 44100     # files at 44.1 kHz: the wav path resamples every epoch
    python benchmarks/pipeline.py --workers 2 --clips 400

Generates the clips in a temp dir (a folder dataset of 16-bit wavs), builds the TFDS ArrayRecord copy
with `audiorep.data.tfds.prepare` (its build time is reported), then times whole epochs of
`train_dataset(..., clip_samples=10 s at 16 kHz)` from both sources in the same run, alternating the two
so that load from other processes hits both alike. Reports median clips/s and the ratio. Both sources
are read from the page cache (freshly written), so this measures decode + resample + crop + batch, not disk.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from audiorep.data import pipeline as pl
from audiorep.data.sources import read_dataset
from audiorep.data.tfds import prepare

TARGET_RATE = 16_000
SECONDS = 10.0


def write_clips(root: Path, clips: int, rate: int, seed: int = 0) -> None:
    """`clips` 10-s 16-bit wavs in 4 class folders: a tone in noise, different per clip."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SECONDS * rate)) / rate
    for i in range(clips):
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.05 * rng.standard_normal(t.size)
        folder = root / f"class{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"clip{i:04d}.wav", wave.astype(np.float32), rate, subtype="PCM_16")


def epoch_rate(source, args) -> float:
    """Clips per second over one epoch (first batch excluded: it pays for worker start-up)."""
    ds = pl.train_dataset(source, clip_samples=int(SECONDS * TARGET_RATE), batch_size=args.batch_size, seed=0,
                          num_epochs=1, shard=pl.Shard(0, 1), worker_count=args.workers,
                          read_threads=args.threads, prefetch=args.prefetch)
    it = iter(ds)
    first = next(it)
    start, clips = time.perf_counter(), 0
    for batch in it:
        clips += batch["audio"].shape[0]
    elapsed = time.perf_counter() - start
    if hasattr(it, "close"):
        it.close()
    assert first["audio"].shape == (args.batch_size, int(SECONDS * TARGET_RATE))
    return clips / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--file-rate", type=int, default=TARGET_RATE, help="sample rate of the generated wavs")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0, help="grain worker processes")
    parser.add_argument("--threads", type=int, default=2, help="read threads per process")
    parser.add_argument("--prefetch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tmp", type=Path, default=None, help="work dir (default: a fresh temp dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        write_clips(tmp / "wav", args.clips, args.file_rate)
        print(f"wrote {args.clips} x {SECONDS:g} s wavs at {args.file_rate} Hz in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        prepared = prepare("folder", tmp / "wav", tmp / "tfds", sample_rate=TARGET_RATE)
        build_s = time.perf_counter() - t0
        print(f"TFDS ArrayRecord build: {build_s:.1f} s ({args.clips / build_s:.1f} clips/s) -> {prepared.path}")

        wav_source = pl.records_source(read_dataset("folder", tmp / "wav"), TARGET_RATE)
        ar_source = pl.tfds_source(prepared.path, "train")
        rates: dict[str, list[float]] = {"wav files": [], "ArrayRecord": []}
        for r in range(args.repeats):
            rates["wav files"].append(epoch_rate(wav_source, args))
            rates["ArrayRecord"].append(epoch_rate(ar_source, args))
            print(f"  repeat {r + 1}: wav {rates['wav files'][-1]:.1f} clips/s, "
                  f"ArrayRecord {rates['ArrayRecord'][-1]:.1f} clips/s")

    wav, ar = statistics.median(rates["wav files"]), statistics.median(rates["ArrayRecord"])
    print(f"\n10-s clips at {TARGET_RATE} Hz, batch {args.batch_size}, workers {args.workers}, "
          f"threads {args.threads}, files at {args.file_rate} Hz, median of {args.repeats} epochs:")
    print(f"  {'source':<14}{'clips/s':>10}")
    print(f"  {'wav files':<14}{wav:>10.1f}")
    print(f"  {'ArrayRecord':<14}{ar:>10.1f}")
    print(f"  ArrayRecord / wav = {ar / wav:.2f}x")


if __name__ == "__main__":  # grain workers are spawned processes: keep the work under this guard
    main()
