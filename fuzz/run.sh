#!/usr/bin/env bash
# Run every fuzz target under libFuzzer for a while and fail on the first
# crash, panic, failed property, timeout or memory blow-up.
#
#   fuzz/run.sh [SECONDS_PER_TARGET (60)] [TARGET ...]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). On a stable toolchain it
# runs with RUSTC_BOOTSTRAP=1 and without a sanitizer (the crate has no
# unsafe code of its own; the memory bound is enforced by libFuzzer's
# -rss_limit_mb and -malloc_limit_mb). Corpora are kept in fuzz/corpus/.
set -euo pipefail
cd "$(dirname "$0")"
SECS=${1:-60}; shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || mapfile -t TARGETS < <(ls fuzz_targets | sed 's/\.rs$//')
export RUSTC_BOOTSTRAP=1
cargo fuzz build --sanitizer none -O >/dev/null
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t"
  log=$(mktemp)
  if cargo fuzz run --sanitizer none -O "$t" "corpus/$t" -- \
      -max_total_time="$SECS" -rss_limit_mb=1024 -malloc_limit_mb=512 -timeout=10 \
      -print_final_stats=1 >"$log" 2>&1; then
    runs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')
    rss=$(grep -m1 'stat::peak_rss_mb' "$log" | awk '{print $2}')
    cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -o 'cov: [0-9]*' || true)
    echo "fuzz $t: ok, ${SECS}s, $runs inputs, peak RSS ${rss} MB, $cov"
  else
    echo "fuzz $t: FAILED" >&2
    tail -40 "$log" >&2
    exit 1
  fi
  rm -f "$log"
done
