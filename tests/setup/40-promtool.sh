#!/usr/bin/env bash
# promtool (checks and unit-tests the Prometheus rules in examples/prometheus/): Debian's `prometheus` package
# ships it.  Only the binary is used; the package's server is never started by the tests.  Idempotent.
set -euo pipefail
if ! command -v promtool >/dev/null || ! promtool --version >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    # policy-rc.d: the package's postinst must not start a Prometheus server on this machine
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null && $SUDO chmod +x /usr/sbin/policy-rc.d
        trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus
fi
promtool --version | head -1
