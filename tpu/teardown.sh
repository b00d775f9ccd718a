#!/usr/bin/env bash
# Stop training (Ctrl-C semantics: each worker saves a checkpoint first), then delete the slice.
set -uo pipefail
source "$(dirname "$0")/env.sh"
tpu_ssh all "pkill -INT -f 'audiorep pretrain' && sleep 60" || true
gcloud compute tpus queued-resources delete "$NAME" --zone="$ZONE" --project="$PROJECT" --force --quiet
