#!/usr/bin/env bash
# ClickHouse benchmark: installs wrk and ClickHouse, builds Release, runs
# benchmarks/clickhouse/run.py (arguments passed on).
#   benchmarks/clickhouse/run.sh              single items and batches of 100, 16, 64 and
#                                             256 connections, 5 s per point (~2 min)
#   benchmarks/clickhouse/run.sh --smoke      checks only, ~10 s
# WRITEAPI_SERVER_BINARY=path skips the build and benchmarks that binary.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/install-deps http-bench clickhouse
if [ -z "${WRITEAPI_SERVER_BINARY:-}" ]; then scripts/build >/dev/null; fi
python3 benchmarks/clickhouse/run.py "$@"
