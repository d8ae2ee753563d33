#!/usr/bin/env bash
# ctest: writeapi-parse-bench --check on small generated files of every
# kind it accepts (a request body, documents wrapped as data: pretty, an
# array to split, a scalar, non-ASCII text with escapes), on two threads;
# then a file that is not JSON must fail. Checks outputs, never timings.
set -euo pipefail
tool="$1"
dir="$(mktemp -d "${TMPDIR:-/tmp}/writeapi-parse-bench-test-XXXXXX")"
trap 'rm -rf "$dir"' EXIT

printf '{"accessKey":"k","deviceId":"d1","data":[{"t":1,"v":4.70},{"t":2,"v":-1e3},[1,2,{"x":null}]]}' >"$dir/body.json"
printf '{\n    "site": {\n        "rooms": [\n            {\n                "name": "a b",\n                "t": 21.5\n            }\n        ]\n    },\n    "ok": true\n}\n' >"$dir/pretty.json"
printf '[ 1 , "two" ,\r\n\t{ "three" : [ 3 ] } , false ]' >"$dir/array.json"
printf '"just a string"' >"$dir/scalar.json"
printf '[{"text":"hyv\xc3\xa4\xc3\xa4 p\xc3\xa4iv\xc3\xa4\xc3\xa4 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80","esc":"a\\"b\\\\c\\u00e9\\n"}, {"k" : "  spaced  "}]' >"$dir/text.json"

out="$("$tool" --check --threads 2 --seconds 0.05 \
  "$dir/body.json" "$dir/pretty.json" "$dir/array.json" "$dir/scalar.json" "$dir/text.json")"
echo "$out"
grep -q "body.json: 3 lines checked byte for byte" <<<"$out"
grep -q "pretty.json: 1 lines checked byte for byte" <<<"$out"
grep -q "array.json: 4 lines checked byte for byte" <<<"$out"
grep -q "scalar.json: 1 lines checked byte for byte" <<<"$out"
grep -q "text.json: 2 lines checked byte for byte" <<<"$out"
grep -q "body.json  " <<<"$out"
grep -q "pretty.json (as data)" <<<"$out"
grep -q "^scaling: writeapi on 2 threads" <<<"$out"
# Each row ends in the median ratio of the rounds and their range.
grep -Eq "/body.json .* [0-9]+\.[0-9]{2}x  [0-9]+\.[0-9]{2}-[0-9]+\.[0-9]{2}$" <<<"$out"
"$tool" --help | grep -q "median of 10 rounds"

printf '{"not json' >"$dir/broken.json"
if "$tool" --seconds 0.01 "$dir/broken.json" 2>"$dir/err"; then
  echo "expected a failure on broken.json" >&2
  exit 1
fi
grep -q "invalid_json" "$dir/err"
if "$tool" 2>/dev/null; then
  echo "expected a usage error without files" >&2
  exit 1
fi
echo "cli_test: ok"
