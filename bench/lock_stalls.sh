#!/usr/bin/env bash
# What the server's users feel of a backup's locks (issue 11): five probe sessions loop
# one statement kind each (CREATE+DROP TABLE, MyISAM INSERT, Aria INSERT, CREATE+DROP
# USER, InnoDB UPDATE; ~20 ms apart) while one backup runs; the longest statement of
# each kind during the backup is printed, for hotbak (short DDL lock, the default),
# hotbak --lock-ddl=full and mariabackup, alternating, ROUNDS rounds, then medians and
# ranges and hotbak/mariabackup ratios.
#
#   bench/lock_stalls.sh SOCKET [USER] [PASSWORD]
#
# Needs a server this script may write to (it creates and drops database hb_probe and
# users hbp_*), e.g. the sysbench sandbox of ../shared/bench (`sandbox.sh up DIR 2G`),
# release binaries, mariabackup. Env: ROUNDS (2), PAR (2), WORK (/tmp/hotbak-stalls),
# TOOLS ("hotbak hotbak-full mariabackup"), HOTBAK_ARGS (extra hotbak options).
set -euo pipefail
SOCK=${1:?socket}; DBUSER=${2:-bench}; DBPASS=${3:-bench}
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../target/release}
ROUNDS=${ROUNDS:-2}; PAR=${PAR:-2}; WORK=${WORK:-/tmp/hotbak-stalls}
TOOLS=${TOOLS:-"hotbak hotbak-full mariabackup"}
mkdir -p "$WORK"
HB="$BIN/hotbak backup --no-defaults --socket $SOCK -u $DBUSER -p $DBPASS --parallel $PAR --stream --progress none ${HOTBAK_ARGS:-}"
MB="mariabackup --backup --stream=xbstream --user=$DBUSER --password=$DBPASS --socket=$SOCK --target-dir=$WORK/mbtgt --parallel=$PAR"
cmd_for() {
  case $1 in
    hotbak) echo "$HB 2>$WORK/hotbak.err >/dev/null" ;;
    hotbak-full) echo "$HB --lock-ddl full 2>$WORK/hotbak-full.err >/dev/null" ;;
    mariabackup) echo "rm -rf $WORK/mbtgt; mkdir -p $WORK/mbtgt; $MB 2>$WORK/mariabackup.err >/dev/null" ;;
  esac
}
cd "$HERE/.."
cargo test --release --test it --no-run -q 2>/dev/null
: > "$WORK/stalls"
set -- $TOOLS
for r in $(seq 1 "$ROUNDS"); do
  for tool in "$@"; do
    PROBE_SOCKET=$SOCK PROBE_USER=$DBUSER PROBE_PASSWORD=$DBPASS PROBE_LABEL=$tool \
    PROBE_CMD="$(cmd_for "$tool")" \
      cargo test --release -q --test it lock_stall_probe -- --ignored --nocapture 2>/dev/null \
      | grep '^STALLS' | tee -a "$WORK/stalls"
  done
  # rotate the order every round
  first=$1; shift; set -- "$@" "$first"
done
python3 - "$WORK/stalls" <<'PY'
import sys, statistics as st, collections
rows = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    f = line.split()
    tool = f[1]
    for kv in f[2:]:
        k, v = kv.split('=')
        rows[tool][k].append(float(v))
keys = ['wall', 'ddl', 'myisam', 'aria', 'user', 'innodb']
print('%-12s' % 'tool' + ''.join('%22s' % k for k in keys))
for tool, d in rows.items():
    print('%-12s' % tool + ''.join('%22s' % ('%.3f [%.3f-%.3f]' % (st.median(d[k]), min(d[k]), max(d[k]))) for k in keys))
if 'mariabackup' in rows:
    for tool in rows:
        if tool == 'mariabackup':
            continue
        print('ratio %s/mariabackup (medians): ' % tool + ' '.join(
            '%s=%.2f' % (k, st.median(rows[tool][k]) / max(st.median(rows['mariabackup'][k]), 1e-3)) for k in keys))
PY
