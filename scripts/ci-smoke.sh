#!/usr/bin/env bash
# CI smoke: `kvmtorture validate` — every buggy variant caught, every clean variant
# clean — for DURATION per variant (default 10s: buggy variants stop at the first
# violation, so only clean variants use it all; lock-reinit takes up to ~5 s).
# KTAP on stdout; exit 1 on a surprise.
# Usage: scripts/ci-smoke.sh [DURATION]   (BIN overrides the binary)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/kvmtorture}
[ -x "$BIN" ] || cargo build --release --quiet
exec "$BIN" validate --duration "${1:-10s}" --results-dir "${RESULTS_DIR:-results}"
