#!/usr/bin/env bash
# CI smoke, two steps, each a KTAP document on stdout:
#  1. `kvmtorture validate` — every buggy variant caught, every clean variant clean —
#     for VALIDATE_DURATION per variant (default 10s: buggy variants stop at their first
#     violation, so only clean variants use it all);
#  2. `kvmtorture batch scenarios/smoke.list` for BATCH_DURATION in all (default 60s):
#     every fixed model at once, each fixed scenario alone, a det run.
# Exit: the first non-zero of the two (1 violation or surprise, 3 hang).
# Usage: scripts/ci-smoke.sh [VALIDATE_DURATION] [BATCH_DURATION]
#   BIN overrides the binary; RESULTS_DIR (default results) takes the run directories.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bin.sh
out=${RESULTS_DIR:-results}
rc=0
"$BIN" validate --duration "${1:-10s}" --results-dir "$out" --format ktap || rc=$?
brc=0
"$BIN" batch scenarios/smoke.list --duration "${2:-60s}" --results-dir "$out" --format ktap --quiet || brc=$?
[ "$rc" -ne 0 ] && exit "$rc"
exit "$brc"
