#!/usr/bin/env bash
# The package's PHPUnit tests (Debian's phpunit, inside the real Laravel app of
# tests/laravel-app/site). Prints PHPUnit's report, then "# pass N" / "# fail M"
# (or "# skipped ..." without PHPUnit / Laravel). Exit status: PHPUnit's.
set -uo pipefail
cd "$(dirname "$0")/.."
if ! command -v phpunit >/dev/null || [ ! -f /usr/share/php/Illuminate/autoload.php ]; then
  echo "# skipped: phpunit or php-laravel-framework not installed (apt-get install phpunit php-laravel-framework php-redis)"
  exit 0
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
phpunit -c phpunit.xml 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
if grep -qE '^OK \(' "$out"; then
  echo "# pass $(grep -Eo '^OK \([0-9]+' "$out" | grep -Eo '[0-9]+')"
  echo "# fail 0"
else
  total=$(grep -Eo '^Tests: [0-9]+' "$out" | grep -Eo '[0-9]+' || echo 0)
  failed=$(grep -Eo '(Failures|Errors): [0-9]+' "$out" | awk '{s+=$2} END {print s+0}')
  [ "$failed" -eq 0 ] && [ "$rc" -ne 0 ] && failed=1
  echo "# pass $(( total > failed ? total - failed : 0 ))"
  echo "# fail $failed"
fi
exit "$rc"
