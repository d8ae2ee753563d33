#!/bin/bash
# CI smoke test of parse-ab (benchmarks/parse-ab/run.sh): builds it with
# the same parse.cpp on both sides and runs a few rounds on a compact and a
# pretty-printed body. Checks that it builds, agrees with itself and prints
# a row per file; asserts no timing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '{"accessKey":"k","deviceId":"d","data":[{"t":1,"v":[1.5,2]},"x"]}' > "$work/compact.json"
printf '{\n    "accessKey": "k",\n    "data": {\n        "t": 1,\n        "v": [\n            1.5\n        ]\n    }\n}\n' \
  > "$work/pretty.json"
out=$(PARSE_AB_DIR="$work/build" bash "$here/run.sh" --rounds 3 "$root/lib/src/parse.cpp" "$root/lib/src/parse.cpp" \
  "$work/compact.json" "$work/pretty.json")
echo "$out"
grep -q '^file .*DOM/A .*A/B$' <<<"$out"
grep -q 'compact.json  *[0-9]* *[0-9.]* *[0-9.]* *[0-9.]*$' <<<"$out"
grep -q 'pretty.json  *[0-9]* *[0-9.]* *[0-9.]* *[0-9.]*$' <<<"$out"
echo "parse-ab smoke: ok"
