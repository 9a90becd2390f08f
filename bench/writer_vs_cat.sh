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

# Sourced by the bench scripts: gen_tree DIR SIZE_MB builds a datadir-shaped tree of
# about SIZE_MB MiB of incompressible data (once; DIR.stamp records the size):
# ibdata1 (30%), two large .ibd files (20% + 15%), and 16 KiB..1 MiB files in
# db01..db08 for the remaining 35%. Depth is one directory level (mbstream's limit).
gen_tree() {
  local dir=$1 mb=$2
  if [ -f "$dir.stamp" ] && [ "$(cat "$dir.stamp")" = "$mb" ]; then return 0; fi
  rm -rf "$dir"; mkdir -p "$dir"
  echo "generating a ${mb} MiB tree in $dir" >&2
  # One random pool, reused at different offsets (fast; still incompressible).
  head -c $((256 << 20)) /dev/urandom > "$dir/.pool"
  local big=(ibdata1:$((mb * 30 / 100)) db01/big1.ibd:$((mb * 20 / 100)) db02/big2.ibd:$((mb * 15 / 100)))
  local spec f n
  for spec in "${big[@]}"; do
    f=${spec%%:*}; n=${spec##*:}
    mkdir -p "$dir/$(dirname "$f")"
    : > "$dir/$f"
    while [ "$n" -gt 0 ]; do
      local take=$(( n > 256 ? 256 : n ))
      head -c $((take << 20)) "$dir/.pool" >> "$dir/$f"
      n=$((n - take))
    done
  done
  local rest=$(( (mb * 35 / 100) << 20 )) i=0 sz
  while [ "$rest" -gt 0 ]; do
    sz=$(( (16384 << (i % 7)) ))   # 16 KiB .. 1 MiB
    [ "$sz" -gt "$rest" ] && sz=$rest
    mkdir -p "$dir/db0$(( i % 8 + 1 ))"
    dd if="$dir/.pool" of="$dir/db0$(( i % 8 + 1 ))/t$i.ibd" bs=1M iflag=skip_bytes,count_bytes \
      skip=$(( (i * 4099) % (200 << 20) )) count="$sz" status=none
    rest=$((rest - sz)); i=$((i + 1))
  done
  rm -f "$dir/.pool"
  echo "$mb" > "$dir.stamp"
}

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
