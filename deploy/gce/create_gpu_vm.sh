#!/usr/bin/env bash
# Creates a GPU VM that trains once and stops itself: its start-up script
# (deploy/gce/startup.sh) fetches the flagfile from GCS, runs the trainer image on all
# GPUs, uploads the log and stops the VM.
#
#   PROJECT=my-project ZONE=europe-west4-a VM_NAME=dfd-train-1 \
#   IMAGE_URI=europe-west4-docker.pkg.dev/my-project/dfd/dfd-train:v1 \
#   FLAGFILE_URI=gs://my-bucket/configs/140k_resnet50_1gpu.cfg \
#   DATA_DIR=gs://my-bucket/tfds MODEL_DIR=gs://my-bucket/runs/r1 \
#   deploy/gce/create_gpu_vm.sh
#
# Runtime: the create call returns once the VM exists; the first boot also installs the
# NVIDIA driver and pulls the image before training starts (not measured here). Spot VMs (SPOT=1) are stopped, not
# deleted, on preemption; `gcloud compute instances start` reruns the start-up script
# and the trainer resumes from MODEL_DIR/backup.
# Credentials: the VM's service account (SERVICE_ACCOUNT, default: the Compute Engine
# default account) needs storage read/write on the buckets and Artifact Registry read.
set -euo pipefail
# shellcheck source=deploy/common.bash
source "$(dirname "${BASH_SOURCE[0]}")/../common.bash"

usage() {
    cat <<'USAGE'
Usage: [variables] deploy/gce/create_gpu_vm.sh [--dry-run]

Required:
  PROJECT        Google Cloud project
  ZONE           zone with the GPU type, e.g. europe-west4-a
  VM_NAME        instance name, e.g. dfd-train-1
  IMAGE_URI      trainer image (deploy/docker/Dockerfile.gpu) in Artifact Registry
  FLAGFILE_URI   gs:// flagfile, e.g. a copy of deploy/configs/140k_resnet50_1gpu.cfg
  DATA_DIR       gs:// TFDS data_dir written by the dataset build
  MODEL_DIR      gs:// output folder (checkpoints, backup/, export/)
Optional:
  MACHINE_TYPE   default n1-standard-8 (8 GPUs: e.g. a2-highgpu-8g)
  GPU_TYPE       default nvidia-tesla-t4 (e.g. nvidia-l4, nvidia-tesla-a100)
  GPU_COUNT      default 1; use a flagfile whose global batch fits (140k_resnet50_8gpu.cfg for 8)
  SPOT           1: Spot VM, stopped on preemption and resumed from MODEL_DIR/backup on restart
  BOOT_DISK_GB   default 200
  IMAGE_PROJECT  default deeplearning-platform-release
  IMAGE_FAMILY   default common-cu124-debian-11-py310 (a Deep Learning VM image with Docker;
                 list them: gcloud compute images list --project deeplearning-platform-release)
  SERVICE_ACCOUNT  e-mail of the VM's service account (default: Compute Engine default)
  EXTRA_ARGS     more trainer flags, space-separated, e.g. "--epochs=3"
  STOP_WHEN_DONE 1 (default): stop the VM when training ends; 0 keeps it running
--dry-run prints the gcloud command instead of running it.
USAGE
}

parse_dry_run_args "$@"

require_vars deploy/gce/create_gpu_vm.sh PROJECT ZONE VM_NAME IMAGE_URI FLAGFILE_URI DATA_DIR MODEL_DIR
for name in FLAGFILE_URI DATA_DIR MODEL_DIR; do
    if [[ "${!name}" != gs://* ]]; then
        echo "error: $name=${!name} must be a gs:// URL: the VM reads and writes it, and a" \
             "preempted VM resumes from what MODEL_DIR holds" >&2
        exit 2
    fi
done

MACHINE_TYPE="${MACHINE_TYPE:-n1-standard-8}"
GPU_TYPE="${GPU_TYPE:-nvidia-tesla-t4}"
GPU_COUNT="${GPU_COUNT:-1}"
BOOT_DISK_GB="${BOOT_DISK_GB:-200}"
IMAGE_PROJECT="${IMAGE_PROJECT:-deeplearning-platform-release}"
IMAGE_FAMILY="${IMAGE_FAMILY:-common-cu124-debian-11-py310}"
STOP_WHEN_DONE="${STOP_WHEN_DONE:-1}"
if ! [[ "$GPU_COUNT" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: GPU_COUNT=$GPU_COUNT must be a positive integer" >&2
    exit 2
fi

startup_script="$(dirname "${BASH_SOURCE[0]}")/startup.sh"
# '^@@^' makes '@@' the separator between metadata entries (gcloud topic escaping), so
# values may contain commas.
metadata="^@@^install-nvidia-driver=True"
metadata+="@@dfd-image=$IMAGE_URI@@dfd-flagfile=$FLAGFILE_URI"
metadata+="@@dfd-data-dir=$DATA_DIR@@dfd-model-dir=$MODEL_DIR"
metadata+="@@dfd-extra-args=${EXTRA_ARGS:-}@@dfd-stop-when-done=$STOP_WHEN_DONE"

cmd=(gcloud compute instances create "$VM_NAME"
     --project="$PROJECT" --zone="$ZONE"
     --machine-type="$MACHINE_TYPE"
     --accelerator="type=$GPU_TYPE,count=$GPU_COUNT"
     --maintenance-policy=TERMINATE
     --image-project="$IMAGE_PROJECT" --image-family="$IMAGE_FAMILY"
     --boot-disk-size="${BOOT_DISK_GB}GB" --boot-disk-type=pd-ssd
     --scopes=cloud-platform
     --metadata="$metadata"
     --metadata-from-file="startup-script=$startup_script")
if [[ -n "${SERVICE_ACCOUNT:-}" ]]; then
    cmd+=(--service-account="$SERVICE_ACCOUNT")
fi
if [[ "${SPOT:-0}" == 1 ]]; then
    cmd+=(--provisioning-model=SPOT --instance-termination-action=STOP)
fi

if [[ "$dry_run" == 1 ]]; then
    printf '%q ' "${cmd[@]}"
    echo
    exit 0
fi
"${cmd[@]}"
cat >&2 <<MSG
Created $VM_NAME. Follow the start-up script:
  gcloud compute instances tail-serial-port-output $VM_NAME --project=$PROJECT --zone=$ZONE
Training writes to $MODEL_DIR; the VM stops itself when done. After a Spot preemption:
  gcloud compute instances start $VM_NAME --project=$PROJECT --zone=$ZONE
MSG
