#!/usr/bin/env bash
# Every public class and every free function that is not inline carries
# WRITEAPI_EXPORT (writeapi/export.h): without it a shared libwriteapi,
# built with hidden visibility, would not export it and programs using it
# would fail to link. Looks at the declarations that start a line in the
# public headers (the headers' style: namespace members at column 0).
# Usage: export_macro_test.sh INCLUDE_DIR
set -euo pipefail
include_dir="$1"
status=0
count=0
for header in "$include_dir"/writeapi/*.h; do
  case "$(basename "$header")" in export.h) continue ;; esac
  # Class definitions (not forward declarations) and function declarations
  # at namespace level; inline, constexpr and template ones need no export.
  found="$(awk '
    /^(class|struct) / && !/;[[:space:]]*$/ { print FNR ": " $0; next }
    /^(inline|constexpr|template|namespace|using|enum|typedef|extern|static|#|\/\/|})/ { next }
    /^[A-Za-z_][A-Za-z0-9_:<>,*& ]*[ *&]\**[A-Za-z_][A-Za-z0-9_]*\(/ { print FNR ": " $0 }
  ' "$header")"
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    count=$((count + 1))
    if [[ "$line" != *WRITEAPI_EXPORT* ]]; then
      echo "$header:$line: public declaration without WRITEAPI_EXPORT" >&2
      status=1
    fi
  done <<<"$found"
done
if [ "$count" -eq 0 ]; then
  echo "no public declarations found under $include_dir/writeapi" >&2
  exit 1
fi
[ "$status" -eq 0 ] && echo "$count public declarations, each with WRITEAPI_EXPORT"
exit "$status"
