#!/usr/bin/env bash
# hotbak verify: the stream mode against extracting the same stream, and the
# directory mode against reading the same files.
#
#   bench/verify_stream.sh [SANDBOX_DIR]
#
# One `hotbak backup --stream` of the running sandbox server (default
# /tmp/mdbbench/sb, user bench/bench; ../shared/bench/sandbox.sh makes one) is
# taken to a file once, and extracted once to a directory. Then, alternating,
# with the stream and the files in the page cache (DROP=1 drops it before
# every run instead):
#   1. verify --stream  = hotbak verify --stream [--parallel PAR] < stream
#      xbextract        = xbextract [-p PAR] -C DIR $XB_ARGS < stream   (a fresh DIR each run;
#                         XB_ARGS defaults to --no-sync: verify writes nothing either)
#   2. verify --dir     = hotbak verify --target-dir DIR [--parallel PAR]
#      cat              = cat every file of DIR > /dev/null
# and prints per command the median wall time [min-max], CPU, peak RSS, MB/s of
# the stream, and the per-round speed ratio against the first command of its pair.
#
# Environment: HOTBAK, XBEXTRACT (target/release/…), SOCK (SANDBOX_DIR/mysqld.sock),
# BUSER/BPASS (bench/bench), N (runs, 3), PAR (empty: each tool's default, as a user
# runs them: the number of cores; verify --target-dir at least 4), COMPRESS (empty: a plain stream;
# e.g. --compress=zstd), XB_ARGS (--no-sync), DROP (0), WORK (/tmp/hotbak-bench-verify),
# KEEP=1 keeps WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
SB=${1:-/tmp/mdbbench/sb}
HOTBAK=$(readlink -f "${HOTBAK:-target/release/hotbak}")
XBEXTRACT=$(readlink -f "${XBEXTRACT:-target/release/xbextract}")
SOCK=${SOCK:-$SB/mysqld.sock}
BUSER=${BUSER:-bench}
BPASS=${BPASS:-bench}
N=${N:-3}
PAR=${PAR:-}
# Empty: no option, each tool's own default.
PARARG=${PAR:+--parallel $PAR}
XPARARG=${PAR:+-p $PAR}
COMPRESS=${COMPRESS:-}
XB_ARGS=${XB_ARGS---no-sync}
DROP=${DROP:-0}
WORK=${WORK:-/tmp/hotbak-bench-verify}
TIMER=$(readlink -f bench/timer.py)
[ -x "$HOTBAK" ] && [ -x "$XBEXTRACT" ] || { echo "build it first: cargo build --release (or set HOTBAK/XBEXTRACT)" >&2; exit 2; }
[ -S "$SOCK" ] || { echo "no server socket at $SOCK (start the sandbox: ../shared/bench/sandbox.sh)" >&2; exit 2; }
mariadb --no-defaults -u"$BUSER" -p"$BPASS" --socket="$SOCK" -N -e 'SELECT 1' >/dev/null 2>&1 \
  || { echo "no server answers at $SOCK as $BUSER" >&2; exit 2; }

mkdir -p "$WORK"
trap '[ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"' EXIT
STREAM=$WORK/stream.xbs
DIR=$WORK/dir
"$HOTBAK" backup --no-defaults --socket "$SOCK" -u "$BUSER" -p "$BPASS" $PARARG \
  --stream --progress none $COMPRESS > "$STREAM" 2> "$WORK/backup.log" \
  || { tail -5 "$WORK/backup.log" >&2; exit 1; }
rm -rf "$DIR"
"$XBEXTRACT" $XPARARG -C "$DIR" < "$STREAM" 2> "$WORK/extract.log"
BYTES=$(stat -c %s "$STREAM")
DIRBYTES=$(du -sb "$DIR" | cut -f1)
NFILES=$(find "$DIR" -type f | wc -l)
# Both modes must find the backup whole before they are timed.
"$HOTBAK" verify --stream $PARARG < "$STREAM" 2> "$WORK/check.log" \
  || { cat "$WORK/check.log" >&2; exit 1; }
"$HOTBAK" verify --target-dir "$DIR" $PARARG 2>> "$WORK/check.log" \
  || { cat "$WORK/check.log" >&2; exit 1; }
grep 'hotbak: verify:' "$WORK/check.log"

export HOTBAK XBEXTRACT STREAM DIR PARARG XPARARG XB_ARGS WORK
DROPARG=()
[ "$DROP" = 1 ] && DROPARG=(--drop-caches)
echo "### $(date -u +%FT%TZ) stream $BYTES bytes (${COMPRESS:-uncompressed}), $NFILES files, $DIRBYTES bytes extracted; --parallel ${PAR:-default}; $N runs; cache $([ "$DROP" = 1 ] && echo dropped || echo warm)"
echo "## 1. verify --stream vs xbextract of the same stream"
python3 "$TIMER" -n "$N" "${DROPARG[@]}" --bytes "$BYTES" --pre 'rm -rf "$WORK/x"' \
  'verify --stream=$HOTBAK verify --stream $PARARG < $STREAM 2>/dev/null' \
  'xbextract=$XBEXTRACT $XPARARG -C $WORK/x $XB_ARGS < $STREAM 2>/dev/null'
echo "## 2. verify --target-dir vs cat of the same files"
python3 "$TIMER" -n "$N" "${DROPARG[@]}" --bytes "$DIRBYTES" \
  'verify --target-dir=$HOTBAK verify --target-dir $DIR $PARARG 2>/dev/null' \
  'cat=find $DIR -type f -print0 | xargs -0 cat > /dev/null'
