#!/usr/bin/env bash
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
