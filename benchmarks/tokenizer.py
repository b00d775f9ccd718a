r"""Acoustic tokenizers' labels per second, and the BEATs masked-token train step against PyTorch, in one run.

    .venv/bin/python benchmarks/tokenizer.py                  # labels: batch 4 x 10 s; step: ViT-B, batch 2 x 10 s
    .venv/bin/python benchmarks/tokenizer.py --quick          # fewer repeats and steps
    .venv/bin/python benchmarks/tokenizer.py --skip-torch --steps 2
    .venv/bin/python benchmarks/tokenizer.py --skip-labels    # the train step only
    .venv/bin/python benchmarks/tokenizer.py --check --skip-labels --skip-step   # same encoder on both sides?

1. Labels per second (patch labels and seconds of audio per second, median of --repeats after a warm-up call,
   compile excluded) of the three tokenizers on the same batch of 10 s clips at 16 kHz, each jitted from the
   waveform (the 'beats' frontend inside, 998 frames -> 62 x 8 = 496 patches per clip):
   - random projection (tokenizers/random_projection.py): 1024 codes of 16-d, on the raw 16x16 patches;
   - k-means (tokenizers/teacher.py TeacherTokenizer): nearest of 1024 unit centroids to the outputs of a
     BEATs base teacher (models/beats.py BEATS_BASE; random weights and centroids: speed does not depend on them);
   - distilled (tokenizers/distilled.py AcousticTokenizer at the released size 'beats-tokenizer': a BEATs base
     Transformer, quantize layer to 256-d, nearest of 1024 unit codewords; random weights and codebook).
   The frontend alone is timed too, so each tokenizer's own cost is the difference.
2. The BEATs masked-token train step: BEATs base (12 x 768, 90 M parameters) with the label predictor and a
   1024-way head, batch 2 x 10 s, 75 % of the 496 patches masked (the encoder sees the other 124), random-
   projection targets, cross-entropy over the masked codes, AdamW with grad-norm clipping; fp32 on both sides
   (configs/beats_iter.py trains in bf16):
   - audiorep: the masked_tokens objective on family 'beats' (pretrain/objectives.py, settings from
     configs/beats_iter.py) through the trainer's jitted step (pretrain/trainer.py `build_step`, which also
     carries the NaN guard), median of --steps after one warm-up step (compile excluded);
   - PyTorch eager, same shapes: benchmarks/torch_beats_step.py (modules written from microsoft/unilm
     beats/{BEATs,backbone}.py in train mode, the same fbank, tokenizer, visible-patch selection, label predictor,
     clipping and AdamW; on a CUDA GPU when there is one, with TF32 matmuls as XLA's default), in the Python
     named by $AUDIOREP_TORCH_PYTHON (skipped with a message when unset).
   Prints seconds per step for both and the ratio. `--check` first runs audiorep's BEATsEncoder on the tiny
   official-layout fixture (tests/fixtures/beats_tiny.pt) with a quarter of the patches kept and has the PyTorch
   step's encoder recompute it on the same weights (max abs difference printed; 1.3e-6 on 2026-12-05).

On CPU the script re-executes itself with tcmalloc preloaded when installed (as benchmarks/train_step.py);
PyTorch runs with its default allocator. Numbers from a machine shared with other jobs are noisy, and there
PyTorch's default thread pool (one thread per core) can lose several-fold to a single thread (seen 2026-12-05 at
load average 13-17: 32.6 s vs 13.2 s per step): `--torch-threads 0 1` times both. Compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import timing
import torch_baseline

# jax, flax and audiorep are imported inside the functions: the script re-executes itself with tcmalloc preloaded
# first (with_tcmalloc), and an allocator can only be chosen before they load.

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SAMPLE_RATE = 16000
CODEBOOK = 1024


def clips(batch: int, seconds: float) -> np.ndarray:
    """Deterministic test audio f32[batch, seconds * 16 kHz]: a chirp per clip plus noise, about -20 dBFS."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    rng = np.random.default_rng(0)
    rows = [0.1 * np.sin(2 * np.pi * (200 + 100 * i) * t * (1 + t / seconds)) + 0.02 * rng.standard_normal(n)
            for i in range(batch)]
    return np.stack(rows).astype(np.float32)


