#!/usr/bin/env bash
# Compressed streaming backup: hotbak's in-process parallel compression versus
# mariabackup piped into the stock compressor, measured side by side.
#
#   bench/compress_vs_peer.sh [SANDBOX_DIR]
#
# Pairs, each alternating (peer, hotbak, peer, hotbak, ...) with the page cache
# dropped before every run (`sync; echo 3 > /proc/sys/vm/drop_caches`):
#   zstd: mariabackup --backup --stream=xbstream | zstd -1 -T2 > /dev/null
#         hotbak backup --stream --compress=zstd                 > /dev/null   (target >= 1.6x faster)
#   lz4:  mariabackup --backup --stream=xbstream | lz4 -1      > /dev/null
#         hotbak backup --stream --compress=lz4                  > /dev/null   (target >= 2.5x faster)
# Prints median wall times and the per-round ratios hotbak/peer; speedup = 1/ratio.
#
# Environment: HOTBAK (target/release/hotbak), SOCK (SANDBOX_DIR/mysqld.sock),
# BUSER/BPASS (bench/bench), RUNS (3), WARMUP (0), PAR (2: --parallel of both tools),
# WORK (/tmp/hotbak-bench-compress), RUNBENCH (../shared/bench/runbench.py; a plain
# loop is used when it is missing), PAIRS ("zstd lz4").
set -euo pipefail
cd "$(dirname "$0")/.."
SB=${1:-/tmp/mdbbench/sb2g}
HOTBAK=$(readlink -f "${HOTBAK:-target/release/hotbak}")
SOCK=${SOCK:-$SB/mysqld.sock}
BUSER=${BUSER:-bench}
BPASS=${BPASS:-bench}
RUNS=${RUNS:-3}
WARMUP=${WARMUP:-0}
PAR=${PAR:-2}
WORK=${WORK:-/tmp/hotbak-bench-compress}
RUNBENCH=${RUNBENCH:-../shared/bench/runbench.py}
PAIRS=${PAIRS:-zstd lz4}
[ -x "$HOTBAK" ] || { echo "build it first: cargo build --release (or set HOTBAK)" >&2; exit 2; }
[ -S "$SOCK" ] || { echo "no server socket at $SOCK" >&2; exit 2; }
for t in mariabackup zstd lz4; do
  command -v $t >/dev/null || { echo "$t not found" >&2; exit 2; }
done
mkdir -p "$WORK"
export HOTBAK SOCK BUSER BPASS WORK PAR
BYTES=$(du -sb "$SB/data" 2>/dev/null | cut -f1 || echo 0)

MB="mariabackup --backup --stream=xbstream --user=\$BUSER --password=\$BPASS --socket=\$SOCK --parallel=\$PAR --target-dir=\$WORK/mbtmp 2>>\$WORK/mariabackup.log"
HB="\$HOTBAK backup --no-defaults --socket \$SOCK -u \$BUSER -p \$BPASS --parallel \$PAR --stream --progress none 2>>\$WORK/hotbak.log"
PRE='rm -rf $WORK/mbtmp; mkdir -p $WORK/mbtmp'

# run_pair LABEL1 CMD1 LABEL2 CMD2: alternating, caches dropped, ratios CMD2/CMD1.
run_pair() {
  if [ -f "$RUNBENCH" ]; then
    python3 "$RUNBENCH" -n "$RUNS" --warmup "$WARMUP" --drop-caches --bytes "$BYTES" \
      --pre "$PRE" "$1=$2" "$3=$4"
    return
  fi
  local i w1 w2 t0
  local -a r
  for ((i = 0; i < RUNS; i++)); do
    for c in "$2" "$4"; do
      bash -c "$PRE"
      sync; echo 3 > /proc/sys/vm/drop_caches || echo "WARN: cannot drop caches" >&2
      t0=$(date +%s.%N)
      bash -o pipefail -c "$c" || echo "WARN: exit $? from: $c" >&2
      r+=("$(echo "$(date +%s.%N) - $t0" | bc)")
    done
    w1=${r[-2]} w2=${r[-1]}
    echo "round $i: $1 ${w1}s  $3 ${w2}s  ratio $3/$1 $(echo "scale=3; $w2 / $w1" | bc)x"
  done
}

echo "### $(date -u +%FT%TZ) datadir $BYTES bytes, --parallel $PAR, runs $RUNS, hotbak $("$HOTBAK" --version)"
for alg in $PAIRS; do
  case $alg in
    zstd) run_pair mariabackup+zstd-1-T2 "$MB | zstd -q -1 -T2 > /dev/null" \
                   hotbak-zstd "$HB --compress=zstd > /dev/null" ;;
    lz4)  run_pair mariabackup+lz4-1 "$MB | lz4 -q -1 > /dev/null" \
                   hotbak-lz4 "$HB --compress=lz4 > /dev/null" ;;
    *) echo "unknown pair $alg" >&2; exit 2 ;;
  esac
done
echo "(speedup = 1 / ratio; targets: zstd >= 1.6x, lz4 >= 2.5x)"
grep -h -w -i "error" "$WORK"/*.log 2>/dev/null | tail -3 || true
rm -rf "$WORK"
