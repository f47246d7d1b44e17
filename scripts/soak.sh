#!/usr/bin/env bash
# Overnight soak: every fixed/clean scenario in turn, each for DURATION (default 1h),
# round after round until Ctrl-C. A failing run's directory holds its report and
# replay command; the script stops at the first failure.
# Usage: scripts/soak.sh [DURATION] [RESULTS_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
dur=${1:-1h}; out=${2:-results}
BIN=${BIN:-target/release/kvmtorture}
[ -x "$BIN" ] || cargo build --release --quiet
round=0
while :; do
  round=$((round+1))
  for f in scenarios/*.toml; do
    grep -q '^variant *= *"\(fixed\|no-recheck\|skip-invalid\|removed\)"' "$f" || continue
    seed=$(( (round * 7919 + RANDOM) % 1000000 ))
    echo "soak round $round: $(basename "$f" .toml) seed $seed for $dur"
    "$BIN" run "$f" --duration "$dur" --seed "$seed" --results-dir "$out"
    rc=$?
    [ $rc -eq 130 ] && exit 130
    [ $rc -ne 0 ] && { echo "soak: $(basename "$f") failed with exit $rc"; exit $rc; }
  done
done
