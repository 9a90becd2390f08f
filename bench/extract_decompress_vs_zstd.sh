#!/usr/bin/env bash
# One-pass extraction of a zstd-compressed hotbak stream versus the stock
# `zstd -d` decoding the very same frames alone.
#
#   bench/extract_decompress_vs_zstd.sh [SANDBOX_DIR]
#
# Once: `hotbak backup --stream --compress=zstd > $WORK/backup.xbs`, then the stock
# `mbstream -x` extracts its members as stored and every `.zst` member is
# concatenated (sorted by name) into $WORK/all.zst: the same frames, one file.
# Then, alternating, with the inputs in the page cache and fresh outputs on the
# same filesystem (both fsync their output before they count as done):
#   zstd       = zstd -d -q -c all.zst > out.bin && sync out.bin
#   xbextract  = xbextract -x -C ext < backup.xbs     (parse, check, decompress, hash, write, verify, fsync)
#   xbextract-p2 = the same with -p 2
# Prints per-round ratios xbextract/zstd; throughput ratio = 1/ratio (target >= 0.9,
# i.e. a wall-time ratio <= 1.11).
#
# Environment: HOTBAK, XBEXTRACT (target/release/…), SOCK (SANDBOX_DIR/mysqld.sock),
# BUSER/BPASS (bench/bench), RUNS (3), WARMUP (1), WORK (/tmp/hotbak-bench-xzstd),
# RUNBENCH (../shared/bench/runbench.py; a plain loop is used when it is missing),
# KEEP=1 keeps $WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
SB=${1:-/tmp/mdbbench/sb2g}
HOTBAK=$(readlink -f "${HOTBAK:-target/release/hotbak}")
XBEXTRACT=$(readlink -f "${XBEXTRACT:-target/release/xbextract}")
SOCK=${SOCK:-$SB/mysqld.sock}
BUSER=${BUSER:-bench}
BPASS=${BPASS:-bench}
RUNS=${RUNS:-3}
WARMUP=${WARMUP:-1}
WORK=${WORK:-/tmp/hotbak-bench-xzstd}
RUNBENCH=${RUNBENCH:-../shared/bench/runbench.py}
for b in "$HOTBAK" "$XBEXTRACT"; do
  [ -x "$b" ] || { echo "build it first: cargo build --release ($b)" >&2; exit 2; }
done
[ -S "$SOCK" ] || { echo "no server socket at $SOCK" >&2; exit 2; }
for t in mbstream zstd; do command -v $t >/dev/null || { echo "$t not found" >&2; exit 2; }; done
cleanup() { [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"; }
trap cleanup EXIT
rm -rf "$WORK"; mkdir -p "$WORK/raw"
export XBEXTRACT WORK

"$HOTBAK" backup --no-defaults --socket "$SOCK" -u "$BUSER" -p "$BPASS" --parallel 2 \
  --stream --compress=zstd --progress none > "$WORK/backup.xbs" 2> "$WORK/hotbak.log"
mbstream -x -C "$WORK/raw" < "$WORK/backup.xbs"
(cd "$WORK/raw" && find . -name '*.zst' -type f | LC_ALL=C sort | xargs cat) > "$WORK/all.zst"
rm -rf "$WORK/raw"
# Decoded size (the bytes both sides write).
OUT=$(zstd -d -q -c "$WORK/all.zst" | wc -c)
echo "### $(date -u +%FT%TZ) stream $(stat -c %s "$WORK/backup.xbs") bytes; .zst frames $(stat -c %s "$WORK/all.zst") bytes -> $OUT bytes decoded; runs $RUNS"
df -h "$WORK" | tail -1

ZS='zstd -d -q -c $WORK/all.zst > $WORK/out.bin && sync $WORK/out.bin'
X1='$XBEXTRACT -x -p 1 -C $WORK/ext < $WORK/backup.xbs 2>>$WORK/xb.log'
X2='$XBEXTRACT -x -p 2 -C $WORK/ext < $WORK/backup.xbs 2>>$WORK/xb.log'
PRE='rm -rf $WORK/ext $WORK/out.bin'
if [ -f "$RUNBENCH" ]; then
  python3 "$RUNBENCH" -n "$RUNS" --warmup "$WARMUP" --bytes "$OUT" --pre "$PRE" \
    "zstd-d=$ZS" "xbextract=$X1" "xbextract-p2=$X2"
else
  for ((i = 0; i < RUNS; i++)); do
    w=()
    for c in "$ZS" "$X1" "$X2"; do
      bash -c "$PRE"
      t0=$(date +%s.%N)
      bash -o pipefail -c "$c" || echo "WARN: exit $? from: $c" >&2
      w+=("$(echo "$(date +%s.%N) - $t0" | bc)")
    done
    echo "round $i: zstd ${w[0]}s xbextract ${w[1]}s (-p2 ${w[2]}s) ratios $(echo "scale=3; ${w[1]} / ${w[0]}" | bc)x $(echo "scale=3; ${w[2]} / ${w[0]}" | bc)x"
  done
fi
tail -1 "$WORK/xb.log"
echo "(throughput ratio = 1 / wall ratio; target >= 0.9)"
