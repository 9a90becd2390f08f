#!/usr/bin/env bash
# hotbak verify --target-dir against reading the same files with cat, cold cache.
#
#   bench/verify_dir.sh [SANDBOX_DIR]
#
# One `hotbak backup --stream` of the running sandbox server (default
# /tmp/mdbbench/sb2g, user bench/bench; ../shared/bench/sandbox.sh makes one) is
# extracted once to a directory (KEEP=1 keeps it in WORK for the next run, which
# then reuses it). Then, N rounds, the order reversed every other round, the
# page cache dropped (as root) before every timed command:
#   cat     = find DIR -type f -print0 | xargs -0 cat > /dev/null
#   verify  = hotbak verify --target-dir DIR [--parallel PAR]
#   before  = the same with $BEFORE (another hotbak binary), when BEFORE is set
# and prints per command the median wall time [min-max], CPU, peak RSS, MB/s
# of the directory, and the per-round ratio cat's time / this command's time,
# median [min-max] (target for verify: >= 0.8x).
#
# Environment: HOTBAK (target/release/hotbak), XBEXTRACT (target/release/xbextract),
# BEFORE (unset), SOCK (SANDBOX_DIR/mysqld.sock), BUSER/BPASS (bench/bench),
# N (rounds, 5), PAR (empty: verify's default), WORK (/tmp/hotbak-bench-vdir), KEEP (0).
set -euo pipefail
cd "$(dirname "$0")/.."
SB=${1:-/tmp/mdbbench/sb2g}
HOTBAK=$(readlink -f "${HOTBAK:-target/release/hotbak}")
XBEXTRACT=$(readlink -f "${XBEXTRACT:-target/release/xbextract}")
BEFORE=${BEFORE:+$(readlink -f "$BEFORE")}
SOCK=${SOCK:-$SB/mysqld.sock}
BUSER=${BUSER:-bench}
BPASS=${BPASS:-bench}
N=${N:-5}
PAR=${PAR:-}
WORK=${WORK:-/tmp/hotbak-bench-vdir}
TIMER=$(readlink -f bench/timer.py)
[ "$(id -u)" = 0 ] || { echo "run as root: the page cache is dropped before every timed command" >&2; exit 2; }
[ -x "$HOTBAK" ] && [ -x "$XBEXTRACT" ] || { echo "build it first: cargo build --release (or set HOTBAK/XBEXTRACT)" >&2; exit 2; }
[ -z "$BEFORE" ] || [ -x "$BEFORE" ] || { echo "BEFORE=$BEFORE is not an executable" >&2; exit 2; }

mkdir -p "$WORK"
trap '[ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"' EXIT
DIR=$WORK/dir
if [ ! -f "$DIR/xtrabackup_checkpoints" ]; then
  [ -S "$SOCK" ] || { echo "no server socket at $SOCK (start the sandbox: ../shared/bench/sandbox.sh)" >&2; exit 2; }
  rm -rf "$DIR"
  "$HOTBAK" backup --no-defaults --socket "$SOCK" -u "$BUSER" -p "$BPASS" --stream --progress none \
    2> "$WORK/backup.log" | "$XBEXTRACT" -C "$DIR" 2> "$WORK/extract.log" \
    || { tail -5 "$WORK/backup.log" "$WORK/extract.log" >&2; exit 1; }
fi
DIRBYTES=$(du -sb "$DIR" | cut -f1)
NFILES=$(find "$DIR" -type f | wc -l)
PARARG=${PAR:+--parallel $PAR}
# Every verifier must find the backup whole before it is timed.
for v in "$HOTBAK" $BEFORE; do
  "$v" verify --target-dir "$DIR" $PARARG 2> "$WORK/check.log" || { cat "$WORK/check.log" >&2; exit 1; }
  grep 'hotbak: verify:' "$WORK/check.log"
done

export HOTBAK BEFORE DIR PARARG
CMDS=('cat=find $DIR -type f -print0 | xargs -0 cat > /dev/null'
      'verify=$HOTBAK verify --target-dir $DIR $PARARG 2>/dev/null')
[ -n "$BEFORE" ] && CMDS+=('before=$BEFORE verify --target-dir $DIR $PARARG 2>/dev/null')
echo "### $(date -u +%FT%TZ) $NFILES files, $DIRBYTES bytes; ${PAR:+--parallel $PAR}${PAR:-default --parallel}; $N rounds, cold cache"
python3 "$TIMER" -n "$N" --drop-caches --alternate --bytes "$DIRBYTES" "${CMDS[@]}"
