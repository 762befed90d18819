#!/usr/bin/env bash
# Runs the dataset build (python -m tfds_builder.build) on Dataflow: reads the raw
# images from MANUAL_DIR on GCS, writes the TFDS dataset under DATA_DIR.
#
#   PROJECT=my-project REGION=europe-west4 \
#   MANUAL_DIR=gs://my-bucket/raw/real_vs_fake DATA_DIR=gs://my-bucket/tfds \
#   TEMP_LOCATION=gs://my-bucket/dataflow/tmp deploy/dataflow/launch_build.sh
#
# Runtime: the launcher blocks until the job ends: worker start-up, then a build that
# scales with MAX_NUM_WORKERS (not measured here: no GCP access from the build machine).
# Needs, on the launching machine: pip install -e ".[cpu,dataflow]" and Application
# Default Credentials (gcloud auth application-default login). Workers run as the
# Dataflow worker service account (SERVICE_ACCOUNT to choose another).
set -euo pipefail
# shellcheck source=deploy/common.bash
source "$(dirname "${BASH_SOURCE[0]}")/../common.bash"

usage() {
    cat <<'USAGE'
Usage: [variables] deploy/dataflow/launch_build.sh [--dry-run] [more tfds_builder.build flags]

Required:
  PROJECT              Google Cloud project
  REGION               Dataflow region, e.g. europe-west4
  MANUAL_DIR           gs:// folder with the raw images (Kaggle layout or <split>/{real,fake}/),
                       staged with: dfd-storage upload ./real_vs_fake gs://BUCKET/raw
  DATA_DIR             gs:// TFDS data_dir to write
  TEMP_LOCATION        gs:// folder for Dataflow's temporary files
Optional:
  STAGING_LOCATION     default $TEMP_LOCATION/staging
  WORKER_MACHINE_TYPE  default n1-standard-4
  MAX_NUM_WORKERS      default 10
  JOB_NAME             default dfd-build-<UTC time>
  SDK_CONTAINER_IMAGE  worker image built with deploy/docker/Dockerfile.cpu --target dataflow;
                       without it workers pip-install deploy/dataflow/requirements.txt
  SERVICE_ACCOUNT      worker service account e-mail
  PYTHON               default python3
Arguments are passed to tfds_builder.build (e.g. --overwrite, --target_shard_size_mb=200).
--dry-run prints the command instead of running it.
USAGE
}

dry_run=0
build_args=()
for arg in "$@"; do
    case "$arg" in
        -h|--help) usage; exit 0 ;;
        --dry-run) dry_run=1 ;;
        *) build_args+=("$arg") ;;
    esac
done

require_vars deploy/dataflow/launch_build.sh PROJECT REGION MANUAL_DIR DATA_DIR TEMP_LOCATION
for name in MANUAL_DIR DATA_DIR TEMP_LOCATION; do
    if [[ "${!name}" != gs://* ]]; then
        echo "error: $name=${!name} must be a gs:// URL: Dataflow workers cannot see local files" >&2
        exit 2
    fi
done
STAGING_LOCATION="${STAGING_LOCATION:-${TEMP_LOCATION%/}/staging}"
WORKER_MACHINE_TYPE="${WORKER_MACHINE_TYPE:-n1-standard-4}"
MAX_NUM_WORKERS="${MAX_NUM_WORKERS:-10}"
JOB_NAME="${JOB_NAME:-dfd-build-$(date -u +%Y%m%d-%H%M%S)}"
PYTHON="${PYTHON:-python3}"

# --setup_file must name the repository's setup.py: Beam builds an sdist from it and
# every worker installs that, which is how preprocessing/ and tfds_builder/ reach them.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

beam_options=(
    --project="$PROJECT"
    --region="$REGION"
    --temp_location="$TEMP_LOCATION"
    --staging_location="$STAGING_LOCATION"
    --setup_file=./setup.py
    --worker_machine_type="$WORKER_MACHINE_TYPE"
    --max_num_workers="$MAX_NUM_WORKERS"
    --job_name="$JOB_NAME"
)
if [[ -n "${SDK_CONTAINER_IMAGE:-}" ]]; then
    beam_options+=(--sdk_container_image="$SDK_CONTAINER_IMAGE" --sdk_location=container)
else
    beam_options+=(--requirements_file=deploy/dataflow/requirements.txt --requirements_cache=skip)
fi
if [[ -n "${SERVICE_ACCOUNT:-}" ]]; then
    beam_options+=(--service_account_email="$SERVICE_ACCOUNT")
fi

cmd=("$PYTHON" -m tfds_builder.build
     --manual_dir="$MANUAL_DIR" --data_dir="$DATA_DIR" --runner=DataflowRunner
     "${build_args[@]}" -- "${beam_options[@]}")

if [[ "$dry_run" == 1 ]]; then
    printf '%q ' "${cmd[@]}"
    echo
    exit 0
fi
echo "Job $JOB_NAME: https://console.cloud.google.com/dataflow/jobs?project=$PROJECT" >&2
exec "${cmd[@]}"
