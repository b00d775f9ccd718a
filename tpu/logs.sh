#!/usr/bin/env bash
# Stream the training log of one worker (default 0, the one that writes metrics): tpu/logs.sh [WORKER]
set -euo pipefail
source "$(dirname "$0")/env.sh"
tpu_ssh "${1:-0}" "tail -n 50 -F ~/$LOG"
