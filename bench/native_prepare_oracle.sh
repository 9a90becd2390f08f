#!/usr/bin/env bash
# Native prepare against its oracle over many distinct backups, timed.
#
#   bench/native_prepare_oracle.sh [RUNS (10)] [WRITE_SECS (3)]
#
# Each run starts a throwaway server, loads the testkit schema, runs the bank/seq/
# churn writer (every second run also the DDL loop), takes a backup under the
# writes (every third run with `hotbak backup --target-dir`, otherwise with
# `mariabackup --backup`), copies it twice, prepares one copy with
# `mariabackup --prepare` and the other with hotbak's native prepare, and compares
# every tablespace page by page. The first two runs also start mariadbd on both
# copies and compare CHECKSUM TABLE. Run i writes for WRITE_SECS * (1 + i/2) s
# before the backup, so the backups carry different amounts of redo.
# Prints one line per run (pages compared, mtrs, records, pages written, both
# prepare times, differing pages) and the total time ratio (> 1: native faster).
# Needs mariadbd, mariadb-install-db and mariabackup on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-10}; SECS=${2:-3}
HOTBAK_ORACLE_RUNS=$RUNS HOTBAK_ORACLE_WRITE_SECS=$SECS \
  cargo test --release --test it -- --ignored native_prepare_oracle_bench --test-threads=1 --nocapture 2>&1 \
  | grep -E '^(run [0-9]|[0-9]+ backups|test result|thread .* panicked)'
