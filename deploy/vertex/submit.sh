#!/usr/bin/env bash
# Submits a Vertex AI custom training job from deploy/vertex/job_*.yaml: one machine
# with several GPUs (SPEC=single) or several machines (SPEC=multi, NUM_WORKERS of them).
#
#   SPEC=single PROJECT=my-project REGION=europe-west4 \
#   IMAGE_URI=europe-west4-docker.pkg.dev/my-project/dfd/dfd-train:v1 \
#   DATA_DIR=gs://my-bucket/tfds MODEL_DIR=gs://my-bucket/runs/r1 deploy/vertex/submit.sh
#
# Runtime: the submit call returns at once; the job provisions, then trains (not measured
# here: no GCP access from the build machine). Follow it with
# `gcloud ai custom-jobs stream-logs JOB --region=REGION`.
# Credentials: your Application Default Credentials submit; the job runs as the Vertex AI
# service agent or SERVICE_ACCOUNT, which needs storage access to DATA_DIR and MODEL_DIR.
set -euo pipefail
# shellcheck source=deploy/common.bash
source "$(dirname "${BASH_SOURCE[0]}")/../common.bash"

usage() {
    cat <<'USAGE'
Usage: [variables] deploy/vertex/submit.sh [--dry-run]

Required:
  PROJECT           Google Cloud project
  REGION            Vertex AI region with the GPUs, e.g. europe-west4
  IMAGE_URI         trainer image (deploy/docker/Dockerfile.gpu) in Artifact Registry
  DATA_DIR          gs:// TFDS data_dir
  MODEL_DIR         gs:// output folder (shared by all workers)
Optional:
  SPEC              single (default: one machine, its GPUs under MirroredStrategy)
                    or multi (NUM_WORKERS machines under MultiWorkerMirroredStrategy)
  NUM_WORKERS       machines for SPEC=multi, chief included (default 2)
  MACHINE_TYPE      default a2-highgpu-8g (single) / a2-highgpu-4g (multi)
  ACCELERATOR_TYPE  default NVIDIA_TESLA_A100
  ACCELERATOR_COUNT default 8 (single) / 4 (multi); must match MACHINE_TYPE
  FLAGFILE          default: the image's /app/deploy/configs/140k_resnet50_8gpu.cfg (single)
                    or multiworker.cfg (multi); a gs:// flagfile is read via /gcs/
  DISPLAY_NAME      default dfd-train-<UTC time>
  SERVICE_ACCOUNT   service account the job runs as
--dry-run prints the job spec and the gcloud command instead of submitting.
USAGE
}

parse_dry_run_args "$@"

require_vars deploy/vertex/submit.sh PROJECT REGION IMAGE_URI DATA_DIR MODEL_DIR
for name in DATA_DIR MODEL_DIR; do
    if [[ "${!name}" != gs://* ]]; then
        echo "error: $name=${!name} must be a gs:// URL: Vertex AI machines cannot see local files" >&2
        exit 2
    fi
done

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SPEC="${SPEC:-single}"
# OTHER_WORKERS is read through ${!name} below, which shellcheck cannot follow.
# shellcheck disable=SC2034
case "$SPEC" in
    single)
        template="$here/job_single_worker.yaml"
        MACHINE_TYPE="${MACHINE_TYPE:-a2-highgpu-8g}"
        ACCELERATOR_COUNT="${ACCELERATOR_COUNT:-8}"
        FLAGFILE="${FLAGFILE:-/app/deploy/configs/140k_resnet50_8gpu.cfg}"
        OTHER_WORKERS=0
        ;;
    multi)
        template="$here/job_multi_worker.yaml"
        MACHINE_TYPE="${MACHINE_TYPE:-a2-highgpu-4g}"
        ACCELERATOR_COUNT="${ACCELERATOR_COUNT:-4}"
        FLAGFILE="${FLAGFILE:-/app/deploy/configs/multiworker.cfg}"
        NUM_WORKERS="${NUM_WORKERS:-2}"
        if ! [[ "$NUM_WORKERS" =~ ^[0-9]+$ ]] || (( NUM_WORKERS < 2 )); then
            echo "error: NUM_WORKERS=$NUM_WORKERS must be an integer >= 2 for SPEC=multi" \
                 "(use SPEC=single for one machine)" >&2
            exit 2
        fi
        OTHER_WORKERS=$((NUM_WORKERS - 1))
        ;;
    *)
        echo "error: SPEC=$SPEC must be 'single' or 'multi'" >&2
        exit 2
        ;;
esac
ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-NVIDIA_TESLA_A100}"
DISPLAY_NAME="${DISPLAY_NAME:-dfd-train-$(date -u +%Y%m%d-%H%M%S)}"
if [[ "$FLAGFILE" == gs://* ]]; then
    # Vertex AI mounts Cloud Storage at /gcs/BUCKET/...; absl reads flagfiles as local files.
    FLAGFILE="/gcs/${FLAGFILE#gs://}"
fi

# Fill in the ${NAME} placeholders of the template's non-comment lines. The quoted
# replacement keeps '&' and '\' in values literal.
spec="$(grep -v '^[[:space:]]*#' "$template")"
for name in MACHINE_TYPE ACCELERATOR_TYPE ACCELERATOR_COUNT OTHER_WORKERS IMAGE_URI FLAGFILE \
            DATA_DIR MODEL_DIR; do
    placeholder="\${$name}"
    spec="${spec//"$placeholder"/"${!name}"}"
done
if [[ "$spec" == *"\${"* ]]; then
    echo "error: unfilled placeholder left in $template" >&2
    exit 1
fi
rendered="$(mktemp "${TMPDIR:-/tmp}/dfd-vertex-XXXXXX")"
trap 'rm -f "$rendered"' EXIT
printf '%s\n' "$spec" >"$rendered"

cmd=(gcloud ai custom-jobs create --project="$PROJECT" --region="$REGION"
     --display-name="$DISPLAY_NAME")
if [[ -n "${SERVICE_ACCOUNT:-}" ]]; then
    cmd+=(--service-account="$SERVICE_ACCOUNT")
fi

if [[ "$dry_run" == 1 ]]; then
    # The spec on stdout (what --config would get), the command on stderr.
    printf '%s\n' "$spec"
    printf '%q ' "${cmd[@]}" >&2
    echo "--config=<the spec above>" >&2
    exit 0
fi
# Fail in seconds rather than after provisioning when MODEL_DIR is not writable.
if command -v dfd-storage >/dev/null; then
    dfd-storage check-writable "$MODEL_DIR" >/dev/null
fi
"${cmd[@]}" --config="$rendered"
