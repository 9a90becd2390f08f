#!/usr/bin/env bash
# hotbak backup versus mariabackup on the same running server, side by side in one run.
#
#   bench/backup_vs_mariabackup.sh SOCKET [USER] [PASSWORD]
#
# Needs a server with a ~2 GB dataset that this script may read but never stops
# (e.g. the sysbench sandbox of ../shared/bench: `sandbox.sh up /tmp/mdbbench/sb2g 1000000`),
# sysbench for the load phase, root for dropping the page cache, and release binaries
# (cargo build --release). Prints:
#   1. throughput: `hotbak backup --stream > /dev/null` vs `mariabackup --backup
#      --stream=xbstream > /dev/null`, caches dropped before every run, alternating;
#      wall, CPU, peak RSS, and the speed ratio (> 1: hotbak faster)
#   2. server impact: sysbench oltp_read_write TPS in idle windows versus windows
#      where each tool runs, as ratios to idle
#   3. prepare: `hotbak prepare` vs `mariabackup --prepare` on copies of the same
#      backup taken under load
# Env: RUNS (3), PAR (2), WORK (/tmp/hotbak-bench), LOAD_THREADS (4), TABLES (8), IDLE (15 s),
#      HOTBAK_ARGS (extra backup options, e.g. "--max-rate 250").
set -euo pipefail
SOCK=${1:?socket}; DBUSER=${2:-bench}; DBPASS=${3:-bench}
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../target/release}
RUNS=${RUNS:-3}; PAR=${PAR:-2}; WORK=${WORK:-/tmp/hotbak-bench}
LOAD_THREADS=${LOAD_THREADS:-4}; TABLES=${TABLES:-8}; IDLE=${IDLE:-15}
mkdir -p "$WORK"
q() { mariadb --no-defaults -u"$DBUSER" -p"$DBPASS" --socket="$SOCK" -N -e "$1"; }
DATADIR=$(q 'select @@datadir')
BYTES=$(du -sb "$DATADIR" | cut -f1)
echo "# datadir $DATADIR: $BYTES bytes; parallel $PAR; runs $RUNS"

MB="mariabackup --backup --stream=xbstream --user=$DBUSER --password=$DBPASS --socket=$SOCK --target-dir=$WORK/mbtgt --parallel=$PAR"
HB="$BIN/hotbak backup --no-defaults --socket $SOCK -u $DBUSER -p $DBPASS --parallel $PAR --stream --progress none ${HOTBAK_ARGS:-}"

echo "## 1. throughput to /dev/null, cold cache"
python3 "$HERE/timer.py" -n "$RUNS" --drop-caches --bytes "$BYTES" --pre "rm -rf $WORK/mbtgt; mkdir -p $WORK/mbtgt" \
  "mariabackup=$MB 2>/dev/null >/dev/null" \
  "hotbak=$HB 2>/dev/null >/dev/null"

echo "## 2. server TPS during each backup (sysbench oltp_read_write, $LOAD_THREADS threads)"
SIZE=$(q 'select max(id) from sbtest.sbtest1' 2>/dev/null || echo 0)
if command -v sysbench >/dev/null && [ "${SIZE:-0}" -gt 0 ]; then
  LOG=$WORK/load.log
  total=$((IDLE * 5 + 60))
  sysbench oltp_read_write --db-driver=mysql --mysql-socket="$SOCK" --mysql-user="$DBUSER" --mysql-password="$DBPASS" \
    --mysql-db=sbtest --tables="$TABLES" --table-size="$SIZE" --threads="$LOAD_THREADS" --time="$total" \
    --report-interval=1 run 2>&1 | while IFS= read -r l; do echo "$(date +%s.%N) $l"; done > "$LOG" &
  LOADPID=$!
  win() { echo "$1 $2 $3" >> "$WORK/windows"; }
  : > "$WORK/windows"
  sleep 5
  for tool in mariabackup hotbak; do
    s=$(date +%s.%N); sleep "$IDLE"; win "$s" "$(date +%s.%N)" idle
    sync; echo 3 > /proc/sys/vm/drop_caches || true
    s=$(date +%s.%N)
    if [ $tool = mariabackup ]; then rm -rf "$WORK/mbtgt"; mkdir -p "$WORK/mbtgt"; $MB 2>/dev/null > "$WORK/mb-load.xbs"
    else $HB 2>/dev/null > "$WORK/hb-load.xbs"; fi
    win "$s" "$(date +%s.%N)" "$tool"
  done
  s=$(date +%s.%N); sleep "$IDLE"; win "$s" "$(date +%s.%N)" idle
  kill "$LOADPID" 2>/dev/null || true; wait "$LOADPID" 2>/dev/null || true
  python3 - "$LOG" "$WORK/windows" <<'PY'
import re, statistics, sys
pts = []
for line in open(sys.argv[1]):
    m = re.match(r"(\d+\.\d+) \[ *\d+s \].* tps: ([\d.]+) .*lat \(ms,95%\): ([\d.]+)", line)
    if m:
        pts.append((float(m.group(1)), float(m.group(2)), float(m.group(3))))
by = {}
for l in open(sys.argv[2]):
    s, e, lab = l.split()
    by.setdefault(lab, []).extend(p for p in pts if p[0] - 1 >= float(s) and p[0] <= float(e))
idle = statistics.mean(p[1] for p in by["idle"])
for lab, sel in by.items():
    if not sel:
        continue
    tps = statistics.mean(p[1] for p in sel)
    print(f"{lab:<12} seconds {len(sel):4d}  tps {tps:8.1f}  p95 median {statistics.median(p[2] for p in sel):6.2f} ms  ratio to idle {tps / idle:.2f}")
PY
else
  echo "(skipped: sysbench or the sbtest tables are missing)"
fi

echo "## 3. prepare of the backup taken under load"
if [ -s "$WORK/hb-load.xbs" ]; then
  rm -rf "$WORK/p1" "$WORK/p2"; mkdir -p "$WORK/p1"
  "$BIN/xbextract" -x -C "$WORK/p1" --no-sync < "$WORK/hb-load.xbs" 2>/dev/null
  cp -a "$WORK/p1" "$WORK/p2"
  python3 "$HERE/timer.py" -n 1 \
    "mariabackup-prepare=mariabackup --prepare --target-dir=$WORK/p2 >/dev/null 2>&1" \
    "hotbak-prepare=$BIN/hotbak prepare --target-dir $WORK/p1 2>/dev/null"
  rm -rf "$WORK/p1" "$WORK/p2"
fi
rm -rf "$WORK"
