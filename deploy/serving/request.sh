#!/usr/bin/env bash
# Scores JPEG files with a detector served by deploy/serving/serve.sh, over TF Serving's REST API.
#
#   deploy/serving/request.sh face.jpg other.jpg
#   -> {"predictions": [p_fake of face.jpg, p_fake of other.jpg]}
#
# The body is TF Serving's row format for a signature with one named input: one
# {"b64": "<base64 of the JPEG bytes>"} per image in "instances". With one named output
# (p_fake), the answer is {"predictions": [one float per image, in order]}.
# Runtime: one HTTP round trip; the served model decodes, crops and scores each image.
# Needs curl and base64 (coreutils); no credentials.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: [HOST=localhost] [REST_PORT=8501] [MODEL_NAME=deepfake] \
       deploy/serving/request.sh [--dry-run] [--] IMAGE.jpg [IMAGE.jpg ...]

POSTs the images to http://$HOST:$REST_PORT/v1/models/$MODEL_NAME:predict and prints
TF Serving's answer: {"predictions": [p_fake, ...]}, one probability of "fake" per image,
in the order given. Call an image fake when p_fake >= the threshold in the export's
detector.json. The export decodes JPEG only: convert other formats first (dfd-predict
does that for you).
-- ends the options (for a file whose name starts with -).
--dry-run prints the URL on stderr and the JSON body on stdout instead of sending it.
USAGE
}

dry_run=0
images=()
options_done=0
for arg in "$@"; do
    if (( options_done )); then
        images+=("$arg")
        continue
    fi
    case "$arg" in
        -h|--help) usage; exit 0 ;;
        --dry-run) dry_run=1 ;;
        --) options_done=1 ;;
        -*) echo "error: unknown option '$arg' (see --help; put -- before a file name starting with -)" >&2; exit 2 ;;
        *) images+=("$arg") ;;
    esac
done
# No real JPEG is this short (the smallest valid ones are about 125 bytes): a 3-byte
# "JPEG" is a truncated file, refused here rather than by the server.
MIN_JPEG_BYTES=100
if (( ${#images[@]} == 0 )); then
    echo "error: name at least one JPEG file (see deploy/serving/request.sh --help)" >&2
    exit 2
fi

HOST="${HOST:-localhost}"
REST_PORT="${REST_PORT:-8501}"
MODEL_NAME="${MODEL_NAME:-deepfake}"
url="http://$HOST:$REST_PORT/v1/models/$MODEL_NAME:predict"

body='{"instances": ['
separator=""
for image in "${images[@]}"; do
    if [[ -d "$image" ]]; then
        echo "error: $image is a directory; name JPEG files (dfd-predict reads folders)" >&2
        exit 2
    fi
    if [[ ! -e "$image" ]]; then
        echo "error: $image: no such file" >&2
        exit 2
    fi
    if [[ ! -f "$image" || ! -r "$image" ]]; then
        echo "error: $image is not a readable regular file" >&2
        exit 2
    fi
    size="$(wc -c < "$image")"
    if (( size < MIN_JPEG_BYTES )); then
        echo "error: $image is $size bytes, too short to be a complete JPEG (cut short?)" >&2
        exit 2
    fi
    if [[ "$(head -c 3 -- "$image" | od -An -tx1 | tr -d ' \n')" != "ffd8ff" ]]; then
        echo "error: $image is not a JPEG; the served model decodes JPEG only" \
            "(convert it, or score it with dfd-predict)" >&2
        exit 2
    fi
    body+="$separator{\"b64\": \"$(base64 < "$image" | tr -d '\n')\"}"
    separator=", "
done
body+=']}'

if [[ "$dry_run" == 1 ]]; then
    echo "POST $url" >&2
    printf '%s\n' "$body"
    exit 0
fi
command -v curl >/dev/null || { echo "error: curl not found" >&2; exit 2; }
printf '%s' "$body" | curl --silent --show-error --fail-with-body \
    -H "Content-Type: application/json" --data-binary @- "$url"
echo
