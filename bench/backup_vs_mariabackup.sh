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
#   2. server impact: sysbench oltp_read_write TPS while each tool runs, as a ratio to
#      the idle windows just before and after that run (rounds, tool order rotated)
#   3. prepare: `hotbak prepare` vs `mariabackup --prepare` on copies of the same
#      backup taken under load
# Env: RUNS (3), PAR (2), WORK (/tmp/hotbak-bench), LOAD_THREADS (4), TABLES (8), IDLE (15 s),
#      LOAD_REPS (3: rounds of section 2),
#      HOTBAK_ARGS (extra backup options, e.g. "--max-rate 250"), HOTBAK_ALT_ARGS (if set, section 2
#      also runs "hotbak-alt" with these options, e.g. "--priority normal"), SECTIONS (123).
set -euo pipefail
SOCK=${1:?socket}; DBUSER=${2:-bench}; DBPASS=${3:-bench}
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../target/release}
RUNS=${RUNS:-3}; PAR=${PAR:-2}; WORK=${WORK:-/tmp/hotbak-bench}
LOAD_THREADS=${LOAD_THREADS:-4}; TABLES=${TABLES:-8}; IDLE=${IDLE:-15}; LOAD_REPS=${LOAD_REPS:-3}
SECTIONS=${SECTIONS:-123}
mkdir -p "$WORK"
q() { mariadb --no-defaults -u"$DBUSER" -p"$DBPASS" --socket="$SOCK" -N -e "$1"; }
DATADIR=$(q 'select @@datadir')
BYTES=$(du -sb "$DATADIR" | cut -f1)
echo "# datadir $DATADIR: $BYTES bytes; parallel $PAR; runs $RUNS"

MB="mariabackup --backup --stream=xbstream --user=$DBUSER --password=$DBPASS --socket=$SOCK --target-dir=$WORK/mbtgt --parallel=$PAR"
HB="$BIN/hotbak backup --no-defaults --socket $SOCK -u $DBUSER -p $DBPASS --parallel $PAR --stream --progress none ${HOTBAK_ARGS:-}"

echo "## 1. throughput to /dev/null, cold cache"
[[ $SECTIONS == *1* ]] && python3 "$HERE/timer.py" -n "$RUNS" --drop-caches --bytes "$BYTES" --pre "rm -rf $WORK/mbtgt; mkdir -p $WORK/mbtgt" \
  "mariabackup=$MB 2>/dev/null >/dev/null" \
  "hotbak=$HB 2>/dev/null >/dev/null"

