#!/usr/bin/env bash
# Incremental backups and chain prepare, hotbak against mariabackup, ratios in one run.
#
#   bench/incremental.sh [ROUNDS (2)] [CHANGE_PCT (10)]
#
# Uses a /work/shared/bench sandbox (default SB=/tmp/mdbbench/sb, PORT=3399; started here
# if it is not running, and then stopped here at the end). Each round:
#   1. a full backup with each tool (order alternates between rounds);
#   2. CHANGE_PCT % of the rows of every sbtest table updated (one UPDATE per table);
#   3. an incremental with each tool on its own full (order alternates);
#   4. each chain prepared by its own tool: `hotbak prepare` (native) then
#      `hotbak prepare --incremental-dir`, against `mariabackup --prepare` then
#      `mariabackup --prepare --incremental-dir` (order alternates).
# Prints per round: wall times and sizes, then the medians and ranges of
#   full backup       mariabackup/hotbak wall (> 1: hotbak faster)
#   incremental       mariabackup/hotbak wall, hotbak/mariabackup size (< 1: hotbak smaller),
#                     incremental/full size for hotbak
#   chain prepare     mariabackup/hotbak wall (> 1: hotbak faster)
# Needs hotbak (target/release), mariabackup, the sandbox's sbtest tables (sandbox.sh up).
# A failed run keeps WORK; KEEP=1 also keeps each hotbak chain as it was before its prepare.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}; PCT=${2:-10}
SHARED=${SHARED:-/work/shared/bench}
export PORT=${PORT:-3399}
SBDIR=${SB:-/tmp/mdbbench/sb}
. "$SHARED/common.sh"
sb_paths "$SBDIR"
HOTBAK=${HOTBAK:-$PWD/target/release/hotbak}
WORK=${WORK:-$(mktemp -d /tmp/hotbak-incr-bench.XXXXXX)}
[[ -x $HOTBAK ]] || cargo build --release
started_here=0
if ! "$ADMIN" --no-defaults -uroot --socket="$SOCK" ping >/dev/null 2>&1; then
  "$SHARED/sandbox.sh" start "$SBDIR"; started_here=1
fi
cleanup() {
  local st=$?
  # A failed run keeps its backups (with KEEP=1 also the chain as it was
  # before its prepare) for the post-mortem.
  if [[ $st != 0 ]]; then echo "failed: kept $WORK" >&2; else rm -rf "$WORK"; fi
  if [[ $started_here == 1 ]]; then "$SHARED/sandbox.sh" stop "$SBDIR" || true; fi
}
trap cleanup EXIT

now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2-$1:.2f}')"; }
# Cold page cache before every timed step (as root; DROP=0 turns it off): otherwise a
# tool that reads through the cache (mariabackup) finds the files its previous run left
# there, and one that reads with O_DIRECT (hotbak) never does.
DROP=${DROP:-$([[ $(id -u) == 0 ]] && echo 1 || echo 0)}
drop() { if [[ $DROP == 1 ]]; then sync; echo 3 > /proc/sys/vm/drop_caches; fi; }
timed() { local t0; drop; t0=$(now); "$@" > "$WORK/last.log" 2>&1 || { tail -20 "$WORK/last.log" >&2; exit 1; }; secs "$t0" "$(now)"; }

