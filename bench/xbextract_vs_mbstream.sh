#!/usr/bin/env bash
# xbextract -x versus the stock mbstream -x on the same ~2 GB archive.
#
#   bench/xbextract_vs_mbstream.sh [DATADIR]
#
# Without DATADIR, a datadir-shaped tree is generated under $WORK/src (a few large
# files, many small ones; incompressible content). With DATADIR (e.g. a stopped
# sysbench datadir), its regular files at depth <= 2 are archived (the stock
# mbstream creates only one directory level).
# The archive is written once by `mbstream -c` (a stock stream). Then, alternating,
# with fresh target directories and the archive in the page cache:
#   mbstream  = mbstream -x -p N -C DIR < archive && sync   (mbstream never fsyncs)
#   xbextract = xbextract -x -p N -C DIR < archive          (fsyncs files and directories)
# and prints medians and the per-round wall-time ratio xbextract/mbstream.
#
# Environment: XBEXTRACT (default target/release/xbextract), MBSTREAM (mbstream),
# WORK (/tmp/hotbak-bench), SIZE_MB (2048), PAR (4), RUNS (3), WARMUP (1),
# RUNBENCH (../shared/bench/runbench.py), KEEP=1 keeps $WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
XBEXTRACT=${XBEXTRACT:-target/release/xbextract}
MBSTREAM=${MBSTREAM:-mbstream}
WORK=${WORK:-/tmp/hotbak-bench}
SIZE_MB=${SIZE_MB:-2048}
PAR=${PAR:-4}
RUNS=${RUNS:-3}
WARMUP=${WARMUP:-1}
RUNBENCH=${RUNBENCH:-../shared/bench/runbench.py}
XBEXTRACT=$(readlink -f "$XBEXTRACT")
RUNBENCH=$(readlink -f "$RUNBENCH")
[ -x "$XBEXTRACT" ] || { echo "build it first: cargo build --release (or set XBEXTRACT)" >&2; exit 2; }
command -v "$MBSTREAM" >/dev/null || { echo "mbstream not found" >&2; exit 2; }

# gen_tree DIR SIZE_MB: the shared generated test tree.
. bench/gen_tree.sh

mkdir -p "$WORK"
trap '[ "${KEEP:-0}" = 1 ] || rm -rf "$WORK/x" "$WORK/archive.xbs"' EXIT
if [ $# -ge 1 ]; then
  SRC=$(readlink -f "$1")
else
  SRC=$WORK/src
  gen_tree "$SRC" "$SIZE_MB"
fi
echo "df before: $(df -h "$WORK" | tail -1)"
(cd "$SRC" && find . -maxdepth 2 -type f -printf '%P\0' | sort -z > "$WORK/files.lst")
NFILES=$(tr -cd '\0' < "$WORK/files.lst" | wc -c)
(cd "$SRC" && xargs -0 "$MBSTREAM" -c < "$WORK/files.lst" > "$WORK/archive.xbs")
BYTES=$(stat -c %s "$WORK/archive.xbs")
echo "archive: $BYTES bytes, $NFILES files (mbstream -c of $SRC)"
cat "$WORK/archive.xbs" > /dev/null # into the page cache

python3 "$RUNBENCH" -n "$RUNS" --warmup "$WARMUP" --bytes "$BYTES" \
  --tag "extract ${BYTES} B, -p $PAR" \
  --pre "rm -rf '$WORK/x'; mkdir -p '$WORK/x'; sync" \
  mbstream="$MBSTREAM -x -p $PAR -C '$WORK/x' < '$WORK/archive.xbs' && sync" \
  xbextract="'$XBEXTRACT' -x -p $PAR -C '$WORK/x' < '$WORK/archive.xbs' 2>/dev/null"

# Both tools must have produced the same tree (checked once, outside the timing).
rm -rf "$WORK/x" && mkdir -p "$WORK/x"
"$XBEXTRACT" -x -p "$PAR" --no-sync -C "$WORK/x" < "$WORK/archive.xbs" 2>/dev/null
(cd "$SRC" && xargs -0 sha256sum < "$WORK/files.lst") > "$WORK/want.sha"
(cd "$WORK/x" && sha256sum -c --quiet "$WORK/want.sha") && echo "check: xbextract output matches the source"
