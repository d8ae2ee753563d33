#!/usr/bin/env bash
# The API document's "Writing a Single Item" example, against a local server
# (scripts/run-server). Creates data/homelab/outdoors_temp1.jsonl.
set -euo pipefail
host="${WRITEAPI_URL:-http://localhost:8080}"
curl -X POST "$host/write/v3/bucket/homelab/outdoors_temp1" \
--header "Content-Type: application/json" \
--data @- << 'EOF2'
{
    "accessKey": "fbebeb8ae7f94930fd07dd8249287973e786d047e9820a254c4a3aecb36fc238",
    "deviceId": "outdoors_u871a",
    "data": {
        "timestamp": 1584156800,
        "temperature": 4.7
    }
}
EOF2
echo
