#!/usr/bin/env bash
# Keep a spot run alive: when the slice is preempted (SUSPENDED/FAILED) or gone, recreate it, reinstall and
# relaunch; the run resumes from its last checkpoint in $WORKDIR. Stops when the export appears.
set -uo pipefail
here="$(dirname "$0")"
source "$here/env.sh"
while true; do
  if gsutil -q stat "$WORKDIR/export/audiorep_model.json" 2>/dev/null \
     || tpu_ssh 0 "grep -q '^done: step' ~/$LOG" 2>/dev/null; then
    echo "training finished"; exit 0
  fi
  state=$(qr_state)
  case "$state" in
    ACTIVE)
      if ! tpu_ssh all "pgrep -f 'audiorep pretrain' >/dev/null" >/dev/null 2>&1; then
        echo "$(date +%H:%M:%S) ACTIVE but not training on every worker: relaunching"
        "$here/launch.sh"
      fi ;;
    SUSPENDED|FAILED|"")
      echo "$(date +%H:%M:%S) slice is '${state:-absent}' (preempted?): recreating"
      [[ -n "$state" ]] && gcloud compute tpus queued-resources delete "$NAME" --zone="$ZONE" --project="$PROJECT" \
        --force --quiet
      "$here/create.sh" && "$here/setup.sh" && "$here/launch.sh" ;;
    *) echo "$(date +%H:%M:%S) $state" ;;
  esac
  sleep 300
done
