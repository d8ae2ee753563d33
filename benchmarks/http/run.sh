#!/usr/bin/env bash
# HTTP benchmark: installs wrk, nginx and gnuplot, builds Release, runs
# benchmarks/http/run.py (arguments passed on) and plots the results.
#   benchmarks/http/run.sh                 full matrix, ~5 s per point
#   benchmarks/http/run.sh --smoke         what CI runs: correctness only
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/install-deps http-bench
scripts/build >/dev/null
python3 benchmarks/http/run.py "$@"
if [[ " $* " != *" --smoke "* ]]; then
  benchmarks/http/plot.sh benchmarks/results/http.jsonl docs/img
fi