def with_tcmalloc() -> None:
    """Re-execute this script once with tcmalloc preloaded when it is installed (XLA:CPU steps ~25 % faster)."""
    from audiorep.cli.runtime import reexec_with_tcmalloc, tcmalloc_path

    if tcmalloc_path() is None:
        print("note: tcmalloc not installed; XLA:CPU steps are slower without it (libtcmalloc-minimal4)")
    reexec_with_tcmalloc(sys.argv[1:], script=__file__)


# ----------------------------------------------------------------------------------------- labels per second
def label_functions() -> dict:
    """{row name: jitted audio f32[B, samples] -> labels i32[B, N]} for the frontend-only row and each tokenizer."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from audiorep.audio import frontends
    from audiorep.models.beats import BEATS_BASE, BEATsEncoder
    from audiorep.tokenizers import RandomProjectionTokenizer, TeacherTokenizer
    from audiorep.tokenizers.distilled import TOKENIZER_PRESETS, AcousticTokenizer

    frontend = frontends.get_frontend("beats")
    patcher = BEATsEncoder(BEATS_BASE, rngs=nnx.Rngs(0))  # its patches(): the raw 16x16 patches in token order
    p = BEATS_BASE.input_patch_size
    projection = RandomProjectionTokenizer(in_dim=p * p, codebook_size=CODEBOOK, code_dim=16, seed=0)
    rng = np.random.default_rng(1)
    centroids = rng.standard_normal((CODEBOOK, BEATS_BASE.encoder_embed_dim)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=-1, keepdims=True)
    teacher = TeacherTokenizer(BEATsEncoder(BEATS_BASE, rngs=nnx.Rngs(1)), centroids)
    distilled = AcousticTokenizer(TOKENIZER_PRESETS["beats-tokenizer"], rngs=nnx.Rngs(2))
    book = rng.standard_normal(distilled.quantize.embedding[...].shape).astype(np.float32)
    distilled.quantize.embedding[...] = jnp.asarray(book / np.linalg.norm(book, axis=-1, keepdims=True))
    d_graph, d_state = nnx.split(distilled)

    def feats(audio):
        return frontend(audio)

    return {
        "beats frontend alone (fbank)": jax.jit(feats),
        "random projection (raw 16x16 patches)": jax.jit(lambda a: projection(patcher.patches(feats(a)))),
        "k-means (BEATs base teacher, 1024 centroids)": jax.jit(lambda a: teacher(feats(a))),
        "distilled (AcousticTokenizer 'beats-tokenizer')": jax.jit(
            lambda a: nnx.merge(d_graph, d_state).labels(feats(a))),
    }


def bench_labels(batch: int, seconds: float, repeats: int) -> list[tuple[str, float, float, int]]:
    """[(row, median wall s, median CPU s, labels per batch)] on one batch of clips."""
    import jax
    import jax.numpy as jnp

    audio = jnp.asarray(clips(batch, seconds))
    rows = []
    for name, fn in label_functions().items():
        out = jax.block_until_ready(fn(audio))  # compile + first call, not timed
        count = int(np.prod(out.shape[:2])) if out.dtype == jnp.int32 else 0
        wall, cpu = timing.median_seconds(lambda fn=fn: jax.block_until_ready(fn(audio)), repeats)
        rows.append((name, wall, cpu, count))
        print(f"  {name:<50} {wall:8.3f} s/batch", flush=True)
    return rows


# ----------------------------------------------------------------------------------------- the train step
def step_config(predictor_depth: int | None):
    """configs/beats_iter.py (992 frames = 62 x 8 patches, 372 masked, random-projection targets, label predictor,
    its AdamW settings) with fp32 compute, as the PyTorch side computes."""
    sys.path.insert(0, str(ROOT / "configs"))
    import beats_iter

    from audiorep.pretrain import trainer

    config = trainer.with_defaults(beats_iter.get_config())
    config.train.compute_dtype = "float32"
    config.objective.tokenizer = "random_projection"
    if predictor_depth is not None:
        config.objective.predictor_depth = predictor_depth
    return config


def bench_audiorep_step(config, batch: int, seconds: float, steps: int) -> tuple[float, float, dict, int]:
    """(median s/step, compile + first step s, last metrics, trained parameters) of the trainer's jitted
    masked_tokens step."""
    import time

    import jax
    import jax.numpy as jnp
    from flax import nnx

    from audiorep.pretrain import experiment, trainer
    from audiorep.pretrain.objectives import TokenPredictor

    fam, enc_cfg = experiment.encoder_config(config.model)
    frontend = experiment.build_frontend(config.frontend)
    objective = experiment.make_objective(config, frontend, enc_cfg)
    model = TokenPredictor(fam.build(enc_cfg, seed=0), objective.tokenizer.codebook_size, seed=0,
                           predictor_depth=int(config.objective.predictor_depth))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    count = experiment.param_count(model)
    tx, sched = trainer.make_optimizer(config.optim, 1000, params)
    state = dict(params=params, rest=rest, opt=tx.init(params), step=jnp.zeros((), jnp.int32),
                 key=jax.random.PRNGKey(0))
    step = jax.jit(trainer.build_step(graphdef, objective, tx, sched, config), donate_argnums=0)
    data = {"audio": jnp.asarray(clips(batch, seconds))}
    holder = {"state": state, "metrics": {}}

    def run():
        holder["state"], holder["metrics"] = step(holder["state"], data)
        jax.block_until_ready(holder["metrics"]["loss"])

    t0 = time.perf_counter()
    run()
    first = time.perf_counter() - t0
    wall, _ = timing.median_seconds(run, steps)
    return wall, first, {k: float(v) for k, v in holder["metrics"].items()}, count


def bench_torch_step(config, batch: int, seconds: float, steps: int, threads: int = 0) -> dict | None:
    """PyTorch's s/step for the same shapes and optimiser settings (benchmarks/torch_beats_step.py), or None."""
    py = torch_baseline.python()
    if py is None:
        print(f"  PyTorch step skipped: no torch interpreter (set {torch_baseline.ENV} to a Python with torch).")
        return None
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PYTHONPATH")}
    o, opt = config.objective, config.optim
    patches = (int(config.data.frames) // 16) * 8
    cmd = [py, str(ROOT / "benchmarks" / "torch_beats_step.py"), "--batch", str(batch), "--seconds", str(seconds),
           "--frames", str(config.data.frames), "--steps", str(steps), "--mask-ratio", str(o.masked / patches),
           "--predictor-depth", str(o.predictor_depth), "--codebook-size", str(o.codebook_size),
           "--lr", str(opt.lr), "--b1", str(opt.b1), "--b2", str(opt.b2), "--eps", str(opt.eps),
           "--weight-decay", str(opt.weight_decay), "--clip-norm", str(opt.clip_norm), "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        print(f"  PyTorch step failed (rc {proc.returncode}): {proc.stderr[-1500:]}")
        return None
    return json.loads(line[len("RESULT "):])


def check_same_encoder() -> None:
    """Run audiorep's BEATsEncoder on the tiny official-layout fixture (tests/fixtures/beats_tiny.pt) with a
    quarter of the patches kept, and have the PyTorch step's encoder recompute it on the same weights."""
    import tempfile

    import jax.numpy as jnp

    from audiorep.models.convert.beats import encoder_from_checkpoint
    from audiorep.models.convert.common import read_torch_zip

    py = torch_baseline.python()
    if py is None:
        print(f"  check skipped: no torch interpreter (set {torch_baseline.ENV}).")
        return
    encoder, _ = encoder_from_checkpoint(read_torch_zip(ROOT / "tests" / "fixtures" / "beats_tiny.pt"))
    rng = np.random.default_rng(0)
    fbank = rng.standard_normal((2, 165, 128)).astype(np.float32)
    n = (165 // 16) * 8
    keep = np.stack([np.sort(rng.permutation(n)[: n // 4]) for _ in range(2)]).astype(np.int32)
    tokens = np.asarray(encoder(jnp.asarray(fbank), keep=jnp.asarray(keep)).tokens)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "encoder.npz"
        np.savez(path, fbank=fbank, keep=keep, tokens=tokens)
        env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PYTHONPATH")}
        proc = subprocess.run([py, str(ROOT / "benchmarks" / "torch_beats_step.py"), "--check-against", str(path)],
                              capture_output=True, text=True, env=env)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        print(f"  check failed to run (rc {proc.returncode}): {proc.stderr[-1500:]}")
        return
    diff = json.loads(line[len("RESULT "):])["max_abs_diff"]
    print(f"  same encoder: PyTorch step's BEATs vs audiorep's on the tiny fixture weights, {n // 4} of {n} patches "
          f"kept: max abs difference {diff:.2e}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=torch_baseline.HELP)
    ap.add_argument("--batch", type=int, default=4, help="clips per batch for the labels/s rows")
    ap.add_argument("--seconds", type=float, default=10.0, help="clip length (both parts)")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per tokenizer (median reported)")
    ap.add_argument("--step-batch", type=int, default=2, help="clips per train step")
    ap.add_argument("--steps", type=int, default=3, help="timed train steps per side (median reported)")
    ap.add_argument("--predictor-depth", type=int, default=None,
                    help="label-predictor layers (default: configs/beats_iter.py's objective.predictor_depth)")
    ap.add_argument("--quick", action="store_true", help="2 repeats, 2 steps")
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--torch-threads", type=int, nargs="*", default=[0],
                    help="PyTorch thread counts to time (0: torch's default, one per core); on a machine shared with "
                         "other jobs one thread can beat the default (its threads wait on each other)")
    ap.add_argument("--skip-labels", action="store_true")
    ap.add_argument("--skip-step", action="store_true")
    ap.add_argument("--check", action="store_true", help="first check that the PyTorch step's encoder computes what "
                    "audiorep's does (tiny fixture weights, visible patches only)")
    args = ap.parse_args()
    with_tcmalloc()

    import jax

    repeats, steps = (2, 2) if args.quick else (args.repeats, args.steps)
    dev = jax.devices()[0]
    print(f"JAX {jax.__version__} on {dev.platform} ({dev.device_kind}), {os.cpu_count()} CPU threads; "
          f"LD_PRELOAD={os.environ.get('LD_PRELOAD', '') or '-'}; load average {os.getloadavg()[0]:.1f}")
    if args.check:
        check_same_encoder()
    if not args.skip_labels:
        print(f"Labels per second: batch {args.batch} x {args.seconds:g} s, jit, median of {repeats}", flush=True)
        rows = bench_labels(args.batch, args.seconds, repeats)
        audio_s = args.batch * args.seconds
        print(f"{'tokenizer':<50} {'s/batch':>8} {'CPU s':>8} {'labels/s':>10} {'audio s/s':>10}")
        for name, wall, cpu, count in rows:
            rate = f"{count / wall:10.0f}" if count else f"{'-':>10}"
            print(f"{name:<50} {wall:8.3f} {cpu:8.3f} {rate} {audio_s / wall:10.1f}")
    if not args.skip_step:
        config = step_config(args.predictor_depth)
        o = config.objective
        print(f"BEATs masked-token train step: BEATs base, batch {args.step_batch} x {args.seconds:g} s "
              f"({config.data.frames} frames), {o.masked} of {(config.data.frames // 16) * 8} patches masked, label "
              f"predictor {o.predictor_depth} blocks, {o.codebook_size} codes, AdamW, fp32; median of {steps}",
              flush=True)
        t_jax, first, metrics, count = bench_audiorep_step(config, args.step_batch, args.seconds, steps)
        print(f"  audiorep (JAX, trainer step, jit)          {t_jax:8.3f} s/step   (compile + first step "
              f"{first:.1f} s; loss {metrics['loss']:.3f}; {count / 1e6:.1f} M parameters)", flush=True)
        for threads in [] if args.skip_torch else args.torch_threads:
            res = bench_torch_step(config, args.step_batch, args.seconds, steps, threads)
            if res is None:
                break
            print(f"  PyTorch {res['torch']:<12} eager ({res['threads']} threads) {res['seconds']:8.3f} s/step   "
                  f"(loss {res['loss']:.3f}; {res['params'] / 1e6:.1f} M parameters; {res['device']})")
            print(f"  speed-up audiorep / PyTorch ({res['threads']} threads)    {res['seconds'] / t_jax:8.2f}x",
                  flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (other jobs on the machine slow every row; compare "
          "ratios within one quiet run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
