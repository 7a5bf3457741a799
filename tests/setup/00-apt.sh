#!/usr/bin/env bash
# Debian packages the tests need (compiler toolchain for the Cython build; cmake for Aeron).
set -euo pipefail
need=()
for p in gcc g++ cmake make; do command -v "$p" >/dev/null || need+=("$p"); done
if ((${#need[@]})); then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}"
fi
