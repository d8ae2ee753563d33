#!/usr/bin/env bash
# The API document's "Writing Multiple Items" example: one request, one line
# per array element.
set -euo pipefail
host="${WRITEAPI_URL:-http://localhost:8080}"
curl -X POST "$host/write/v3/bucket/homelab/outdoors_temp1" \
--header "Content-Type: application/json" \
--data @- << 'EOF2'
{
    "accessKey": "fbebeb8ae7f94930fd07dd8249287973e786d047e9820a254c4a3aecb36fc238",
    "deviceId": "outdoors_u871a",
    "data": [
        {"timestamp": 1584156800, "temperature": 4.7},
        {"timestamp": 1584156860, "temperature": 4.6},
        {"timestamp": 1584156920, "temperature": 4.6}
    ]
}
EOF2
echo
