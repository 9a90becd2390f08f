#!/usr/bin/env bash
# Backup and prepare of a server with data-at-rest encryption (every table and the
# redo log encrypted, file_key_management keys): hotbak against mariabackup, ratios
# in one run.
#
#   bench/encrypted.sh
#
# Starts its own throwaway server (mariadb-install-db + mariadbd in $WORK, a unix
# socket only, stopped by pid at the end), loads SIZE_MB of incompressible rows into
# encrypted InnoDB tables, then prints:
#   1. backup throughput: `hotbak backup --stream > /dev/null` vs `mariabackup --backup
#      --stream=xbstream > /dev/null`, alternating, page cache dropped before every run
#      with DROP_CACHES=1 (timer.py: median wall [range], CPU, RSS, ratio; > 1: hotbak faster)
#   2. prepare: one hotbak backup taken while an insert loop writes (so there is
#      encrypted redo to apply), extracted into three copies per round, prepared by
#      `mariabackup --prepare` (backup-my.cnf as its options, for the key plugin),
#      `hotbak prepare --native` (the native prepare: redo and pages decrypted with the
#      key file, pages re-encrypted) and `hotbak prepare --server-recovery` (the
#      server-based prepare with the same plugin), alternating.
# Env: SIZE_MB (2048), RUNS (3), DROP_CACHES (0), PAR (2), WORK (/tmp/hotbak-bench-enc), ALGO (aes_cbc or
#      aes_ctr), KEEP=1 (keep the loaded server's datadir for the next run).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../target/release}
SIZE_MB=${SIZE_MB:-2048}; RUNS=${RUNS:-3}; PAR=${PAR:-2}; ALGO=${ALGO:-aes_cbc}
WORK=${WORK:-/tmp/hotbak-bench-enc}
DATA=$WORK/data; SOCK=$WORK/mysqld.sock; KEYS=$WORK/keys.txt
mkdir -p "$WORK"
# Dropping the page cache affects the whole machine: only when asked (DROP_CACHES=1, as root).
DROP=""; [ "${DROP_CACHES:-0}" = 1 ] && DROP="--drop-caches"

printf '1;%s\n2;%s\n' "$(openssl rand -hex 32)" "$(openssl rand -hex 32)" > "$KEYS.new"
[ -s "$KEYS" ] && [ -d "$DATA/mysql" ] || mv "$KEYS.new" "$KEYS"
rm -f "$KEYS.new"
SERVER_ARGS=(--no-defaults --datadir="$DATA" --socket="$SOCK" --skip-networking
  --pid-file="$WORK/mysqld.pid" --log-error="$WORK/mysqld.err"
  --innodb-buffer-pool-size=256M --innodb-log-file-size=256M
  --plugin-load-add=file_key_management --file-key-management-filename="$KEYS"
  --file-key-management-encryption-algorithm="$ALGO"
  --innodb-encrypt-tables=ON --innodb-encrypt-log=ON --innodb-encryption-threads=2)
if [ "$(id -u)" = 0 ]; then SERVER_ARGS+=(--user=root); fi

