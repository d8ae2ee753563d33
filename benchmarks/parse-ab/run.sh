#!/bin/bash
# parse-ab: times two versions of lib/src/parse.cpp against each other and
# against simdjson's DOM parse, in one process (main.cpp says how).
#
#   benchmarks/parse-ab/run.sh [--rounds N] A.cpp B.cpp FILE...
#
# For example, the last commit's parser against the working tree's:
#   git show HEAD:lib/src/parse.cpp > /tmp/parse-head.cpp
#   benchmarks/parse-ab/run.sh /tmp/parse-head.cpp lib/src/parse.cpp /tmp/payloads/*.json
#
# Both copies are built as the library builds parse.cpp (-O3, C++23, the
# public headers of this checkout), with $CXX (default g++). The binary is
# left in $PARSE_AB_DIR (default a temporary directory, removed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rounds=()
if [[ ${1:-} == --rounds ]]; then
  rounds=(--rounds "$2")
  shift 2
fi
if (($# < 3)); then
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
a=$1 b=$2
shift 2
cxx=${CXX:-g++}
dir=${PARSE_AB_DIR:-}
if [[ -z $dir ]]; then
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
fi
mkdir -p "$dir"
flags=(-O3 -DNDEBUG -std=c++2b -I"$root/lib/include")
# The two copies compile in parallel with the rest.
"$cxx" "${flags[@]}" -Dwriteapi=wa_a -c "$a" -o "$dir/a.o" &
pid_a=$!
"$cxx" "${flags[@]}" -Dwriteapi=wa_b -c "$b" -o "$dir/b.o" &
pid_b=$!
"$cxx" "${flags[@]}" -Dwriteapi=wa_a -DWRITEAPI_AB_SIDE=a -c "$here/side.cpp" -o "$dir/side_a.o"
"$cxx" "${flags[@]}" -Dwriteapi=wa_b -DWRITEAPI_AB_SIDE=b -c "$here/side.cpp" -o "$dir/side_b.o"
"$cxx" -O2 -std=c++17 -c "$here/main.cpp" -o "$dir/main.o"
wait "$pid_a"
wait "$pid_b"
# status.cpp: Status's out-of-line members, once per side.
"$cxx" "${flags[@]}" -Dwriteapi=wa_a -c "$root/lib/src/status.cpp" -o "$dir/status_a.o"
"$cxx" "${flags[@]}" -Dwriteapi=wa_b -c "$root/lib/src/status.cpp" -o "$dir/status_b.o"
"$cxx" "$dir"/main.o "$dir"/a.o "$dir"/b.o "$dir"/side_a.o "$dir"/side_b.o "$dir"/status_a.o "$dir"/status_b.o \
  -lsimdjson -o "$dir/parse-ab"
"$dir/parse-ab" "${rounds[@]}" "$@"
