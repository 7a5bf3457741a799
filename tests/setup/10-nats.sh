#!/usr/bin/env bash
# (owned by the nats adapter work)
set -euo pipefail
