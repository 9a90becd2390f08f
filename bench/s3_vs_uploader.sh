#!/usr/bin/env bash
# hotbak's object-store upload and download versus boto3 (the AWS SDK for
# Python: a well-known multipart uploader) against the same store in the same run.
#
#   bench/s3_vs_uploader.sh            # a generated ~SIZE_MB stream on disk
#   SOCKET=/path/mysqld.sock bench/s3_vs_uploader.sh   # live backups of that server
#
# The store is a SeaweedFS `weed mini` started here on loopback ports (installed
# by .ci/install-seaweedfs.sh), stopped by pid at the end.
#
# Upload, alternating (bench/timer.py: median wall time [min-max], peak RSS):
#   without SOCKET: boto3 = python3 up.py  < STREAM        (upload_fileobj from stdin)
#                   hotbak = hotbak upload STREAM s3://…
#   with SOCKET:    boto3 = hotbak backup --stream | python3 up.py
#                   hotbak = hotbak backup --stream-to s3://…
# Download, alternating:
#   boto3 = python3 down.py | xbextract -x -C DIR          (download_fileobj to stdout)
#   hotbak = xbextract --from s3://… -C DIR
# Both sides use the same part size and parallelism (PART_MB, PAR).
# The ratio column is boto3's median time over hotbak's (> 1: hotbak faster).
#
# Environment: WORK (/tmp/hotbak-s3bench), SIZE_MB (2048), PART_MB (16), PAR (4),
# RUNS (3), HOTBAK/XBEXTRACT (target/release/…), WEED (weed), KEEP=1 keeps $WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/hotbak-s3bench}
SIZE_MB=${SIZE_MB:-2048}
PART_MB=${PART_MB:-16}
PAR=${PAR:-4}
RUNS=${RUNS:-3}
HOTBAK=$(readlink -f "${HOTBAK:-target/release/hotbak}")
XBEXTRACT=$(readlink -f "${XBEXTRACT:-target/release/xbextract}")
WEED=${WEED:-$(command -v weed || true)}
TIMER=$(readlink -f bench/timer.py)
[ -x "$HOTBAK" ] || { echo "build it first: cargo build --release" >&2; exit 2; }
[ -n "$WEED" ] || { echo "weed not found: run .ci/install-seaweedfs.sh" >&2; exit 2; }
python3 -c 'import boto3' 2>/dev/null || { echo "boto3 missing: pip install boto3" >&2; exit 2; }

