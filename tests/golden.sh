#!/usr/bin/env bash
# Golden SQL tests: run each tests/golden/*.sql through the sqlite3 shell (stdout and stderr,
# so error messages are part of the expected output) and compare with the checked-in
# *.expected file. UPDATE=1 rewrites the expected files instead.
set -uo pipefail
cd "$(dirname "$0")/.."
pass=0
fail=0
for sql in tests/golden/*.sql; do
  expected="${sql%.sql}.expected"
  actual="${sql%.sql}.actual"
  sqlite3 :memory: < "$sql" > "$actual" 2>&1
  if [ "${UPDATE:-0}" = 1 ]; then
    mv "$actual" "$expected"
    echo "updated $expected"
    continue
  fi
  if diff -u "$expected" "$actual"; then
    pass=$((pass + 1))
    rm -f "$actual"
  else
    echo "FAILED: $sql (output kept in $actual)"
    fail=$((fail + 1))
  fi
done
echo "golden: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
