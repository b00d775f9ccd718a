#!/usr/bin/env bash
# Install audiorep (this checkout) and JAX for TPU on every worker of the slice.
set -euo pipefail
source "$(dirname "$0")/env.sh"
root="$(cd "$(dirname "$0")/.." && pwd)"
tar=$(mktemp --suffix=.tar.gz)
git -C "$root" archive --format=tar.gz -o "$tar" HEAD        # committed files only
gcloud compute tpus tpu-vm scp "$tar" "$NAME":audiorep.tar.gz --worker=all --zone="$ZONE" --project="$PROJECT"
rm -f "$tar"
# uv brings Python 3.12 (the TPU images ship 3.10; current jax needs >= 3.12).
tpu_ssh all 'set -e
  command -v uv >/dev/null || curl -LsSf https://astral.sh/uv/install.sh | sh
  export PATH=$HOME/.local/bin:$PATH
  rm -rf ~/audiorep && mkdir -p ~/audiorep && tar -xzf ~/audiorep.tar.gz -C ~/audiorep
  cd ~/audiorep && uv venv -q -p 3.12 .venv
  uv pip install -q -p .venv/bin/python -e . "jax[tpu]" google-cloud-storage
  sudo apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1 || true
  .venv/bin/python -c "import jax; print(jax.process_index(), jax.local_device_count(), \"local devices\")"'
