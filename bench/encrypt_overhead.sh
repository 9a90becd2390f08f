#!/usr/bin/env bash
# Cost of authenticated encryption: the same hotbak streaming backup with and
# without --encrypt (AES-256-GCM), measured side by side.
#
#   bench/encrypt_overhead.sh [SANDBOX_DIR]
#
# Alternating (plain, encrypted, plain, encrypted, ...), page cache dropped
# before every run:
#   hotbak backup --stream --compress=zstd                                   > /dev/null
#   hotbak backup --stream --compress=zstd --encrypt --encrypt-key-file KEY  > /dev/null
# (COMPRESS="" measures the uncompressed stream instead). Prints the per-round
# ratio encrypted/plain; target <= 1.10.
#
# Environment: HOTBAK (target/release/hotbak), SOCK (SANDBOX_DIR/mysqld.sock),
# BUSER/BPASS (bench/bench), RUNS (3), WARMUP (0), PAR (2), COMPRESS (--compress=zstd),
# WORK (/tmp/hotbak-bench-encrypt), RUNBENCH (../shared/bench/runbench.py; a plain
# loop is used when it is missing).
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
COMPRESS=${COMPRESS---compress=zstd}
WORK=${WORK:-/tmp/hotbak-bench-encrypt}
RUNBENCH=${RUNBENCH:-../shared/bench/runbench.py}
[ -x "$HOTBAK" ] || { echo "build it first: cargo build --release (or set HOTBAK)" >&2; exit 2; }
[ -S "$SOCK" ] || { echo "no server socket at $SOCK" >&2; exit 2; }
mkdir -p "$WORK"
KEY=$WORK/key
head -c 32 /dev/urandom > "$KEY"
chmod 600 "$KEY"
export HOTBAK SOCK BUSER BPASS WORK PAR COMPRESS KEY
BYTES=$(du -sb "$SB/data" 2>/dev/null | cut -f1 || echo 0)

HB="\$HOTBAK backup --no-defaults --socket \$SOCK -u \$BUSER -p \$BPASS --parallel \$PAR --stream --progress none \$COMPRESS"
PLAIN="$HB 2>>\$WORK/plain.log > /dev/null"
ENC="$HB --encrypt --encrypt-key-file \$KEY 2>>\$WORK/enc.log > /dev/null"

echo "### $(date -u +%FT%TZ) datadir $BYTES bytes, --parallel $PAR, ${COMPRESS:-uncompressed}, runs $RUNS"
if [ -f "$RUNBENCH" ]; then
  python3 "$RUNBENCH" -n "$RUNS" --warmup "$WARMUP" --drop-caches --bytes "$BYTES" \
    "plain=$PLAIN" "encrypted=$ENC"
else
  for ((i = 0; i < RUNS; i++)); do
    w=()
    for c in "$PLAIN" "$ENC"; do
      sync; echo 3 > /proc/sys/vm/drop_caches || echo "WARN: cannot drop caches" >&2
      t0=$(date +%s.%N)
      bash -o pipefail -c "$c" || echo "WARN: exit $? from: $c" >&2
      w+=("$(echo "$(date +%s.%N) - $t0" | bc)")
    done
    echo "round $i: plain ${w[0]}s  encrypted ${w[1]}s  ratio $(echo "scale=3; ${w[1]} / ${w[0]}" | bc)x"
  done
fi
echo "(target: encrypted/plain <= 1.10x)"
grep -h -w -i "error" "$WORK"/*.log 2>/dev/null | tail -3 || true
rm -rf "$WORK"
