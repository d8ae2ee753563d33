#!/usr/bin/env bash
# The man page of a program keeps in step with its --help: every flag that
# --help mentions is in the page and every flag the page mentions is in
# --help. The page must also render without groff warnings.
# Usage: man_page_test.sh PROGRAM MAN_PAGE
set -euo pipefail
program="$1" page="$2"
flags() { grep -oE -- '--[a-z][a-z0-9-]*' | sort -u; }
help_flags="$("$program" --help | flags)"
# In roff a dash is written \-; the page's flags once unescaped.
page_flags="$(sed 's/\\-/-/g' "$page" | flags)"
status=0
if missing="$(comm -23 <(echo "$help_flags") <(echo "$page_flags"))" && [ -n "$missing" ]; then
  echo "in $program --help but not in $page:" $missing >&2
  status=1
fi
if extra="$(comm -13 <(echo "$help_flags") <(echo "$page_flags"))" && [ -n "$extra" ]; then
  echo "in $page but not in $program --help:" $extra >&2
  status=1
fi
if command -v man >/dev/null; then
  warnings="$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$page" 2>&1 >/dev/null || true)"
  if [ -n "$warnings" ]; then
    echo "$page renders with warnings:" >&2
    echo "$warnings" >&2
    status=1
  fi
fi
[ "$status" -eq 0 ] && echo "$page: $(echo "$help_flags" | wc -l) flags, in step with --help"
exit "$status"