echo "## 2. server TPS during each backup (sysbench oltp_read_write, $LOAD_THREADS threads)"
SIZE=$(q 'select max(id) from sbtest.sbtest1' 2>/dev/null || echo 0)
TOOLS="mariabackup hotbak"; [ -n "${HOTBAK_ALT_ARGS:-}" ] && TOOLS="$TOOLS hotbak-alt"
if [[ $SECTIONS == *2* ]] && command -v sysbench >/dev/null && [ "${SIZE:-0}" -gt 0 ]; then
  LOG=$WORK/load.log
  ntools=$(echo $TOOLS | wc -w)
  total=$(( (IDLE + 40) * ntools * LOAD_REPS + IDLE + 30 ))
  sysbench oltp_read_write --db-driver=mysql --mysql-socket="$SOCK" --mysql-user="$DBUSER" --mysql-password="$DBPASS" \
    --mysql-db=sbtest --tables="$TABLES" --table-size="$SIZE" --threads="$LOAD_THREADS" --time="$total" \
    --report-interval=1 run 2>&1 | while IFS= read -r l; do echo "$(date +%s.%N) $l"; done > "$LOG" &
  LOADPID=$!
  win() { echo "$1 $2 $3" >> "$WORK/windows"; }
  : > "$WORK/windows"
  sleep 5
  # Rounds of (idle window, run) per tool, the tool order rotated every round,
  # so no tool always follows the same one; each run is compared with the
  # idle windows just before and after it (the server's own pace drifts).
  set -- $TOOLS
  for rep in $(seq 1 "$LOAD_REPS"); do
    order=$(for ((k = 0; k < $#; k++)); do i=$(( (k + rep - 1) % $# + 1 )); echo "${!i}"; done)
    for tool in $order; do
      s=$(date +%s.%N); sleep "$IDLE"; win "$s" "$(date +%s.%N)" idle
      sync; echo 3 > /proc/sys/vm/drop_caches || true
      # The cache drop costs the server too (its own and sysbench's code
      # pages): let it recover before the run, so the run measures the tool.
      sleep "${SETTLE:-2}"
      s=$(date +%s.%N)
      rc=0
      # To /dev/null like section 1: writing 2.6 GB to the server's own disk
      # would measure the destination as much as the tool.
      if [ $tool = mariabackup ]; then rm -rf "$WORK/mbtgt"; mkdir -p "$WORK/mbtgt"; $MB 2>"$WORK/$tool.err" > /dev/null || rc=$?
      elif [ $tool = hotbak ]; then $HB 2>"$WORK/$tool.err" > /dev/null || rc=$?
      else $HB ${HOTBAK_ALT_ARGS:-} 2>"$WORK/$tool.err" > /dev/null || rc=$?; fi
      if [ $rc != 0 ]; then echo "!! $tool exited $rc under load:"; tail -5 "$WORK/$tool.err"; fi
      win "$s" "$(date +%s.%N)" "run:$tool"
    done
  done
  s=$(date +%s.%N); sleep "$IDLE"; win "$s" "$(date +%s.%N)" idle
  # sysbench itself, not only the pipeline around it (it outlives a closed pipe).
  pkill -P $$ -x sysbench 2>/dev/null || true; kill "$LOADPID" 2>/dev/null || true; wait "$LOADPID" 2>/dev/null || true
  python3 - "$LOG" "$WORK/windows" <<'PY'
import re, statistics, sys
pts = []
for line in open(sys.argv[1]):
    m = re.match(r"(\d+\.\d+) \[ *\d+s \].* tps: ([\d.]+) .*lat \(ms,95%\): ([\d.]+)", line)
    if m:
        pts.append((float(m.group(1)), float(m.group(2)), float(m.group(3))))
wins = [l.split() for l in open(sys.argv[2])]
def sel(s, e):
    return [p for p in pts if p[0] - 1 >= float(s) and p[0] <= float(e)]
res = {}
idle_all = []
for i, (s, e, lab) in enumerate(wins):
    if lab == "idle":
        idle_all += sel(s, e)
        continue
    around = sel(*wins[i - 1][:2]) + (sel(*wins[i + 1][:2]) if i + 1 < len(wins) else [])
    during = sel(s, e)
    if not during or not around:
        continue
    ratio = statistics.mean(p[1] for p in during) / statistics.mean(p[1] for p in around)
    res.setdefault(lab[4:], []).append((ratio, float(e) - float(s), during))
print(f"idle         tps {statistics.mean(p[1] for p in idle_all):8.1f}  p95 median {statistics.median(p[2] for p in idle_all):6.2f} ms")
for lab, runs in res.items():
    allp = [p for r in runs for p in r[2]]
    rs = " ".join(f"{r[0]:.2f}" for r in runs)
    print(f"{lab:<12} tps {statistics.mean(p[1] for p in allp):8.1f}  p95 median {statistics.median(p[2] for p in allp):6.2f} ms"
          f"  wall {statistics.mean(r[1] for r in runs):5.1f}s  ratio to adjacent idle: {rs}  mean {statistics.mean(r[0] for r in runs):.2f}")
PY
else
  echo "(skipped: sysbench or the sbtest tables are missing)"
fi

echo "## 3. prepare of a backup taken under load"
SIZE=$(q 'select max(id) from sbtest.sbtest1' 2>/dev/null || echo 0)
if [[ $SECTIONS == *3* ]] && command -v sysbench >/dev/null && [ "${SIZE:-0}" -gt 0 ]; then
  # One hotbak backup to a file while sysbench writes, so there is redo to apply.
  sysbench oltp_read_write --db-driver=mysql --mysql-socket="$SOCK" --mysql-user="$DBUSER" --mysql-password="$DBPASS" \
    --mysql-db=sbtest --tables="$TABLES" --table-size="$SIZE" --threads="$LOAD_THREADS" --time=300 run > /dev/null 2>&1 &
  LOADPID=$!
  sleep 5
  $HB > "$WORK/hb-load.xbs" 2>"$WORK/hb-load.err" || { echo "!! hotbak exited $? under load:"; tail -5 "$WORK/hb-load.err"; }
  # sysbench itself, not only the pipeline around it (it outlives a closed pipe).
  pkill -P $$ -x sysbench 2>/dev/null || true; kill "$LOADPID" 2>/dev/null || true; wait "$LOADPID" 2>/dev/null || true
  grep -E "redo " "$WORK/hb-load.err" | head -2 || true
fi
if [[ $SECTIONS == *3* ]] && [ -s "$WORK/hb-load.xbs" ]; then
  rm -rf "$WORK/p1" "$WORK/p2"; mkdir -p "$WORK/p1"
  "$BIN/xbextract" -x -C "$WORK/p1" --no-sync < "$WORK/hb-load.xbs" 2>/dev/null
  cp -a "$WORK/p1" "$WORK/p2"
  python3 "$HERE/timer.py" -n 1 \
    "mariabackup-prepare=mariabackup --prepare --target-dir=$WORK/p2 >/dev/null 2>&1" \
    "hotbak-prepare=$BIN/hotbak prepare --target-dir $WORK/p1 2>/dev/null"
  rm -rf "$WORK/p1" "$WORK/p2"
fi
rm -rf "$WORK"
