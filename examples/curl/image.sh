#!/usr/bin/env bash
# The API document's "Writing Images" advice: binary data as a Base64 string.
# Usage: image.sh FILE (default: a small generated PNG-like blob).
set -euo pipefail
host="${WRITEAPI_URL:-http://localhost:8080}"
if [ $# -ge 1 ]; then b64=$(base64 -w0 "$1"); else b64=$(head -c 3000 /dev/urandom | base64 -w0); fi
printf '{"accessKey":"fbebeb8ae7f94930fd07dd8249287973e786d047e9820a254c4a3aecb36fc238","deviceId":"camera_1","data":{"timestamp":%s,"image":"%s"}}' \
  "$(date +%s)" "$b64" |
curl -X POST "$host/write/v3/bucket/homelab/camera_1" --header "Content-Type: application/json" --data-binary @-
echo