SRV=""
stop_server() {
  [ -n "$SRV" ] || return 0
  kill "$SRV" 2>/dev/null || true
  wait "$SRV" 2>/dev/null || true
  SRV=""
}
cleanup() {
  stop_server
  [ -n "${LOADPID:-}" ] && kill "$LOADPID" 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then rm -rf "$WORK"/{p1,p2,p3,mbtgt,hb.xbs}; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

fresh=0
if [ ! -d "$DATA/mysql" ]; then
  fresh=1
  install=(--no-defaults --datadir="$DATA" --auth-root-authentication-method=normal)
  [ "$(id -u)" = 0 ] && install+=(--user=root)
  mariadb-install-db "${install[@]}" > "$WORK/install.log" 2>&1
fi
mariadbd "${SERVER_ARGS[@]}" &
SRV=$!
for _ in $(seq 1 100); do [ -S "$SOCK" ] && break; sleep 0.2; done
q() { mariadb --no-defaults -uroot --socket="$SOCK" -N -e "$1"; }
q 'select 1' > /dev/null

if [ $fresh = 1 ]; then
  # 8 tables of rows with 4 x 128 hex characters (about 650 bytes stored each,
  # hashes: no compression to speak of), SIZE_MB in all.
  per=$(( SIZE_MB * 200 ))
  q "CREATE DATABASE bench"
  for t in $(seq 1 8); do
    q "CREATE TABLE bench.t$t (id INT PRIMARY KEY, a VARCHAR(128), b VARCHAR(128), c VARCHAR(128), d VARCHAR(128)) ENGINE=InnoDB"
    q "USE bench; INSERT INTO bench.t$t SELECT seq, CONCAT(SHA2(seq,256), SHA2(seq+1,256)), CONCAT(SHA2(seq+2,256), SHA2(seq+3,256)), CONCAT(SHA2(seq+4,256), SHA2(seq+5,256)), CONCAT(SHA2(seq+6,256), SHA2(seq+7,256)) FROM seq_1_to_$per"
  done
fi
# Wait until the encryption threads have encrypted every tablespace.
for _ in $(seq 1 600); do
  left=$(q "SELECT COUNT(*) FROM information_schema.innodb_tablespaces_encryption WHERE encryption_scheme=0 OR key_rotation_page_number IS NOT NULL")
  [ "$left" = 0 ] && break; sleep 1
done
BYTES=$(du -sb "$DATA" | cut -f1)
echo "# encrypted server: $BYTES bytes in $DATA ($ALGO, log encrypted: $(q 'select @@innodb_encrypt_log')); parallel $PAR; runs $RUNS"

MB="mariabackup --backup --stream=xbstream --user=root --socket=$SOCK --target-dir=$WORK/mbtgt --parallel=$PAR"
HB="$BIN/hotbak backup --no-defaults --socket $SOCK -u root --parallel $PAR --stream --progress none"

echo "## 1. backup throughput to /dev/null"
python3 "$HERE/timer.py" -n "$RUNS" $DROP --alternate --bytes "$BYTES" --pre "rm -rf $WORK/mbtgt; mkdir -p $WORK/mbtgt" \
  "mariabackup=$MB 2>/dev/null >/dev/null" \
  "hotbak=$HB 2>/dev/null >/dev/null"

echo "## 2. prepare of a backup taken while rows are written"
( n=100000000; while :; do n=$((n + 1000))
    q "USE bench; INSERT INTO bench.t1 SELECT $n+seq, SHA2(seq,256), 'x', 'y', 'z' FROM seq_1_to_1000" 2>/dev/null || exit 0
  done ) &
LOADPID=$!
sleep 2
$HB > "$WORK/hb.xbs" 2> "$WORK/hb.err" || { echo "!! hotbak backup failed:"; tail -5 "$WORK/hb.err"; exit 1; }
kill "$LOADPID" 2>/dev/null || true; wait "$LOADPID" 2>/dev/null || true; LOADPID=""
grep -E "redo |encrypted" "$WORK/hb.err" | head -3 || true
PRE="rm -rf $WORK/p1 $WORK/p2 $WORK/p3; mkdir -p $WORK/p1; $BIN/xbextract -x -C $WORK/p1 --no-sync < $WORK/hb.xbs 2>/dev/null; cp -a $WORK/p1 $WORK/p2; cp -a $WORK/p1 $WORK/p3"
python3 "$HERE/timer.py" -n "$RUNS" $DROP --alternate --pre "$PRE" \
  "mariabackup-prepare=mariabackup --defaults-file=$WORK/p2/backup-my.cnf --prepare --target-dir=$WORK/p2 >/dev/null 2>&1" \
  "hotbak-prepare-native=$BIN/hotbak prepare --native --target-dir $WORK/p1 2>/dev/null" \
  "hotbak-prepare-server=$BIN/hotbak prepare --server-recovery --target-dir $WORK/p3 2>/dev/null"
stop_server
