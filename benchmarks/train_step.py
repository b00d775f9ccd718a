r"""Train-step speed: audiorep's ViT-B step vs PyTorch eager, patchout, and bf16 — measured in one run.

  .venv/bin/python benchmarks/train_step.py                 # everything (~3-4 min on 2 CPU cores)
  .venv/bin/python benchmarks/train_step.py --steps 3 --skip-torch --skip-patchout
  bash benchmarks/gpu.sh OUT                                # on a GPU: batch 2 and 32, MFU, plus the probe benchmark

What is timed (median of --steps after warm-up steps, compile excluded), for each --batch (clips of 512 tokens):
1. audiorep: an SSAST-Base encoder (12 x 768, 12 heads, MLP 3072, 16x16 patches on 128 x 1024 features
   = 512 tokens) trained by the trainer's own jitted step (pretrain/trainer.py `build_step`:
   AdamW, grad-norm clipping, NaN guard), fp32; loss = mean squared token.
2. PyTorch eager, same shapes: Linear patch projection (256 -> 768) + 12 pre-LN
   `nn.TransformerEncoderLayer`s (GELU) + AdamW, fp32 (on a GPU also with TF32 matmuls, which is what XLA's
   default precision does) and autocast bf16 (on GPUs and bf16-capable CPUs); run in the Python named by
   $AUDIOREP_TORCH_PYTHON (one with torch; skipped with a message when it is unset).
3. audiorep with unstructured patchout (the encoder sees K of the 512 tokens, `keep`) at several keep
   fractions; the ideal speed-up (512 / K, linear in tokens; attention alone would give more) beside it.
4. audiorep with bf16 compute over fp32 master weights (train.compute_dtype='bfloat16'); on a GPU also with the
   einsum attention instead of cuDNN's fused attention ($AUDIOREP_ATTENTION=einsum), to show what fusion buys.
5. audiorep with per-block rematerialisation keeping only the matmul outputs (train.remat='dots').
On a GPU the table adds model FLOPs utilisation against the card's dense bf16 peak.

On CPU the script re-executes itself with tcmalloc preloaded when installed (XLA:CPU step ~25 % faster;
README, "CPU speed: tcmalloc"); PyTorch runs with its default allocator. Numbers from a machine shared with other jobs
are noisy: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch_baseline

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FRAMES, MELS, DIM, DEPTH, HEADS, MLP = 1024, 128, 768, 12, 12, 3072
TOKENS = (FRAMES // 16) * (MELS // 16)


def _maybe_tcmalloc() -> None:
    """Re-execute this script once with tcmalloc preloaded when it is installed (XLA:CPU steps ~25 % faster)."""
    from audiorep.cli.runtime import reexec_with_tcmalloc, tcmalloc_path

    if tcmalloc_path() is None:
        print("note: tcmalloc not installed; XLA:CPU steps are slower without it (libtcmalloc-minimal4)")
    reexec_with_tcmalloc(sys.argv[1:], script=__file__)


def _median_time(fn, steps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def step_flops(tokens: int, batch: int) -> float:
    """Training FLOPs of one step (3x the forward matmul FLOPs; attention scores included)."""
    per_token = DEPTH * (2 * 4 * DIM * DIM + 2 * 2 * DIM * MLP) + 2 * 256 * DIM
    attn = DEPTH * 2 * 2 * tokens * tokens * DIM
    return 3.0 * batch * (tokens * per_token + attn)


def bench_audiorep(steps: int, batch: int, *, keep: int | None = None, compute_dtype: str = "float32",
                   remat: str = "none") -> float:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from audiorep.models.ast import ASTConfig, ASTEncoder
    from audiorep.pretrain import trainer

    cfg = ASTConfig(dim=DIM, depth=DEPTH, num_heads=HEADS, mask_embed=False, pretrain_heads=False)
    model = ASTEncoder(cfg, rngs=nnx.Rngs(0))
    keep_idx = None
    if keep is not None:
        keep_idx = jnp.sort(jax.random.permutation(jax.random.key(1), TOKENS)[:keep])[None].repeat(batch, 0)

    def loss(m, batch, rng):
        del rng
        out = m(batch["x"], keep=keep_idx)
        return jnp.mean(out.tokens.astype(jnp.float32) ** 2), {}

    tc = trainer.default_train_config()
    tc.train.compute_dtype = compute_dtype
    tc.train.remat = remat
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx, sched = trainer.make_optimizer(tc.optim, 1000, params)
    state = dict(params=params, rest=rest, opt=tx.init(params), step=jnp.zeros((), jnp.int32),
                 key=jax.random.PRNGKey(0))
    step = jax.jit(trainer.build_step(graphdef, loss, tx, sched, tc), donate_argnums=0)
    batch = {"x": jax.random.normal(jax.random.key(2), (batch, FRAMES, MELS), jnp.float32)}
    holder = {"s": state}

    def run():
        holder["s"], metrics = step(holder["s"], batch)
        jax.block_until_ready(metrics["loss"])

    t0 = time.perf_counter()
    run()
    compile_s = time.perf_counter() - t0
    t = _median_time(run, steps, warmup=1)
    print(f"    (compile + first step {compile_s:.1f} s)", flush=True)
    return t


TORCH_SCRIPT = r"""
import json, sys, time, torch
STEPS, THREADS, B, DEVICE = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[4]), sys.argv[5]
WANT_BF16 = sys.argv[3] == "1"
torch.set_num_threads(THREADS)
N, DIM, DEPTH, HEADS, MLP = 512, 768, 12, 12, 3072
cuda = DEVICE == "cuda"
sync = torch.cuda.synchronize if cuda else (lambda: None)
torch.manual_seed(0)
layer = lambda: torch.nn.TransformerEncoderLayer(DIM, HEADS, MLP, dropout=0.0, activation="gelu",
                                                 batch_first=True, norm_first=True, layer_norm_eps=1e-6)
