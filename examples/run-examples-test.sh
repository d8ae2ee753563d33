#!/usr/bin/env bash
# Runs examples/curl/*.sh and device-sim against a real writeapi-server on a
# free loopback port, and checks what landed on disk. Used by ctest.
# Usage: run-examples-test.sh SERVER_BINARY DEVICE_SIM_BINARY
set -euo pipefail
server="$1"; sim="$2"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

"$server" --host 127.0.0.1 --port 0 --data-dir "$work/data" --keys "$here/demo-keys.json" \
  --access-log "$work/access.log" 2>"$work/stderr" &
pid=$!
port=""
for _ in $(seq 100); do
  port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$work/stderr")
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { cat "$work/stderr"; echo "server did not start"; exit 1; }
export WRITEAPI_URL="http://127.0.0.1:$port"

out=$("$here/curl/single-item.sh" 2>/dev/null)
[ "$out" = '{"ok":true,"items":1}' ] || { echo "single-item: $out"; exit 1; }
expected='{"timestamp":1584156800,"temperature":4.7}'
[ "$(cat "$work/data/homelab/outdoors_temp1.jsonl")" = "$expected" ] || { echo "unexpected object contents"; exit 1; }

out=$("$here/curl/multiple-items.sh" 2>/dev/null)
[ "$out" = '{"ok":true,"items":3}' ] || { echo "multiple-items: $out"; exit 1; }
[ "$(wc -l < "$work/data/homelab/outdoors_temp1.jsonl")" -eq 4 ] || { echo "expected 4 lines"; exit 1; }

out=$("$here/curl/image.sh" 2>/dev/null)
[ "$out" = '{"ok":true,"items":1}' ] || { echo "image: $out"; exit 1; }

"$sim" --url "$WRITEAPI_URL" --devices 3 --rate 20 --batch 5 --seconds 1 > "$work/sim.out"
tail -1 "$work/sim.out"
for d in 0 1 2; do
  acked=$(sed -n "s/^sim_$d: .*acknowledged [0-9]* (\([0-9]*\) items)/\1/p" "$work/sim.out")
  lines=$(wc -l < "$work/data/homelab/sim_$d.jsonl")
  [ "$acked" = "$lines" ] || { echo "sim_$d: acknowledged $acked items but $lines lines stored"; exit 1; }
done
echo "examples ok"
