#!/usr/bin/env bash
# (owned by the aeron adapter work)
set -euo pipefail
