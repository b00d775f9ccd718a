r"""Streaming detection scores: real-time factor and latency per block, on CPU.

    .venv/bin/python benchmarks/stream.py
    .venv/bin/python benchmarks/stream.py --models beats-tiny --seconds 60 --window-ms 4000 --hop-ms 500

For each model (registered name, fixed-seed random weights: speed does not depend on the weights): a detection head
(a 1-hidden-layer probe trained for a few epochs on random embeddings of the model's size; its cost is that of any
trained head) scores a sliding window over generated audio pushed in blocks, as `audiorep stream` does:
* real-time factor: compute time / audio time (below 1: keeps up with a live source);
* latency per block: time from a block's arrival to its results (mean, p95, max), after a warm-up that compiles the
  window's forward pass (as `audiorep stream` does before reading);
* peak RSS growth over the run (bounded: the streamer keeps one window and one block).
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

import audiorep
from audiorep.downstream import probes
from audiorep.downstream.heads import Head, model_of
from audiorep.downstream.stream import Streamer


def toy_head(model) -> Head:
    """A trained 1-hidden-layer detection head for `model`'s embedding size (random data, a few epochs)."""
    d, rng = model.scene_embedding_size, np.random.default_rng(0)
    x, y = rng.standard_normal((64, d)).astype(np.float32), (np.arange(64) % 2).astype(np.int32)
    grid = probes.Grid("bench", (probes.GridPoint(hidden_layers=1, hidden_dim=1024),), probes.Schedule(max_epochs=3))
    res = probes.fit_probe(x, y, x, y, x, y, num_classes=2, grid=grid)
    return Head.from_probe(res.head, classes=["spoof", "bonafide"], positive=1, multilabel=False, model=model_of(model))


def bench(name: str, seconds: float, window_ms: float, hop_ms: float, block_ms: float) -> dict:
    model = audiorep.load(name)
    streamer = Streamer(model, window_ms, hop_ms, head=toy_head(model))
    t = time.perf_counter()
    streamer.warm_up()
    compile_s = time.perf_counter() - t
    rate, block = model.sample_rate, int(block_ms * model.sample_rate / 1000)
    rng = np.random.default_rng(1)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    latencies, steps = [], 0
    for _ in range(int(seconds * rate) // block):
        x = (0.1 * rng.standard_normal(block)).astype(np.float32)
        t = time.perf_counter()
        steps += len(streamer.push(x))
        latencies.append(time.perf_counter() - t)
    lat = np.array(latencies) * 1000
    audio_s = streamer.received / rate
    return {"model": name, "audio_s": audio_s, "windows": steps, "rtf": lat.sum() / 1000 / audio_s,
            "lat_mean": lat.mean(), "lat_p95": np.percentile(lat, 95), "lat_max": lat.max(), "compile_s": compile_s,
            "rss_growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="beats-tiny,beats")
    ap.add_argument("--seconds", type=float, default=20.0, help="audio streamed per model")
    ap.add_argument("--window-ms", type=float, default=4000.0)
    ap.add_argument("--hop-ms", type=float, default=500.0)
    ap.add_argument("--block-ms", type=float, default=100.0)
    args = ap.parse_args()
    print(f"window {args.window_ms:g} ms, hop {args.hop_ms:g} ms, blocks of {args.block_ms:g} ms, "
          f"{args.seconds:g} s of audio per model")
    print(f"{'model':<12} {'windows':>7} {'RTF':>7} {'lat mean':>9} {'p95':>8} {'max':>8} {'compile':>8} {'RSS +':>7}")
    for name in args.models.split(","):
        r = bench(name, args.seconds, args.window_ms, args.hop_ms, args.block_ms)
        print(f"{r['model']:<12} {r['windows']:>7} {r['rtf']:>7.3f} {r['lat_mean']:>7.1f}ms {r['lat_p95']:>6.1f}ms "
              f"{r['lat_max']:>6.1f}ms {r['compile_s']:>7.1f}s {r['rss_growth_mb']:>5.0f}MB", flush=True)


if __name__ == "__main__":
    main()
