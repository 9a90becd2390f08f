#!/usr/bin/env bash
# Partial backups: hotbak versus mariabackup with the same filter, in one run.
#
#   bench/partial.sh SOCKET [USER] [PASSWORD]
#
# Needs a running server with the sysbench set (e.g. ../shared/bench's 2.1 GB
# sandbox: `cd ../shared/bench && PORT=3398 ./sandbox.sh start /tmp/mdbbench/sb2g`),
# which this script only reads; root (page cache dropped before every run);
# release binaries. Prints, with timer.py (alternating, medians [min-max], ratio
# > 1: hotbak faster):
#   1. a partial backup of one table (`--tables='^sbtest[.]sbtest1$'`, ~220 MB of
#      the set), `--stream` to /dev/null, cold cache
#   2. the same into a directory, then `prepare --export` of copies of one
#      partial backup: `hotbak prepare --export` vs `mariabackup --prepare --export`
# (`hotbak-normal`: with `--priority normal`; the default idle class yields to every
# other process on a shared machine, which mariabackup does not.)
# Env: RUNS (5), PAR (2), WORK (/tmp/hotbak-bench-partial), FILTER (the regex).
set -euo pipefail
SOCK=${1:?socket}; DBUSER=${2:-root}; DBPASS=${3:-}
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../target/release}
RUNS=${RUNS:-5}; PAR=${PAR:-2}; WORK=${WORK:-/tmp/hotbak-bench-partial}
FILTER=${FILTER:-'^sbtest[.]sbtest1$'}
PW=(); [ -n "$DBPASS" ] && PW=("--password=$DBPASS")
mkdir -p "$WORK"
q() { mariadb --no-defaults -u"$DBUSER" "${PW[@]}" --socket="$SOCK" -N -e "$1"; }
DATADIR=$(q 'select @@datadir')
T=$(q "select data_length + index_length from information_schema.tables where concat(table_schema, '.', table_name) regexp '$FILTER'" | awk '{s += $1} END {print s + 0}')
echo "# datadir $DATADIR ($(du -sb "$DATADIR" | cut -f1) bytes); filter $FILTER matches $T bytes of table data; parallel $PAR; runs $RUNS"

MB="mariabackup --backup --user=$DBUSER ${PW[*]} --socket=$SOCK --parallel=$PAR --tables='$FILTER'"
HB="$BIN/hotbak backup --no-defaults --socket $SOCK -u $DBUSER ${PW[*]/--password=/-p } --parallel $PAR --progress none --tables='$FILTER'"

echo "## 1. partial backup of one table, --stream to /dev/null, cold cache"
python3 "$HERE/timer.py" -n "$RUNS" --drop-caches --bytes "$T" \
  --pre "rm -rf $WORK/mbtgt; mkdir -p $WORK/mbtgt" \
  "mariabackup=$MB --stream=xbstream --target-dir=$WORK/mbtgt 2>/dev/null >/dev/null" \
  "hotbak=$HB --stream 2>/dev/null >/dev/null" \
  "hotbak-normal=$HB --priority normal --stream 2>/dev/null >/dev/null"

echo "## 2. prepare --export of one partial backup (copies)"
rm -rf "$WORK/base"
bash -c "$HB --target-dir $WORK/base" 2>/dev/null
python3 "$HERE/timer.py" -n "$RUNS" \
  --pre "rm -rf $WORK/p1 $WORK/p2; cp -a $WORK/base $WORK/p1; cp -a $WORK/base $WORK/p2" \
  "mariabackup-prepare-export=mariabackup --prepare --export --target-dir=$WORK/p2 >/dev/null 2>&1" \
  "hotbak-prepare-export=$BIN/hotbak prepare --export --target-dir $WORK/p1 2>/dev/null"
# (--pre copies both before every command: only the last hotbak run is left prepared.)
ls "$WORK/p1/"*/*.cfg
rm -rf "$WORK"
