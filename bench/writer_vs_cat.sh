#!/usr/bin/env bash
# The xbstream writer versus cat: `xbextract -c` of a ~2 GB directory to /dev/null,
# against `cat` of the same files to /dev/null (files in the page cache).
#
#   bench/writer_vs_cat.sh [DIR]
#
# Three commands, alternating: cat, `xbextract -c --no-manifest` (framing + CRC-32 only),
# and `xbextract -c` (the default: also a BLAKE3 hash of every file for the manifest).
# Prints medians and the ratios against cat.
#
# Environment: XBEXTRACT (target/release/xbextract), WORK (/tmp/hotbak-bench),
# SIZE_MB (2048), RUNS (3), WARMUP (1), RUNBENCH (../shared/bench/runbench.py).
set -euo pipefail
cd "$(dirname "$0")/.."
XBEXTRACT=${XBEXTRACT:-target/release/xbextract}
WORK=${WORK:-/tmp/hotbak-bench}
SIZE_MB=${SIZE_MB:-2048}
RUNS=${RUNS:-3}
WARMUP=${WARMUP:-1}
RUNBENCH=${RUNBENCH:-../shared/bench/runbench.py}
XBEXTRACT=$(readlink -f "$XBEXTRACT")
RUNBENCH=$(readlink -f "$RUNBENCH")
[ -x "$XBEXTRACT" ] || { echo "build it first: cargo build --release (or set XBEXTRACT)" >&2; exit 2; }

# gen_tree DIR SIZE_MB: the shared generated test tree.
. bench/gen_tree.sh

mkdir -p "$WORK"
if [ $# -ge 1 ]; then
  SRC=$(readlink -f "$1")
else
  SRC=$WORK/src
  gen_tree "$SRC" "$SIZE_MB"
fi
(cd "$SRC" && find . -type f -printf '%P\0' | sort -z > "$WORK/files.lst")
BYTES=$(cd "$SRC" && xargs -0 stat -c %s < "$WORK/files.lst" | paste -sd+ | bc)
echo "input: $BYTES bytes in $(tr -cd '\0' < "$WORK/files.lst" | wc -c) files ($SRC)"

# File names go through a bash array so xbextract gets one argument list (one stream).
python3 "$RUNBENCH" -n "$RUNS" --warmup "$WARMUP" --bytes "$BYTES" --tag "write ${BYTES} B to /dev/null" \
  cat="cd '$SRC' && xargs -0 cat < '$WORK/files.lst' > /dev/null" \
  xb_no_manifest="cd '$SRC' && mapfile -d '' F < '$WORK/files.lst' && '$XBEXTRACT' -c --no-manifest \"\${F[@]}\" > /dev/null" \
  xb_default="cd '$SRC' && mapfile -d '' F < '$WORK/files.lst' && '$XBEXTRACT' -c \"\${F[@]}\" > /dev/null"
