#!/usr/bin/env bash
# (owned by the kafka adapter work)
set -euo pipefail
