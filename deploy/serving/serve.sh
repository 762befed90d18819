#!/usr/bin/env bash
# Serves an exported detector with TensorFlow Serving in Docker (REST on 8501, gRPC on 8500).
#
#   EXPORT_DIR=runs/r50/export deploy/serving/serve.sh
#   deploy/serving/request.sh face.jpg          # then, from another shell
#
# TF Serving loads <model_base_path>/<numeric version>/saved_model.pb. The trainer writes
# <model_dir>/export/saved_model.pb (no version folder), so the export is bind-mounted
# read-only as version VERSION of model MODEL_NAME: /models/$MODEL_NAME/$VERSION in the
# container. Nothing is copied. An export on Cloud Storage must already sit in that layout
# (gs://BUCKET/ROOT/$MODEL_NAME/$VERSION/saved_model.pb): pass MODELS_ROOT=gs://BUCKET/ROOT.
# Runtime: the first pull of the tensorflow/serving image (a few hundred MB), then the model
# loads in seconds (not measured here: no Docker engine on the build machine).
# No credentials are stored by this script; a gs:// MODELS_ROOT needs the container to
# find Application Default Credentials (e.g. on a GCE VM with a service account).
set -euo pipefail
# shellcheck source=deploy/common.bash
source "$(dirname "${BASH_SOURCE[0]}")/../common.bash"

usage() {
    cat <<'USAGE'
Usage: EXPORT_DIR=<model_dir>/export [variables] deploy/serving/serve.sh [--dry-run]
       MODELS_ROOT=gs://bucket/models [variables] deploy/serving/serve.sh [--dry-run]

Starts TensorFlow Serving with the detector's SavedModel:
  signature serving_default: input  "images" (DT_STRING [batch], JPEG bytes)
                             output "p_fake" (DT_FLOAT [batch], probability of fake)

One of:
  EXPORT_DIR       local export folder (holds saved_model.pb and detector.json);
                   mounted read-only as /models/$MODEL_NAME/$VERSION
  MODELS_ROOT      a folder or gs:// URL already holding $MODEL_NAME/<VERSION>/saved_model.pb
                   (the container's MODEL_BASE_PATH; the highest VERSION is served)
Optional:
  MODEL_NAME       default deepfake (the REST path is /v1/models/$MODEL_NAME:predict)
  VERSION          numeric version folder for EXPORT_DIR, default 1
  REST_PORT        host port of the REST API, default 8501
  GRPC_PORT        host port of the gRPC API, default 8500
  SERVING_IMAGE    default tensorflow/serving (pin a release at least as new as the
                   TensorFlow that wrote the export)
--dry-run prints the docker command instead of running it.
USAGE
}

parse_dry_run_args "$@"

MODEL_NAME="${MODEL_NAME:-deepfake}"
VERSION="${VERSION:-1}"
REST_PORT="${REST_PORT:-8501}"
GRPC_PORT="${GRPC_PORT:-8500}"
SERVING_IMAGE="${SERVING_IMAGE:-tensorflow/serving}"

if [[ ! "$VERSION" =~ ^[0-9]{1,18}$ ]]; then
    echo "error: VERSION=$VERSION must be a number (digits only, at most 18):" \
        "TF Serving only loads numeric version folders" >&2
    exit 2
fi
for port_name in REST_PORT GRPC_PORT; do
    port="${!port_name}"
    if [[ ! "$port" =~ ^[0-9]{1,5}$ ]] || (( 10#$port < 1 || 10#$port > 65535 )); then
        echo "error: $port_name=$port is not a TCP port; give a number from 1 to 65535" >&2
        exit 2
    fi
done
if [[ "$REST_PORT" == "$GRPC_PORT" ]]; then
    echo "error: REST_PORT and GRPC_PORT are both $REST_PORT; give two different ports" >&2
    exit 2
fi

# docker --mount reads its value as one CSV record: a comma in a path would end the
# field. The source is put in double quotes (a quote inside doubled), as CSV escapes it.
mount_source() {
    local path="$1"
    printf '"source=%s"' "${path//\"/\"\"}"
}
refuse_newline() {
    if [[ "$2" == *$'\n'* ]]; then
        echo "error: $1 holds a line break; Docker cannot mount such a path (rename the folder)" >&2
        exit 2
    fi
}
if [[ ! "$MODEL_NAME" =~ ^[A-Za-z0-9_.-]+$ ]]; then
    echo "error: MODEL_NAME=$MODEL_NAME may hold only letters, digits, '.', '_' and '-'" >&2
    exit 2
fi

cmd=(docker run --rm -p "$REST_PORT:8501" -p "$GRPC_PORT:8500" -e "MODEL_NAME=$MODEL_NAME")
if [[ -n "${EXPORT_DIR:-}" ]]; then
    if [[ "$EXPORT_DIR" == gs://* ]]; then
        echo "error: EXPORT_DIR=$EXPORT_DIR is on Cloud Storage; copy it to" \
            "gs://BUCKET/ROOT/$MODEL_NAME/$VERSION/ and pass MODELS_ROOT=gs://BUCKET/ROOT" >&2
        exit 2
    fi
    if [[ ! -f "$EXPORT_DIR/saved_model.pb" ]]; then
        echo "error: EXPORT_DIR=$EXPORT_DIR holds no saved_model.pb; pass the trainer's" \
            "<model_dir>/export folder" >&2
        exit 2
    fi
    source_dir="$(cd "$EXPORT_DIR" && pwd)"
    refuse_newline EXPORT_DIR "$source_dir"
    cmd+=(--mount "type=bind,$(mount_source "$source_dir"),target=/models/$MODEL_NAME/$VERSION,readonly")
    cmd+=("$SERVING_IMAGE")
elif [[ -n "${MODELS_ROOT:-}" ]]; then
    if [[ "$MODELS_ROOT" == gs://* ]]; then
        cmd+=(-e "MODEL_BASE_PATH=$MODELS_ROOT" "$SERVING_IMAGE")
    else
        if ! compgen -G "$MODELS_ROOT/$MODEL_NAME/[0-9]*/saved_model.pb" >/dev/null; then
            echo "error: MODELS_ROOT=$MODELS_ROOT holds no $MODEL_NAME/<number>/saved_model.pb" >&2
            exit 2
        fi
        source_dir="$(cd "$MODELS_ROOT" && pwd)"
        refuse_newline MODELS_ROOT "$source_dir"
        cmd+=(--mount "type=bind,$(mount_source "$source_dir"),target=/models,readonly" "$SERVING_IMAGE")
    fi
else
    echo "error: set EXPORT_DIR (a local export) or MODELS_ROOT (see deploy/serving/serve.sh --help)" >&2
    exit 2
fi

if [[ "$dry_run" == 1 ]]; then
    printf '%q ' "${cmd[@]}"
    echo
    exit 0
fi
command -v docker >/dev/null || { echo "error: docker not found; install Docker" >&2; exit 2; }
echo "Serving $MODEL_NAME on http://localhost:$REST_PORT/v1/models/$MODEL_NAME (REST)" \
    "and localhost:$GRPC_PORT (gRPC); Ctrl-C stops it" >&2
exec "${cmd[@]}"
