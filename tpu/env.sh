# Settings shared by the tpu/*.sh scripts. Edit, or export the variables before calling a script.
#   source tpu/env.sh   (the scripts do this themselves)
: "${PROJECT:=$(gcloud config get-value project 2>/dev/null)}"
: "${ZONE:=us-central2-b}"              # a zone that has your TPU type (v4: us-central2-b; v5e: e.g. us-west4-a)
: "${NAME:=audiorep-pod}"               # queued resource id and TPU node id
: "${TYPE:=v4-32}"                      # accelerator type: v4-32 = 16 chips on 4 hosts
: "${RUNTIME:=tpu-ubuntu2204-base}"     # v4: tpu-ubuntu2204-base; v5e: v2-alpha-tpuv5-lite; v5p: v2-alpha-tpuv5; v6e: v2-alpha-tpuv6e
: "${SPOT:=1}"                          # 1: spot capacity (cheap, preemptible); 0: on-demand
: "${CONFIG:=configs/ssast_patch_base.py}"
: "${WORKDIR:=gs://YOUR_BUCKET/audiorep/ssast-patch}"   # checkpoints + logs; every worker reads and writes it
: "${EXTRA_ARGS:=}"                     # more `--config.x=y` overrides for `audiorep pretrain`
: "${LOG:=audiorep-train.log}"          # log file in each worker's home directory
export PROJECT ZONE NAME TYPE RUNTIME SPOT CONFIG WORKDIR EXTRA_ARGS LOG

tpu_ssh() {  # tpu_ssh WORKER COMMAND   (WORKER: all | 0 | 1 ...)
  gcloud compute tpus tpu-vm ssh "$NAME" --zone="$ZONE" --project="$PROJECT" --worker="$1" --command="$2"
}

qr_state() {  # ACTIVE, WAITING_FOR_RESOURCES, PROVISIONING, SUSPENDED, FAILED, ... (empty when absent)
  gcloud compute tpus queued-resources describe "$NAME" --zone="$ZONE" --project="$PROJECT" \
    --format='value(state.state)' 2>/dev/null
}
