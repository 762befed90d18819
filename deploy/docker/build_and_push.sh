#!/usr/bin/env bash
# Builds the training (GPU), tools (CPU) and serving images and pushes them to Artifact Registry.
#
#   IMAGE_PREFIX=europe-west4-docker.pkg.dev/PROJECT/REPO TAG=v1 deploy/docker/build_and_push.sh
#
# Runtime: dominated by the first pull of the multi-GB GPU base image (not measured here:
# no Docker engine on the build machine).
# Needs Docker and `gcloud auth configure-docker REGION-docker.pkg.dev` done once;
# no credentials are stored by this script.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: IMAGE_PREFIX=REGION-docker.pkg.dev/PROJECT/REPO [TAG=latest] [TARGETS="gpu cpu dataflow serve"] \
       deploy/docker/build_and_push.sh [--no-push]

Builds from the repository root:
  gpu       deploy/docker/Dockerfile.gpu                   -> $IMAGE_PREFIX/dfd-train:$TAG
  cpu       deploy/docker/Dockerfile.cpu (runtime target)  -> $IMAGE_PREFIX/dfd-tools:$TAG
  dataflow  deploy/docker/Dockerfile.cpu (dataflow target) -> $IMAGE_PREFIX/dfd-dataflow:$TAG
  serve     deploy/docker/Dockerfile.serve                 -> $IMAGE_PREFIX/dfd-serve:$TAG
and pushes each unless --no-push is given.

Required: IMAGE_PREFIX   Artifact Registry path, e.g. europe-west4-docker.pkg.dev/my-project/dfd
Optional: TAG (default: latest), TARGETS (default: "gpu cpu dataflow serve")
USAGE
}

push=1
for arg in "$@"; do
    case "$arg" in
        -h|--help) usage; exit 0 ;;
        --no-push) push=0 ;;
        *) echo "error: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
    esac
done

if [[ -z "${IMAGE_PREFIX:-}" ]]; then
    echo "error: set IMAGE_PREFIX, e.g. IMAGE_PREFIX=europe-west4-docker.pkg.dev/my-project/dfd (see --help)" >&2
    exit 2
fi
TAG="${TAG:-latest}"
TARGETS="${TARGETS:-gpu cpu dataflow serve}"
command -v docker >/dev/null || { echo "error: docker not found; install Docker or build with Cloud Build" >&2; exit 2; }

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

for target in $TARGETS; do
    case "$target" in
        gpu) image="$IMAGE_PREFIX/dfd-train:$TAG"; args=(-f deploy/docker/Dockerfile.gpu) ;;
        cpu) image="$IMAGE_PREFIX/dfd-tools:$TAG"; args=(-f deploy/docker/Dockerfile.cpu --target runtime) ;;
        dataflow) image="$IMAGE_PREFIX/dfd-dataflow:$TAG"; args=(-f deploy/docker/Dockerfile.cpu --target dataflow) ;;
        serve) image="$IMAGE_PREFIX/dfd-serve:$TAG"; args=(-f deploy/docker/Dockerfile.serve) ;;
        *) echo "error: unknown target '$target' in TARGETS; use gpu, cpu, dataflow or serve" >&2; exit 2 ;;
    esac
    echo "Building $image" >&2
    docker build "${args[@]}" -t "$image" .
    if [[ "$push" == 1 ]]; then
        docker push "$image"
    fi
done
