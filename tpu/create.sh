#!/usr/bin/env bash
# Request a TPU VM slice through a queued resource (spot by default) and wait until it is ACTIVE.
set -euo pipefail
source "$(dirname "$0")/env.sh"
spot=(); [[ "$SPOT" == 1 ]] && spot=(--spot)
gcloud compute tpus queued-resources create "$NAME" --node-id="$NAME" --zone="$ZONE" --project="$PROJECT" \
  --accelerator-type="$TYPE" --runtime-version="$RUNTIME" "${spot[@]}"
echo "waiting for $NAME ($TYPE) to become ACTIVE ..."
while true; do
  state=$(qr_state)
  echo "  $(date +%H:%M:%S) $state"
  [[ "$state" == ACTIVE ]] && break
  [[ "$state" == FAILED || "$state" == SUSPENDED ]] && { echo "queued resource is $state" >&2; exit 1; }
  sleep 30
done
