r"""BEATs base encoder forward: audiorep (JAX, jit) against a PyTorch forward of the official semantics, same run.

    .venv/bin/python benchmarks/beats_encoder.py            # batch 2 x 10 s (998 frames -> 496 tokens)
    .venv/bin/python benchmarks/beats_encoder.py --quick    # fewer repeats

The PyTorch side runs in a subprocess of the Python named by $AUDIOREP_TORCH_PYTHON (one with torch): the
forward pass of tests/fixtures/make_beats_fixture.py (plain torch ops transcribing microsoft/unilm
beats/{BEATs,backbone}.py in eval mode, including its q/32 attention arithmetic) on released-size random
weights, eager, torch's default threads. The JAX side is `BEATsEncoder(BEATS_BASE)` under jax.jit after a
warm-up call. Both take the same fbank shape; medians of `--repeats` runs. Prints seconds per batch and the
ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import torch_baseline

ROOT = Path(__file__).resolve().parents[1]


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_jax(batch: int, frames: int, repeats: int) -> float:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from audiorep.models.beats import BEATS_BASE, BEATsEncoder

    model = BEATsEncoder(BEATS_BASE, rngs=nnx.Rngs(0))
    graph, state = nnx.split(model)
    forward = jax.jit(lambda s, x: nnx.merge(graph, s)(x).tokens)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((batch, frames, 128)).astype(np.float32))
    forward(state, x).block_until_ready()
    return median_seconds(lambda: forward(state, x).block_until_ready(), repeats)


TORCH_SCRIPT = textwrap.dedent("""
    import json, statistics, sys, time
    import torch
    sys.path.insert(0, {fixtures!r})
    import make_beats_fixture as m
    cfg = dict(m.CFG, embed_dim=512, encoder_layers=12, encoder_embed_dim=768, encoder_ffn_embed_dim=3072,
               encoder_attention_heads=12, conv_pos=128, conv_pos_groups=16, num_buckets=320, max_distance=800)
    sd = m.make_state_dict(cfg, 0)
    x = torch.randn({batch}, {frames}, 128)
    with torch.no_grad():
        m.reference_forward(sd, cfg, x)
        times = []
        for _ in range({repeats}):
            t0 = time.perf_counter(); m.reference_forward(sd, cfg, x); times.append(time.perf_counter() - t0)
    print(json.dumps(dict(seconds=statistics.median(times), threads=torch.get_num_threads(),
                          version=torch.__version__)))
""")


def bench_torch(batch: int, frames: int, repeats: int) -> dict | None:
    py = torch_baseline.python()
    if py is None:
        return None
    script = TORCH_SCRIPT.format(fixtures=str(ROOT / "tests" / "fixtures"), batch=batch, frames=frames,
                                 repeats=repeats)
    res = subprocess.run([py, "-c", script], capture_output=True, text=True)
    if res.returncode != 0:
        print(f"torch baseline failed:\n{res.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, epilog=torch_baseline.HELP,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--frames", type=int, default=998, help="fbank frames (998 = 10 s at 16 kHz)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="2 repeats")
    args = ap.parse_args()
    repeats = 2 if args.quick else args.repeats
    tokens = (args.frames // 16) * 8
    print(f"BEATs base forward, batch {args.batch} x {args.frames} frames ({tokens} tokens), median of {repeats}")
    t_torch = bench_torch(args.batch, args.frames, repeats)
    t_jax = bench_jax(args.batch, args.frames, repeats)
    print(f"  audiorep JAX (jit)                 {t_jax:8.3f} s/batch")
    if t_torch is None:
        print(f"  PyTorch baseline                   skipped (set {torch_baseline.ENV} to a Python with torch)")
        return
    print(f"  PyTorch {t_torch['version']:<10} eager ({t_torch['threads']} threads) {t_torch['seconds']:8.3f} s/batch")
    print(f"  speed-up JAX / PyTorch             {t_torch['seconds'] / t_jax:8.2f}x")


if __name__ == "__main__":
    main()
