r"""Embedding throughput: scene clips/s, and timestamp embeddings in one pass vs a per-window loop.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 .venv/bin/python benchmarks/embed.py
    .venv/bin/python benchmarks/embed.py --models beats-tiny,passt-s-tiny --repeats 5

For each model (same process, same inputs: a batch of 10 s noise clips):
* scene: `Embedder.scene` on the batch -> clips/s (steady state; the first call, which compiles, is
  reported apart).
* timestamps, one pass: `Embedder.timestamps` (one forward per chunk, one embedding per time patch).
* timestamps, per-window loop, hear21passt's way: one forward pass per timestamp window (a 160 ms
  window, at least one patch, every 50 ms), batched over the clips as hear21passt does, through the same
  jitted function. Also with the hop set to our patch stride (same number of timestamps as one pass).
Ratios are printed beside each baseline; the baseline always runs in the same process on the same model.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _timed(fn, repeats: int) -> tuple[float, float]:
    """(first call seconds, median of `repeats` further calls)."""
    t = time.perf_counter()
    fn()
    first = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return first, statistics.median(times)


def per_window_loop(model, audio: np.ndarray, window_ms: float, hop_ms: float) -> np.ndarray:
    """hear21passt-style timestamps: one forward per window centred on each timestamp (reflect-padded audio).

    f32[B, n] -> f32[B, T, D]. Uses the Embedder's own jitted forward on one-patch-or-longer windows.
    """
    rate = model.sample_rate
    patches = 1
    while model.chunk_samples(patches) < window_ms * rate / 1000:
        patches += 1
    win = model.chunk_samples(patches)
    hop = hop_ms * rate / 1000
    n = audio.shape[1]
    centres = np.arange(0.0, n, hop)  # kept in float: no drift over long audio
    half = win // 2
    padded = np.pad(audio, ((0, 0), (half, win - half)), mode="reflect")
    fn = model._jit(False)
    valid = np.full(audio.shape[0], patches, np.int32)
    out = []
    for c in centres:  # the loop this benchmark measures
        start = int(round(c))
        res = fn(model._state, padded[:, start: start + win], valid)
        out.append(np.asarray(res["sum"]) / patches)
    return np.stack(out, axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="beats-tiny,ssast-patch-tiny,passt-s-tiny,beats",
                    help="comma-separated registry names or model directories")
    ap.add_argument("--batch", type=int, default=16, help="clips per call (and Embedder batch size)")
    ap.add_argument("--seconds", type=float, default=10.0, help="clip length")
    ap.add_argument("--repeats", type=int, default=2, help="timed calls after the first (compiling) one")
    ap.add_argument("--loop-models", default="beats-tiny,ssast-patch-tiny,passt-s-tiny",
                    help="models that also run the per-window loop baseline (it is slow on base models)")
    args = ap.parse_args()

    import jax

    import audiorep

    print(f"JAX {jax.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind}); batch {args.batch} x "
          f"{args.seconds:g} s clips; median of {args.repeats} after a first (compiling) call")
    rows = []
    for name in args.models.split(","):
        t = time.perf_counter()
        model = audiorep.load(name, batch_size=args.batch)
        load_s = time.perf_counter() - t
        rng = np.random.default_rng(0)
        audio = (0.1 * rng.standard_normal((args.batch, int(args.seconds * model.sample_rate)))).astype(np.float32)
        first, scene_s = _timed(lambda m=model, a=audio: m.scene(a), args.repeats)
        ts_first, ts_s = _timed(lambda m=model, a=audio: m.timestamps(a), args.repeats)
        n_ts = model.timestamps(audio[:1])[0].shape[1]
        print(f"\n{name}: load {load_s:.1f} s; {model!r}")
        print(f"  scene          {args.batch / scene_s:8.2f} clips/s  ({scene_s:.3f} s per batch; "
              f"first call {first:.1f} s)")
        print(f"  timestamps x1  {args.batch / ts_s:8.2f} clips/s  ({n_ts} timestamps per clip, every "
              f"{model.time_resolution_ms:g} ms; first call {ts_first:.1f} s)")
        row = {"model": name, "scene": args.batch / scene_s, "ts": args.batch / ts_s}
        if name in args.loop_models.split(","):
            for label, hop in (("hear21passt 160 ms window, 50 ms hop", 50.0),
                               (f"same hop {model.time_resolution_ms:g} ms", model.time_resolution_ms)):
                lf, loop_s = _timed(lambda m=model, a=audio, h=hop: per_window_loop(m, a, 160.0, h),
                                    max(1, args.repeats - 1))
                steps = int(np.ceil(audio.shape[1] / (hop * model.sample_rate / 1000)))
                print(f"  per-window loop ({label}): {args.batch / loop_s:8.2f} clips/s ({steps} forwards per batch;"
                      f" first call {lf:.1f} s) -> one pass is {loop_s / ts_s:.1f}x faster")
                row[f"loop {label}"] = loop_s / ts_s
        rows.append(row)
    print("\nsummary (clips/s; one-pass speed-up over the per-window loops)")
    for r in rows:
        extras = "  ".join(f"{k}: {v:.1f}x" for k, v in r.items() if k.startswith("loop"))
        print(f"  {r['model']:<18} scene {r['scene']:8.2f}   timestamps {r['ts']:8.2f}   {extras}")


if __name__ == "__main__":
    main()
