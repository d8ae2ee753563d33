#!/usr/bin/env bash
# Runs examples/curl/*.sh and device-sim against a real writeapi-server on a
# free loopback port, and checks what landed on disk. Used by ctest.
# Usage: run-examples-test.sh SERVER_BINARY DEVICE_SIM_BINARY
set -euo pipefail
server="$1"; sim="$2"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

# start_server STDERR_FILE ARGS...: runs the server in the background (pid in
# $pid) and waits for its port (in $port).
start_server() {
  local err="$1"; shift
  "$server" --host 127.0.0.1 --port 0 "$@" 2>"$err" &
  pid=$!
  port=""
  for _ in $(seq 100); do
    port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$err")
    [ -n "$port" ] && return 0
    sleep 0.1
  done
  cat "$err"; echo "server did not start"; exit 1
}

start_server "$work/stderr" --data-dir "$work/data" --keys "$here/demo-keys.json" --access-log "$work/access.log"
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
  acked=$(sed -n "s/^sim_$d: .*acknowledged [0-9]* (\([0-9]*\) items).*/\1/p" "$work/sim.out")
  lines=$(wc -l < "$work/data/homelab/sim_$d.jsonl")
  [ "$acked" = "$lines" ] || { echo "sim_$d: acknowledged $acked items but $lines lines stored"; exit 1; }
done

# A retrying client against a tight device budget (5 requests, then 5 a
# second): refused requests (429) are sent again after Retry-After with their
# requestId until acknowledged; every reading is stored exactly once.
kill "$pid"; wait "$pid" 2>/dev/null || true
cat > "$work/tight-keys.json" <<'KEYS'
{"buckets": {"homelab": {"keys": [{"id": "demo", "sha256": "df981c9a8a8304c0925a61995f4fe86b2d9e9aceef345e4311cbe0d6325ea048"}],
                         "limits": {"device": {"rate": 5, "burst": 5}}}}}
KEYS
start_server "$work/stderr2" --data-dir "$work/data2" --keys "$work/tight-keys.json" --access-log off
"$sim" --url "http://127.0.0.1:$port" --devices 2 --rate 20 --batch 2 --seconds 1 --request-ids > "$work/sim2.out" ||
  { cat "$work/sim2.out"; echo "device-sim --request-ids: not every request was acknowledged"; exit 1; }
tail -1 "$work/sim2.out"
grep -q "total: .* [1-9][0-9]* retries" "$work/sim2.out" || { echo "expected retries after 429"; exit 1; }
for d in 0 1; do
  sent=$(sed -n "s/^sim_$d: sent [0-9]* requests (\([0-9]*\) items).*/\1/p" "$work/sim2.out")
  lines=$(wc -l < "$work/data2/homelab/sim_$d.jsonl")
  unique=$(sort -u "$work/data2/homelab/sim_$d.jsonl" | wc -l)
  [ "$sent" = "$lines" ] && [ "$lines" = "$unique" ] ||
    { echo "sim_$d: sent $sent items, stored $lines lines ($unique distinct)"; exit 1; }
done
echo "examples ok"