mkdir -p "$WORK"
WEED_PID=
cleanup() {
  [ -n "$WEED_PID" ] && kill "$WEED_PID" 2>/dev/null && wait "$WEED_PID" 2>/dev/null
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

# A free port p with p+10000 free too (weed's gRPC twins).
free_port() {
  python3 - "$@" <<'PY'
import random, socket, sys
taken = {int(a) for a in sys.argv[1:]}
for _ in range(2000):
    p = random.randrange(20000, 45000)
    if p in taken or p + 10000 in taken:
        continue
    try:
        for q in (p, p + 10000):
            s = socket.socket(); s.bind(("127.0.0.1", q)); s.close()
    except OSError:
        continue
    print(p); break
PY
}
P1=$(free_port); P2=$(free_port "$P1"); P3=$(free_port "$P1" "$P2")
P4=$(free_port "$P1" "$P2" "$P3"); P5=$(free_port "$P1" "$P2" "$P3" "$P4")
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY="bench-$RANDOM$RANDOM"
export AWS_ENDPOINT_URL="http://127.0.0.1:$P1" AWS_REGION=us-east-1
mkdir -p "$WORK/weed"
"$WEED" mini -dir="$WORK/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -admin.ui=false \
  -webdav=false -master.telemetry=false -s3.port.iceberg=0 -s3.port.lance=0 \
  -s3.port="$P1" -master.port="$P2" -volume.port="$P3" -filer.port="$P4" \
  -admin.port="$P5" -bucket=bench >"$WORK/weed.log" 2>&1 &
WEED_PID=$!
for _ in $(seq 1 150); do
  "$HOTBAK" info s3://bench/ >/dev/null 2>&1 && break
  sleep 0.2
done
"$HOTBAK" info s3://bench/ >/dev/null || { echo "weed did not start: $WORK/weed.log" >&2; exit 1; }

cat > "$WORK/up.py" <<PY
import sys, boto3
from boto3.s3.transfer import TransferConfig
cfg = TransferConfig(multipart_threshold=$PART_MB << 20, multipart_chunksize=$PART_MB << 20,
                     max_concurrency=$PAR)
boto3.client("s3").upload_fileobj(sys.stdin.buffer, "bench", sys.argv[1], Config=cfg)
PY
cat > "$WORK/down.py" <<PY
import sys, boto3
from boto3.s3.transfer import TransferConfig
cfg = TransferConfig(multipart_threshold=$PART_MB << 20, multipart_chunksize=$PART_MB << 20,
                     max_concurrency=$PAR)
boto3.client("s3").download_fileobj("bench", sys.argv[1], sys.stdout.buffer, Config=cfg)
PY

S3OPTS="--s3-part-size ${PART_MB}M --s3-parallel $PAR"
ID='$(date +%s%N)'
if [ -n "${SOCKET:-}" ]; then
  BK="'$HOTBAK' backup --no-defaults -u root --socket '$SOCKET' --progress none"
  echo "== upload: live backups of the server at $SOCKET"
  python3 "$TIMER" -n "$RUNS" \
    boto3="$BK --stream 2>/dev/null | python3 '$WORK/up.py' boto/$ID.xbs" \
    hotbak="$BK --stream-to s3://bench/hb-$ID $S3OPTS 2>/dev/null"
  # The download reference is one stream in the plain layout (a live
  # backup's own prefix is cut into attempt segments, which boto3 could not
  # read as one object): a live backup to a file, uploaded.
  eval "$BK --stream > '$WORK/stream.xbs' 2>/dev/null"
  "$HOTBAK" upload "$WORK/stream.xbs" s3://bench/ref $S3OPTS --state-file "$WORK/state" 2>/dev/null
  rm -f "$WORK/stream.xbs"
else
  . bench/gen_tree.sh
  gen_tree "$WORK/src" "$SIZE_MB"
  (cd "$WORK/src" && find . -maxdepth 2 -type f -printf '%P\n' | sort > "$WORK/files.lst")
  (cd "$WORK/src" && xargs -d '\n' "$XBEXTRACT" -c < "$WORK/files.lst" > "$WORK/stream.xbs")
  BYTES=$(stat -c %s "$WORK/stream.xbs")
  echo "== upload: a $BYTES-byte xbstream on disk (in the page cache)"
  cat "$WORK/stream.xbs" > /dev/null
  python3 "$TIMER" -n "$RUNS" --bytes "$BYTES" \
    boto3="python3 '$WORK/up.py' boto/$ID.xbs < '$WORK/stream.xbs'" \
    hotbak="'$HOTBAK' upload '$WORK/stream.xbs' s3://bench/hb-$ID $S3OPTS --state-file '$WORK/state' 2>/dev/null"
  "$HOTBAK" upload "$WORK/stream.xbs" s3://bench/ref $S3OPTS --state-file "$WORK/state" 2>/dev/null
fi
REF_BYTES=$("$HOTBAK" info s3://bench/ref --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["bytes"])')
echo "== download: $REF_BYTES bytes (s3://bench/ref), extracted to a fresh directory"
python3 "$TIMER" -n "$RUNS" --bytes "$REF_BYTES" \
  --pre "rm -rf '$WORK/x'; mkdir -p '$WORK/x'" \
  boto3="python3 '$WORK/down.py' ref/stream.000000.xbs | '$XBEXTRACT' -x --no-sync -C '$WORK/x' 2>/dev/null" \
  hotbak="'$XBEXTRACT' --from s3://bench/ref --s3-parallel $PAR --no-sync -C '$WORK/x' 2>/dev/null"