model = torch.nn.Sequential(torch.nn.Linear(256, DIM), *[layer() for _ in range(DEPTH)], torch.nn.LayerNorm(DIM))
model = model.to(DEVICE)
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
x = torch.randn(B, N, 256, device=DEVICE)
out = {"device": torch.cuda.get_device_name() if cuda else "cpu"}
a, w = torch.randn(1024, 768, device=DEVICE), torch.randn(768, 3072, device=DEVICE)
for dt, key in ((torch.float32, "matmul_fp32"), (torch.bfloat16, "matmul_bf16")):
    aa, ww = a.to(dt), w.to(dt)
    aa @ ww; sync()
    t = time.perf_counter(); aa @ ww; sync(); out[key] = time.perf_counter() - t
# (name, autocast dtype, TF32 matmuls): on a GPU, fp32 runs twice: strict (PyTorch's default) and with TF32
# matmuls (what XLA's default precision does for f32 dots on NVIDIA GPUs).
variants = [("fp32", None, False)]
if cuda:
    variants.append(("tf32", None, True))
if WANT_BF16:
    variants.append(("bf16_autocast", torch.bfloat16, False))
for name, ctx, tf32 in variants:
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    def step():
        opt.zero_grad(set_to_none=True)
        if ctx is None:
            y = model(x)
        else:
            with torch.autocast(DEVICE, dtype=ctx):
                y = model(x)
        loss = (y.float() ** 2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sync()
    for _ in range(3):
        step()
    ts = []
    for _ in range(STEPS):
        t = time.perf_counter(); step(); ts.append(time.perf_counter() - t)
    ts.sort()
    out[name] = ts[len(ts) // 2]
print("RESULT " + json.dumps(dict(out, torch=torch.__version__)))
"""


def native_bf16_cpu() -> bool:
    """True when the CPU has bf16 matmul instructions (AVX512-BF16 or AMX); without them PyTorch's bf16
    matmuls fall back to a slow path (seen: 55x slower than fp32 on an AVX2-only EPYC)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def matmul_probe() -> dict[str, float]:
    """Seconds for one f32 / bf16 [1024, 768] x [768, 3072] matmul in JAX."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (1024, 768))
    w = jax.random.normal(jax.random.key(1), (768, 3072))
    mm = jax.jit(lambda x, y: x @ y)
    out = {}
    for dt, key in ((jnp.float32, "matmul_fp32"), (jnp.bfloat16, "matmul_bf16")):
        x, y = a.astype(dt), w.astype(dt)
        mm(x, y).block_until_ready()
        out[key] = _median_time(lambda x=x, y=y: mm(x, y).block_until_ready(), 5, warmup=1)
    return out


def bench_torch(steps: int, threads: int, bf16: bool, batch: int, device: str) -> dict | None:
    py = torch_baseline.python()
    if py is None:
        print(f"PyTorch baseline skipped: no torch interpreter (set {torch_baseline.ENV}=/path/to/python with torch).")
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(TORCH_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PYTHONPATH")}
    try:
        args = [py, f.name, str(steps), str(threads), "1" if bf16 else "0", str(batch), device]
        proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=3600)
    finally:
        os.unlink(f.name)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        print(f"PyTorch baseline failed (rc {proc.returncode}): {proc.stderr[-800:]}")
        return None
    return json.loads(line[len("RESULT "):])


# Dense bf16 peak of the accelerators this has been run on (vendor datasheets), for model FLOPs utilisation.
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L4": 121.0}


def peak_tflops(device_kind: str) -> float | None:
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device_kind), None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=torch_baseline.HELP)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per variant (median reported)")
    ap.add_argument("--batch", type=int, nargs="*", default=[2],
                    help="batch sizes (clips of 512 tokens); the first gets every variant, the others fp32/bf16 only")
    ap.add_argument("--keep", type=float, nargs="*", default=[0.75, 0.5, 0.25], help="patchout keep fractions")
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--skip-patchout", action="store_true")
    ap.add_argument("--bf16", choices=("auto", "yes", "no"), default="auto",
                    help="time audiorep's bf16 step (auto: on GPUs/TPUs and CPUs with native bf16 matmuls; elsewhere "
                         "bf16 is emulated and ~8x slower than fp32)")
    ap.add_argument("--skip-remat", action="store_true")
    ap.add_argument("--torch-bf16", choices=("auto", "yes", "no"), default="auto",
                    help="time PyTorch's autocast bf16 step (auto: on GPUs and on CPUs with native bf16 matmuls)")
    args = ap.parse_args()
    _maybe_tcmalloc()

    import jax
    from rich.console import Console
    from rich.table import Table

    threads = os.cpu_count() or 1
    dev = jax.devices()[0]
    gpu = dev.platform == "gpu"
    peak = peak_tflops(dev.device_kind) if gpu else None
    print(f"JAX {jax.__version__} on {dev.platform} ({dev.device_kind}), {threads} CPU threads; "
          f"LD_PRELOAD={os.environ.get('LD_PRELOAD', '') or '-'}; load average {os.getloadavg()[0]:.1f}")
    if gpu:
        print(f"fp32 matmuls: JAX's default precision ({jax.config.jax_default_matmul_precision or 'DEFAULT'}: "
              "TF32 on NVIDIA GPUs); PyTorch is timed both strict fp32 (its default) and with TF32.")
    native = dev.platform != "cpu" or native_bf16_cpu()
    run_bf16 = args.bf16 == "yes" or (args.bf16 == "auto" and native)
    torch_bf16 = args.torch_bf16 == "yes" or (args.torch_bf16 == "auto" and native and args.bf16 != "no")
    if not native:
        print("note: this CPU has no native bf16 matmul (no avx512_bf16 / amx_bf16): bf16 is emulated, so both bf16 "
              "steps are skipped (--bf16 yes / --torch-bf16 yes force them)")
    rows = []
    for bi, batch in enumerate(args.batch):
        first = bi == 0
        print(f"audiorep fp32, {batch} x {TOKENS} tokens ...", flush=True)
        base = bench_audiorep(args.steps, batch)
        rows.append((batch, "audiorep (JAX) fp32", base, TOKENS, ""))
        torch_res = None if args.skip_torch else bench_torch(args.steps, threads, torch_bf16, batch,
                                                             "cuda" if gpu else "cpu")
        if torch_res:
            rows.append((batch, f"PyTorch {torch_res['torch']} eager fp32", torch_res["fp32"], TOKENS,
                         f"audiorep is {torch_res['fp32'] / base:.2f}x PyTorch's speed"))
            if "tf32" in torch_res:
                rows.append((batch, "PyTorch eager fp32, TF32 matmuls", torch_res["tf32"], TOKENS,
                             f"audiorep is {torch_res['tf32'] / base:.2f}x PyTorch's speed"))
        if first and not args.skip_remat:
            print("audiorep fp32, per-block remat 'dots' ...", flush=True)
            dots = bench_audiorep(args.steps, batch, remat="dots")
            ref = torch_res.get("tf32", torch_res["fp32"]) if torch_res else None
            note = f"{base / dots:.2f}x audiorep fp32" + (f"; {ref / dots:.2f}x PyTorch" if ref else "")
            rows.append((batch, "audiorep (JAX) fp32, train.remat='dots'", dots, TOKENS, note))
        if run_bf16:
            print("audiorep bf16 compute ...", flush=True)
            bf = bench_audiorep(args.steps, batch, compute_dtype="bfloat16")
            rows.append((batch, "audiorep (JAX) bf16 compute / fp32 params", bf, TOKENS,
                         f"{base / bf:.2f}x audiorep fp32"))
            if gpu:  # the same step with the einsum attention instead of cuDNN's fused one
                os.environ["AUDIOREP_ATTENTION"] = "einsum"
                try:
                    print("audiorep bf16 compute, einsum attention ...", flush=True)
                    ein = bench_audiorep(args.steps, batch, compute_dtype="bfloat16")
                finally:
                    os.environ.pop("AUDIOREP_ATTENTION")
                rows.append((batch, "audiorep bf16, einsum attention (not fused)", ein, TOKENS,
                             f"fused attention is {ein / bf:.2f}x faster"))
            if torch_res and "bf16_autocast" in torch_res:
                rows.append((batch, "PyTorch eager autocast bf16", torch_res["bf16_autocast"], TOKENS,
                             f"{torch_res['fp32'] / torch_res['bf16_autocast']:.2f}x PyTorch fp32; "
                             f"audiorep bf16 is {torch_res['bf16_autocast'] / bf:.2f}x its speed"))
        if first and not args.skip_patchout:
            for frac in args.keep:
                k = max(1, int(round(TOKENS * frac)))
                print(f"audiorep patchout keep {k}/{TOKENS} ...", flush=True)
                t = bench_audiorep(args.steps, batch, keep=k)
                rows.append((batch, f"audiorep patchout keep {frac:.2f}", t, k,
                             f"speed-up {base / t:.2f}x (ideal {TOKENS / k:.2f}x)"))
        if first:
            probe = matmul_probe()
            probe_rows = [("JAX", probe)] + ([(f"PyTorch {torch_res['torch']}", torch_res)] if torch_res else [])
            for name, pr in probe_rows:
                print(f"{name} matmul 1024x768x3072: fp32 {pr['matmul_fp32'] * 1e3:.2f} ms, "
                      f"bf16 {pr['matmul_bf16'] * 1e3:.2f} ms "
                      f"(bf16 = {pr['matmul_fp32'] / pr['matmul_bf16']:.2f}x fp32 speed)")
    title = f"Train step, ViT-B, batch x {TOKENS} tokens, AdamW (median of {args.steps}) on {dev.device_kind}"
    table = Table(title=title)
    for col in ("batch", "variant", "s/step", "tokens", "GFLOP/s" if not gpu else "TFLOP/s", "comparison"):
        table.add_column(col)
    if peak:
        table.add_column(f"MFU (of {peak:g} TFLOP/s bf16)")
    for batch, name, t, tokens, note in rows:
        rate = step_flops(tokens, batch) / t
        cells = [str(batch), name, f"{t:.4f}" if gpu else f"{t:.3f}", str(tokens),
                 f"{rate / 1e12:.1f}" if gpu else f"{rate / 1e9:.0f}", note]
        if peak:
            cells.append(f"{100 * rate / 1e12 / peak:.1f} %")
        table.add_row(*cells)
    Console(width=200).print(table)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (other jobs on the machine slow every variant; "
          "compare ratios within one quiet run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
