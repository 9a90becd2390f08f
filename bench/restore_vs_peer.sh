#!/usr/bin/env bash
# Recovery time: from a backup stream to a restored (durable) datadir, hotbak versus
# mariabackup, step by step, in one run.
#
#   bench/restore_vs_peer.sh SOCKET [USER] [PASSWORD]
#
# Needs a running server this script may read (e.g. the bench sandbox
# /tmp/mdbbench/sb/mysqld.sock, user bench/bench), root (page cache dropped before every
# step: `sync; echo 3 > /proc/sys/vm/drop_caches`), mariabackup and mbstream, and release
# binaries (cargo build --release). Takes one stream with each tool, then per round, the
# four ways in rotated order, each step timed with a cold cache:
#   mariabackup:     mbstream -x        | mariabackup --prepare | mariabackup --copy-back + sync -f
#   hotbak:          xbextract -x       | hotbak prepare        | hotbak restore (synced by itself)
#   hotbak-inplace:  xbextract -x into the future datadir | hotbak prepare | hotbak restore --in-place
#   hotbak-oneshot:  hotbak restore --in-place --from-stream (the three in one command, one sync)
# (mariabackup's copy-back leaves syncing to the kernel's writeback: `sync -f` on the
# datadir's filesystem, one syncfs as hotbak does, is timed with it so both end durable.)
# With START=1 also the time for mariadbd to be ready on the result (then shut down,
# untimed).
# Prints per way and step the median wall time [min-max] and the ratio of mariabackup's
# median to this one (> 1: faster than mariabackup), and the same for the total.
# Env: RUNS (3), PAR (4: --parallel of copy-back and restore), WORK (/tmp/hotbak-restore-bench),
#      START (0), LOAD_DIR (unset: the streams of an idle server), HB_BACKUP_OPTS (extra
#      options of hotbak's backup, e.g. `--pace off`: under load the default pacing makes
#      hotbak's backup longer than mariabackup's, so its stream carries more redo to apply).
set -euo pipefail
SOCK=${1:?socket}; DBUSER=${2:-bench}; DBPASS=${3:-bench}
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../target/release}
RUNS=${RUNS:-3}; PAR=${PAR:-4}; WORK=${WORK:-/tmp/hotbak-restore-bench}; START=${START:-0}
HB_BACKUP_OPTS=${HB_BACKUP_OPTS:-}
[ "$(id -u)" = 0 ] || { echo "needs root (drop_caches)" >&2; exit 2; }
rm -rf "$WORK"; mkdir -p "$WORK"
q() { mariadb --no-defaults -u"$DBUSER" -p"$DBPASS" --socket="$SOCK" -N -e "$1"; }
DATADIR=$(q 'select @@datadir')
echo "# source datadir $DATADIR: $(du -sb "$DATADIR" | cut -f1) bytes; parallel $PAR; runs $RUNS"

# LOAD_DIR=SANDBOX_DIR: both streams are taken while sysbench oltp_read_write writes to that
# sandbox (/work/shared/bench/load.sh; it must be the server behind SOCK), so that prepare has
# redo to apply, as in the issue's measurement.
LOADPID=
if [[ -n ${LOAD_DIR:-} ]]; then
  "${SHARED:-/work/shared/bench}/load.sh" "$LOAD_DIR" 600 "$WORK/load.log" >/dev/null 2>&1 &
  LOADPID=$!
  sleep 5
  echo "# sysbench oltp_read_write running on $LOAD_DIR while the streams are taken"
fi
echo "## streams (once per tool, not timed)"
mkdir -p "$WORK/mbtgt"
t0=$(date +%s.%N)
mariabackup --backup --stream=xbstream --user="$DBUSER" --password="$DBPASS" --socket="$SOCK" \
  --target-dir="$WORK/mbtgt" --parallel="$PAR" 2>"$WORK/mb-backup.err" > "$WORK/mb.xbs"
t1=$(date +%s.%N)
# shellcheck disable=SC2086
"$BIN/hotbak" backup --no-defaults --socket "$SOCK" -u "$DBUSER" -p "$DBPASS" --parallel "$PAR" \
  --stream --progress none $HB_BACKUP_OPTS 2>"$WORK/hb-backup.err" > "$WORK/hb.xbs"
t2=$(date +%s.%N)
printf '# backup wall time: mariabackup %.1f s, hotbak %.1f s (options: %s)\n' \
  "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)" "${HB_BACKUP_OPTS:-none}"
if [[ -n $LOADPID ]]; then
  kill "$LOADPID" 2>/dev/null || true; pkill -f "sysbench.*$SOCK" 2>/dev/null || true; wait "$LOADPID" 2>/dev/null || true
fi
UNDO=$(q 'select @@innodb_undo_tablespaces')
ls -l "$WORK/mb.xbs" "$WORK/hb.xbs" | awk '{print "#", $5, $9}'
: > "$WORK/empty.cnf"

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
RES=$WORK/steps
: > "$RES"
# step WAY STEP CMD...: cold cache, time CMD, record.
step() {
  local way=$1 name=$2; shift 2
  drop
  local t0 t1
  t0=$(date +%s.%N)
  if ! "$@" > "$WORK/$way.$name.log" 2>&1; then
    echo "!! $way $name failed:"; tail -5 "$WORK/$way.$name.log"; exit 1
  fi
  t1=$(date +%s.%N)
  # A step that says when it was done (the server start: ready, before its shutdown).
  if [ -s "$WORK/done.ts" ]; then t1=$(cat "$WORK/done.ts"); fi
  rm -f "$WORK/done.ts"
  echo "$way $name $(echo "$t1 - $t0" | bc)" >> "$RES"
  printf '  %-15s %-8s %6.2fs\n' "$way" "$name" "$(echo "$t1 - $t0" | bc)"
}

