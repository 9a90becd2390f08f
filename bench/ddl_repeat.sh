#!/usr/bin/env bash
# Consistency with DDL during the copy, many runs in a row (issue 11, 20): runs the
# integration tests that back up a server through the DDL loop (create, alter, rename,
# truncate, drop on InnoDB, MyISAM and Aria tables) and prepare the backup with both
# `hotbak prepare` and `mariabackup --prepare` (both restored servers checked, checksums
# equal), and the table-rebuild overlap test (both orders, OPTIMIZE, TRUNCATE, gh-ost),
# RUNS times each; stops at the first failure and prints the tally.
#
#   bench/ddl_repeat.sh            # RUNS=20, TESTS="ddl_during_backup table_rebuilds_overlapping_the_backup"
#
# Uses a copy of the integration-test binary so that rebuilding the tree meanwhile does
# not change what runs. Needs mariadbd, mariabackup (as the tests do).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RUNS=${RUNS:-20}
TESTS=${TESTS:-"backup_e2e::ddl_during_backup backup_e2e::table_rebuilds_overlapping_the_backup"}
cd "$HERE/.."
BIN=$(cargo test --release --test it --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import sys,json
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("target",{}).get("name")=="it" and m.get("executable"): print(m["executable"])' | tail -1)
WORK=$(mktemp -d /tmp/hotbak-ddl-repeat.XXXX)
cp "$BIN" "$WORK/it"
export HOTBAK_REQUIRE_TOOLS=1
for t in $TESTS; do
  ok=0
  for i in $(seq 1 "$RUNS"); do
    start=$(date +%s.%N)
    if "$WORK/it" --exact "$t" --test-threads=1 > "$WORK/last.log" 2>&1; then
      ok=$((ok + 1))
      printf '%s run %d ok (%.0fs)\n' "$t" "$i" "$(echo "$(date +%s.%N) - $start" | bc)"
    else
      echo "$t run $i FAILED; log: $WORK/last.log"; tail -30 "$WORK/last.log"
      echo "TALLY $t $ok/$i"; exit 1
    fi
  done
  echo "TALLY $t $ok/$RUNS"
done
