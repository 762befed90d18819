#!/usr/bin/env bash
# GCE start-up script of a training VM made by deploy/gce/create_gpu_vm.sh; runs as root
# at every boot, so a Spot VM restarted after a preemption resumes training.
#
#   (set by create_gpu_vm.sh; to rerun by hand on the VM:)
#   sudo google_metadata_script_runner startup
#
# Steps: read the run's settings from instance metadata (dfd-*), skip if MODEL_DIR
# holds _SUCCESS already, wait for the NVIDIA driver, fetch the flagfile from GCS, run
# the trainer image on all GPUs (the trainer resumes from MODEL_DIR/backup when it
# exists), upload the log and an exit record to MODEL_DIR/vm_logs/, stop the VM.
# Runtime: the training run, plus the driver install and image pull on first boot
# (not measured here).
# Credentials: the VM's service account, through the metadata server; none in this file.
set -euo pipefail

usage() {
    cat <<'USAGE'
GCE start-up script (not run by hand): reads these instance metadata attributes:
  dfd-image           trainer image URI (required)
  dfd-flagfile        gs:// flagfile (required)
  dfd-data-dir        gs:// TFDS data_dir (required)
  dfd-model-dir       gs:// output folder (required)
  dfd-extra-args      more trainer flags, space-separated (optional)
  dfd-stop-when-done  1 (default) stops the VM when training ends
USAGE
}
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    usage
    exit 0
fi

METADATA_URL="http://metadata.google.internal/computeMetadata/v1/instance"
WORK_DIR=/var/lib/dfd
log() { echo "dfd-startup: $*"; }

metadata() {
    # An absent attribute is an empty string; the required ones are checked below.
    curl -fsS -H "Metadata-Flavor: Google" "$METADATA_URL/attributes/$1" 2>/dev/null || true
}

stop_vm() {
    if [[ "${STOP_WHEN_DONE:-1}" == 1 ]]; then
        log "stopping the VM"
        shutdown -h now
    fi
}

IMAGE="$(metadata dfd-image)"
FLAGFILE="$(metadata dfd-flagfile)"
DATA_DIR="$(metadata dfd-data-dir)"
MODEL_DIR="$(metadata dfd-model-dir)"
EXTRA_ARGS="$(metadata dfd-extra-args)"
STOP_WHEN_DONE="$(metadata dfd-stop-when-done)"
STOP_WHEN_DONE="${STOP_WHEN_DONE:-1}"

missing=()
[[ -n "$IMAGE" ]] || missing+=(dfd-image)
[[ -n "$FLAGFILE" ]] || missing+=(dfd-flagfile)
[[ -n "$DATA_DIR" ]] || missing+=(dfd-data-dir)
[[ -n "$MODEL_DIR" ]] || missing+=(dfd-model-dir)
if (( ${#missing[@]} )); then
    log "error: instance metadata lacks ${missing[*]}; recreate the VM with deploy/gce/create_gpu_vm.sh"
    stop_vm
    exit 2
fi

if gcloud storage objects describe "$MODEL_DIR/_SUCCESS" >/dev/null 2>&1; then
    log "$MODEL_DIR/_SUCCESS exists: this run finished earlier; nothing to do"
    stop_vm
    exit 0
fi

log "waiting for the NVIDIA driver (installed on first boot)"
for _ in $(seq 1 120); do
    if nvidia-smi >/dev/null 2>&1; then
        break
    fi
    sleep 10
done
if ! nvidia-smi; then
    log "error: no working NVIDIA driver after 20 minutes; check the image family (a Deep Learning VM image) and install-nvidia-driver=True"
    stop_vm
    exit 1
fi
command -v docker >/dev/null || { log "error: docker is missing on this image"; stop_vm; exit 1; }

mkdir -p "$WORK_DIR"
gcloud storage cp "$FLAGFILE" "$WORK_DIR/run.cfg"
chmod 0644 "$WORK_DIR/run.cfg"

registry="${IMAGE%%/*}"
if [[ "$registry" == *.pkg.dev || "$registry" == *gcr.io ]]; then
    gcloud auth configure-docker "$registry" --quiet
fi
docker pull "$IMAGE"

run_id="$(date -u +%Y%m%dT%H%M%SZ)"
log_file="$WORK_DIR/train-$run_id.log"
read -r -a extra <<<"$EXTRA_ARGS"
log "training: $IMAGE --flagfile=$FLAGFILE --data_dir=$DATA_DIR --model_dir=$MODEL_DIR ${extra[*]:-}"
status=0  # with pipefail, the pipeline's status is docker's (tee succeeds)
docker run --rm --gpus all --ipc=host --network=host \
    -v "$WORK_DIR/run.cfg:/etc/dfd/run.cfg:ro" \
    "$IMAGE" --flagfile=/etc/dfd/run.cfg --data_dir="$DATA_DIR" --model_dir="$MODEL_DIR" \
    "${extra[@]}" 2>&1 | tee "$log_file" || status=$?
log "trainer exited with status $status"

host="$(hostname)"
printf '{"vm": "%s", "run_id": "%s", "exit_status": %d, "image": "%s", "flagfile": "%s"}\n' \
    "$host" "$run_id" "$status" "$IMAGE" "$FLAGFILE" >"$WORK_DIR/exit-$run_id.json"
gcloud storage cp "$log_file" "$WORK_DIR/exit-$run_id.json" "$MODEL_DIR/vm_logs/$host/"
gcloud storage cp "$WORK_DIR/run.cfg" "$MODEL_DIR/vm_logs/$host/run-$run_id.cfg"
if [[ "$status" == 0 ]]; then
    echo "$run_id" | gcloud storage cp - "$MODEL_DIR/_SUCCESS"
fi
stop_vm
