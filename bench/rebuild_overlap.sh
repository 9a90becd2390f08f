#!/usr/bin/env bash
# An online table rebuild overlapping the backup, on a large set (issue 20): for each
# order (the ALTER started first, its #sql-alter tablespace on disk before the backup;
# the backup started first), RUNS times: `ALTER TABLE sbtest.sbtest1 FORCE` and
# `hotbak backup --stream | xbextract`, then `hotbak prepare`, a server started on the
# result, CHECK TABLE and CHECKSUM TABLE against the source's. Stops at the first
# failure. Prints the ALTER's duration alone, during hotbak's backups and during
# mariabackup's (one run per order), medians and ranges.
#
#   bench/rebuild_overlap.sh SOCKET [USER] [PASSWORD]
#
# Needs a server this script may ALTER (e.g. `sandbox.sh up /tmp/mdbbench/sb8g 8G` of
# ../shared/bench), release binaries, mariabackup, mbstream, mariadbd.
# Env: RUNS (10), WORK (/tmp/hotbak-rebuild), PAR (2), TABLE (sbtest.sbtest1).
set -euo pipefail
SOCK=${1:?socket}; DBUSER=${2:-bench}; DBPASS=${3:-bench}
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../target/release}
RUNS=${RUNS:-10}; WORK=${WORK:-/tmp/hotbak-rebuild}; PAR=${PAR:-2}; TABLE=${TABLE:-sbtest.sbtest1}
MARIADBD=$(command -v mariadbd || echo /usr/sbin/mariadbd)
mkdir -p "$WORK"
q() { mariadb --no-defaults -u"$DBUSER" -p"$DBPASS" --socket="$SOCK" -N -e "$1"; }
DATADIR=$(q 'select @@datadir'); DB=${TABLE%%.*}
now() { date +%s.%N; }
alter() { local t0; t0=$(now); q "ALTER TABLE $TABLE FORCE"; echo "$(now) - $t0" | bc; }
wait_sql_alter() {
  for _ in $(seq 1 3000); do
    ls "$DATADIR/$DB"/'#sql-alter'*.ibd >/dev/null 2>&1 && return 0; sleep 0.01
  done; echo "no #sql-alter file appeared" >&2; return 1
}
HB="$BIN/hotbak backup --no-defaults --socket $SOCK -u $DBUSER -p $DBPASS --parallel $PAR --stream --progress lines"
MB="mariabackup --backup --stream=xbstream --user=$DBUSER --password=$DBPASS --socket=$SOCK --parallel=$PAR"
SUM=""
check_restored() { # dir label
  local d=$1 run=$WORK/run; rm -rf "$run"; mkdir -p "$run"
  "$MARIADBD" --no-defaults --datadir="$d" --socket="$run/s.sock" --skip-networking \
    --pid-file="$run/pid" --log-error="$run/err" --innodb-buffer-pool-size=512M --user=root &
  for _ in $(seq 1 600); do [ -S "$run/s.sock" ] && break; sleep 0.1; done
  local r; r=$(mariadb --no-defaults -uroot --socket="$run/s.sock" -N -e "CHECK TABLE $TABLE; CHECKSUM TABLE $TABLE" | awk '{print $NF}' | tr '\n' ' ')
  mariadb-admin --no-defaults -uroot --socket="$run/s.sock" shutdown
  wait
  echo "$r"
}
echo "# $TABLE on $DATADIR; runs $RUNS per order"
SRC=$(q "CHECKSUM TABLE $TABLE" | awk '{print $2}')
: > "$WORK/times"
A=$(alter); echo "alone $A" | tee -a "$WORK/times"
for order in rebuild-first backup-first; do
  # mariabackup once per order, for the ALTER's duration only.
  rm -rf "$WORK/mb" "$WORK/mbtgt"; mkdir -p "$WORK/mb" "$WORK/mbtgt"
  if [ $order = rebuild-first ]; then
    alter > "$WORK/a" & ap=$!; wait_sql_alter
    $MB --target-dir="$WORK/mbtgt" 2>"$WORK/mb.err" | mbstream -x -C "$WORK/mb" || true; wait $ap
  else
    ( $MB --target-dir="$WORK/mbtgt" 2>"$WORK/mb.err" | mbstream -x -C "$WORK/mb" || true ) & bp=$!; sleep 1
    alter > "$WORK/a"; wait $bp
  fi
  # The peer's own outcome is reported, not fatal (it can overrun its log too).
  if grep -q "completed OK" "$WORK/mb.err"; then
    echo "mariabackup-$order $(cat "$WORK/a")" | tee -a "$WORK/times"
  else
    echo "mariabackup $order FAILED: $(grep -m1 -E 'Was only able|ERROR|error' "$WORK/mb.err" | xargs)"
  fi
  rm -rf "$WORK/mb"
  for i in $(seq 1 "$RUNS"); do
    rm -rf "$WORK/bk"; mkdir -p "$WORK/bk"
    if [ $order = rebuild-first ]; then
      alter > "$WORK/a" & ap=$!; wait_sql_alter
      $HB 2>"$WORK/hb.err" | "$BIN/xbextract" -C "$WORK/bk"; wait $ap
    else
      ( $HB 2>"$WORK/hb.err" | "$BIN/xbextract" -C "$WORK/bk" ) & bp=$!; sleep 1
      alter > "$WORK/a"; wait $bp
    fi
    grep -q "completed OK" "$WORK/hb.err" || { echo "backup failed:"; cat "$WORK/hb.err"; exit 1; }
    "$BIN/hotbak" prepare --target-dir "$WORK/bk" > "$WORK/prep.log" 2>&1 || { echo "prepare failed:"; tail -20 "$WORK/prep.log"; exit 1; }
    got=$(check_restored "$WORK/bk")
    want="OK $SRC "
    [ "$got" = "$want" ] || { echo "run $i $order: restored '$got', source 'OK $SRC'"; exit 1; }
    echo "hotbak-$order $(cat "$WORK/a")" | tee -a "$WORK/times"
    echo "run $i $order ok: $(grep -c 'DDL tracking:' "$WORK/hb.err") tracking lines, $(grep 'DDL lock held' "$WORK/hb.err" | xargs); $(grep 'redo waiting' "$WORK/hb.err" | xargs)"
    rm -rf "$WORK/bk"
  done
done
python3 - "$WORK/times" <<'PY'
import sys, statistics as st, collections
d = collections.defaultdict(list)
for l in open(sys.argv[1]):
    k, v = l.split(); d[k].append(float(v))
for k, v in d.items():
    print('%-26s median %6.1fs  range %.1f-%.1f  n=%d' % (k, st.median(v), min(v), max(v), len(v)))
PY
