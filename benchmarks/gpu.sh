#!/usr/bin/env bash
# The GPU checks in one go, for an NVIDIA GPU machine whose python3 has jax[cuda] and torch (it may have no internet).
# Sets AUDIOREP_TORCH_PYTHON to that python3, so the PyTorch baselines run on the same card.
#
#   bash benchmarks/gpu.sh [OUT_DIR]
#
# Needs flax and ml_collections wheels in .whl/ when the machine lacks them or has other versions:
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl flax==0.12.12 ml_collections==1.1.0
# Runs: the probe-grid benchmark (vmapped JAX grid vs one PyTorch MLP per point, both on the GPU), then the
# ViT-B train step (JAX fp32/TF32 and bf16 vs PyTorch eager fp32, TF32 and autocast bf16) at batch 2 and 32,
# with model FLOPs utilisation against the card's bf16 peak, then the tokenizers' labels/s and the BEATs masked-token
# train step against PyTorch (benchmarks/tokenizer.py). Logs go to OUT_DIR (default ./gpu_out).
set -uo pipefail
out=${1:-gpu_out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$out/nvidia-smi.txt"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX and the PyTorch subprocess share the card
export AUDIOREP_TORCH_PYTHON=$(command -v python3)
python3 -c "import jax, flax, optax, torch; print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__, 'torch', torch.__version__)" | tee "$out/versions.txt"
python3 - <<'EOF' | tee "$out/matmul_peak.txt"
import time, jax, jax.numpy as jnp
n = int(__import__('os').environ.get('PEAK_N', 8192))
a = jax.random.normal(jax.random.key(0), (n, n), jnp.bfloat16)
b = jax.random.normal(jax.random.key(1), (n, n), jnp.bfloat16)
mm = jax.jit(lambda x, y: x @ y)
for _ in range(3):
    mm(a, b).block_until_ready()
t = time.perf_counter()
for _ in range(20):
    c = mm(a, b)
c.block_until_ready()
dt = (time.perf_counter() - t) / 20
print(f"JAX bf16 matmul {n}^3: {2 * n ** 3 / dt / 1e12:.0f} TFLOP/s measured")
EOF
python3 benchmarks/probe.py --epochs ${EPOCHS:-60} 2>&1 | tee "$out/probe.txt"
python3 benchmarks/train_step.py --steps ${STEPS:-10} --batch ${BATCHES:-2 32} --keep 0.5 0.25 2>&1 | tee "$out/train_step.txt"
python3 benchmarks/tokenizer.py --steps ${STEPS:-10} 2>&1 | tee "$out/tokenizer.txt"