start_server() { # DATADIR: time until ready, then shut down
  local d=$1 run=$WORK/run; shift
  rm -f "$WORK/done.ts"
  rm -rf "$run"; mkdir -p "$run/tmp"
  mariadbd --no-defaults --user=root --datadir="$d" --socket="$run/s.sock" --pid-file="$run/pid" \
    --log-error="$run/err.log" --skip-networking --tmpdir="$run/tmp" --innodb-use-native-aio=0 \
    "$@" &
  local pid=$!
  for _ in $(seq 1 1200); do
    grep -q "ready for connections" "$run/err.log" 2>/dev/null && [ -S "$run/s.sock" ] && break
    kill -0 $pid 2>/dev/null || { tail -5 "$run/err.log"; return 1; }
    sleep 0.02
  done
  date +%s.%N > "$WORK/done.ts"
  # The shutdown is not timed (it was until 2026-12-05: a server that flushed or rolled
  # back longer at shutdown looked slower to start).
  kill -TERM $pid; wait $pid || true
}

way() { # one way, all steps
  local w=$1 X=$WORK/$1
  rm -rf "$X"; mkdir -p "$X/bk"
  case $w in
    mariabackup)
      step $w extract bash -c "mbstream -x -C '$X/bk' < '$WORK/mb.xbs'"
      step $w prepare mariabackup --prepare --target-dir="$X/bk"
      step $w restore bash -c "mariabackup --defaults-file='$WORK/empty.cnf' --copy-back --parallel=$PAR --target-dir='$X/bk' --datadir='$X/data' && sync -f '$X/data'" ;;
    hotbak)
      step $w extract bash -c "'$BIN/xbextract' -x -C '$X/bk' < '$WORK/hb.xbs'"
      step $w prepare "$BIN/hotbak" prepare --target-dir "$X/bk"
      step $w restore "$BIN/hotbak" restore --target-dir "$X/bk" --datadir "$X/data" --parallel "$PAR" --progress none ;;
    hotbak-inplace)
      rm -rf "$X/bk"; mkdir -p "$X/data"
      step $w extract bash -c "'$BIN/xbextract' -x -C '$X/data' < '$WORK/hb.xbs'"
      step $w prepare "$BIN/hotbak" prepare --target-dir "$X/data"
      step $w restore "$BIN/hotbak" restore --in-place --target-dir "$X/data" --progress none ;;
    hotbak-oneshot)
      rm -rf "$X/bk"
      step $w oneshot bash -c "'$BIN/hotbak' restore --in-place --from-stream --target-dir '$X/data' --progress none < '$WORK/hb.xbs'" ;;
  esac
  if [ "$r" = 1 ] && [ -e "$WORK/$w.prepare.log" ]; then # the redo the prepare applied, from its own log
    awk -v w="$w" '
      /Starting crash recovery from checkpoint LSN=/ { sub(/.*LSN=/, ""); a = $1 + 0 }
      /End of log at LSN=/ { sub(/.*LSN=/, ""); b = $1 + 0 }
      /prepare \(native\).*redo [0-9]+\.\.[0-9]+/ { match($0, /redo [0-9]+\.\.[0-9]+/); split(substr($0, RSTART + 5, RLENGTH - 5), x, /\.\./); a = x[1]; b = x[2] }
      END { if (b > a) printf "  %-15s redo applied by the prepare: %.1f MiB\n", w, (b - a) / 1048576 }' \
      "$WORK/$w.prepare.log"
  fi
  if [ "$START" = 1 ]; then
    step $w start start_server "$X/data" --innodb-undo-tablespaces="$UNDO"
  fi
  rm -rf "$X"
}

WAYS=(mariabackup hotbak hotbak-inplace hotbak-oneshot)
for r in $(seq 1 "$RUNS"); do
  echo "## round $r"
  for k in 0 1 2 3; do way "${WAYS[$(( (k + r - 1) % 4 ))]}"; done
done

python3 - "$RES" <<'PY'
import collections, statistics, sys
t = collections.defaultdict(lambda: collections.defaultdict(list))
rounds = collections.defaultdict(lambda: collections.defaultdict(float))
order = []
for line in open(sys.argv[1]):
    way, step, s = line.split()
    t[way][step].append(float(s))
    if step not in order: order.append(step)
ways = ["mariabackup", "hotbak", "hotbak-inplace", "hotbak-oneshot"]
for w in ways:
    t[w]["total"] = [sum(xs) for xs in zip(*(t[w][s] for s in order if s in t[w]))]
print(f"{'step':10s}" + "".join(f"{w:>32s}" for w in ways))
for s in order + ["total"]:
    row = f"{s:10s}"
    base = statistics.median(t["mariabackup"][s]) if s in t["mariabackup"] else None
    for w in ways:
        xs = t[w].get(s)
        if not xs:
            row += "-".rjust(32); continue
        m = statistics.median(xs)
        vs = f" x{base / m:.2f}" if base else ""
        row += f"{m:.2f}s [{min(xs):.2f}-{max(xs):.2f}]{vs}".rjust(32)
    print(row)
print("(xN: mariabackup's median / this median; > 1 is faster than mariabackup;")
print(" oneshot: hotbak restore --in-place --from-stream, extract + prepare + restore in one command)")
PY
