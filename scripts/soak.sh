#!/usr/bin/env bash
# Overnight soak: `kvmtorture soak` (rounds of scenarios/soak.list with fresh seeds until
# the deadline, then a summary). Arguments go to it unchanged, e.g.
#   scripts/soak.sh --duration 8h --results-dir /var/tmp/soak
#   scripts/soak.sh --resume results/soak-20261130T010000Z-soak
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bin.sh
exec "$BIN" soak "$@"
