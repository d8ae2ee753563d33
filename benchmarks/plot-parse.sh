#!/usr/bin/env bash
# Draws the parse benchmark's table (parse_benchmark --table FILE) as one
# clustered bar chart: for each payload, each implementation's speed
# relative to simdjson DOM parse (log scale; 1 = DOM). memcpy, the
# bandwidth ceiling, is left out so the parsers stay readable.
# Usage: plot-parse.sh TABLE.tsv OUT.png   (needs gnuplot: scripts/install-deps http-bench)
set -euo pipefail
table="$1"; out="$2"
command -v gnuplot >/dev/null || { echo "plot-parse.sh: gnuplot not found; run scripts/install-deps http-bench" >&2; exit 2; }
# Columns: payload bytes items parse_GBps parse_Mitems_per_s <implementations...>
header=$(head -1 "$table")
IFS=$'\t' read -r -a columns <<<"$header"
plots=""
for ((i = 5; i < ${#columns[@]}; i++)); do
  name="${columns[$i]}"
  [ "$name" = memcpy ] && continue
  plots+="'$table' every ::1 using $((i + 1)):xtic(1) title '${name//_/ }',"
done
gnuplot <<GP
set terminal png size 1200,560
set output '$out'
set title "Parsing: speed relative to simdjson DOM parse (ratio of CPU time; higher is faster)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.9 border -1
set boxwidth 0.9
set logscale y 10
set yrange [0.01:4]
set ytics (0.01, 0.03, 0.1, 0.3, 0.5, 1, 2, 4)
set grid ytics
set key outside right top
set datafile separator "\t"
set arrow from graph 0, first 1 to graph 1, first 1 nohead lw 2 dt 2
plot ${plots%,}
GP
echo "plot in $out"
