#!/usr/bin/env bash
# Start the same `audiorep pretrain` on every worker (in the background, logging to ~/$LOG).
# The workdir is on GCS, so running this again after a preemption resumes from the last checkpoint.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cmd="cd ~/audiorep && nohup .venv/bin/audiorep pretrain --config $CONFIG --workdir $WORKDIR \
--config.distributed.mode=on --config.train.progress=false $EXTRA_ARGS >> ~/$LOG 2>&1 &"
tpu_ssh all "pkill -INT -f 'audiorep pretrain' || true; sleep 2; $cmd"
echo "launched on all workers of $NAME; follow with tpu/logs.sh"
