#!/usr/bin/env bash
# Plots requests/s (items/s for batches) against connections for each
# scenario, writeapi-server beside the nginx ceiling. PNGs go to OUT_DIR.
# Usage: plot.sh RESULTS.jsonl OUT_DIR
set -euo pipefail
results="$1"; out="$2"
mkdir -p "$out"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for body in single batch100; do
  for ka in true false; do
    name="http-${body}-$([ "$ka" = true ] && echo keepalive || echo close)"
    plots=""
    for kind in nginx writeapi-never writeapi-always; do
      python3 - "$results" "$body" "$ka" "$kind" > "$tmp/$name-$kind.dat" <<'PY'
import json, sys
path, body, ka, kind = sys.argv[1:]
for line in open(path):
    r = json.loads(line)
    if r["body"] == body and str(r["keep_alive"]).lower() == ka and r["kind"] == kind:
        print(r["connections"], r["requests_per_s"], r["items_per_s"])
PY
      plots+="'$tmp/$name-$kind.dat' using 1:$([ "$body" = single ] && echo 2 || echo 3) with linespoints title '$kind',"
    done
    gnuplot <<GP
set terminal png size 800,500
set output '$out/$name.png'
set title "$body, $([ "$ka" = true ] && echo keep-alive || echo 'Connection: close') (nginx: return 204, the ceiling)"
set xlabel 'connections'
set ylabel '$([ "$body" = single ] && echo 'requests/s' || echo 'items/s')'
set logscale x 2
set key left top
set grid
plot ${plots%,}
GP
  done
done
echo "plots in $out"