hb_backup() { # DEST [BASE]
  local extra=(); [[ -n ${2:-} ]] && extra=(--incremental-basedir "$2")
  timed "$HOTBAK" backup --no-defaults --socket "$SOCK" -u root --target-dir "$1" "${extra[@]}"
}
mb_backup() { # DEST [BASE]
  local extra=(); [[ -n ${2:-} ]] && extra=(--incremental-basedir="$2")
  timed mariabackup --no-defaults --backup --user=root --socket="$SOCK" --target-dir="$1" "${extra[@]}"
}
hb_chain() { # FULL INC
  local t0; drop; t0=$(now)
  "$HOTBAK" prepare --native --target-dir "$1" > "$WORK/last.log" 2>&1 || { cat "$WORK/last.log" >&2; exit 1; }
  "$HOTBAK" prepare --target-dir "$1" --incremental-dir "$2" >> "$WORK/last.log" 2>&1 || { cat "$WORK/last.log" >&2; exit 1; }
  secs "$t0" "$(now)"
}
mb_chain() { # FULL INC
  local t0; drop; t0=$(now)
  mariabackup --no-defaults --prepare --target-dir="$1" > "$WORK/last.log" 2>&1 || { tail -20 "$WORK/last.log" >&2; exit 1; }
  mariabackup --no-defaults --prepare --target-dir="$1" --incremental-dir="$2" >> "$WORK/last.log" 2>&1 || { tail -20 "$WORK/last.log" >&2; exit 1; }
  secs "$t0" "$(now)"
}

TABLES=$(sb_mysql -N -e "SELECT GROUP_CONCAT(table_name) FROM information_schema.tables WHERE table_schema='sbtest' AND table_name LIKE 'sbtest%'")
[[ -n $TABLES && $TABLES != NULL ]] || { echo "no sbtest tables in $SBDIR (sandbox.sh up first)" >&2; exit 1; }
log "sandbox $SBDIR ($(dir_bytes "$DATADIR") bytes), tables $TABLES, $ROUNDS rounds, ${PCT}% of rows changed"
R=$WORK/results; : > "$R"
for r in $(seq 1 "$ROUNDS"); do
  d=$WORK/r$r; mkdir -p "$d"
  if (( r % 2 )); then order="hb mb"; else order="mb hb"; fi
  declare -A full inc prep
  for t in $order; do full[$t]=$(${t}_backup "$d/$t-full"); done
  modulo=$(( 100 / PCT ))
  for tb in ${TABLES//,/ }; do
    sb_mysql -e "UPDATE sbtest.$tb SET k = k + 1 WHERE id % $modulo = $((r % modulo))"
  done
  for t in $order; do inc[$t]=$(${t}_backup "$d/$t-inc" "$d/$t-full"); done
  fs_hb=$(dir_bytes "$d/hb-full"); is_hb=$(dir_bytes "$d/hb-inc"); is_mb=$(dir_bytes "$d/mb-inc")
  if [[ ${KEEP:-0} == 1 ]]; then cp -a "$d/hb-full" "$d/keep-hb-full"; cp -a "$d/hb-inc" "$d/keep-hb-inc"; fi
  for t in $order; do prep[$t]=$(${t}_chain "$d/$t-full" "$d/$t-inc"); done
  echo "round $r ($order): full hotbak ${full[hb]}s mariabackup ${full[mb]}s; incremental hotbak ${inc[hb]}s $is_hb B, mariabackup ${inc[mb]}s $is_mb B (hotbak full $fs_hb B); chain prepare hotbak ${prep[hb]}s mariabackup ${prep[mb]}s"
  python3 - "$R" <<EOF
import json, sys
f = {"full": ${full[mb]} / ${full[hb]}, "inc": ${inc[mb]} / ${inc[hb]}, "size": $is_hb / $is_mb,
     "inc_vs_full": $is_hb / $fs_hb, "prep": ${prep[mb]} / ${prep[hb]}}
open(sys.argv[1], "a").write(json.dumps(f) + "\n")
EOF
  rm -rf "$d"
done
python3 - "$R" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def show(key, what):
    v = [r[key] for r in rows]
    print(f"{what:58s} median {statistics.median(v):.2f}  range {min(v):.2f}-{max(v):.2f}  ({len(v)} rounds)")
show("full", "full backup wall, mariabackup/hotbak (>1: hotbak faster)")
show("inc", "incremental backup wall, mariabackup/hotbak (>1: faster)")
show("size", "incremental size, hotbak/mariabackup (<=1: not larger)")
show("inc_vs_full", "hotbak incremental size / hotbak full size")
show("prep", "chain prepare wall, mariabackup/hotbak (>1: faster)")
EOF
