#!/usr/bin/env bash
# CI smoke: run every scenario for a short while and check its exit code against
# what its variant promises (clean variants 0, race/sequential variants 1).
# Usage: scripts/ci-smoke.sh [DURATION]   (default 2s; BIN overrides the binary)
set -uo pipefail
cd "$(dirname "$0")/.."
dur=${1:-2s}
BIN=${BIN:-target/release/kvmtorture}
[ -x "$BIN" ] || cargo build --release --quiet
res=$(mktemp -d); trap 'rm -rf "$res"' EXIT
# "model variant expected-exit" from the human listing (clean variants exit 0).
expect=$("$BIN" list | awk '/^[^ ]/ {m=$1} /^  [^ ]/ {print m, $1, ($2 == "clean") ? 0 : 1}')
fail=0; n=0
for f in scenarios/*.toml; do
  name=$(basename "$f" .toml)
  model=$(sed -n 's/^model *= *"\(.*\)"/\1/p' "$f"); variant=$(sed -n 's/^variant *= *"\(.*\)"/\1/p' "$f")
  want=$(awk -v m="$model" -v v="${variant:-fixed}" '$1==m && $2==v {print $3}' <<<"$expect")
  [ -n "$want" ] || { echo "not ok: $name names an unknown model/variant"; fail=$((fail+1)); continue; }
  "$BIN" run "$f" --duration "$dur" --quiet --format ktap --results-dir "$res" >"$res/$name.out" 2>&1
  rc=$?; n=$((n+1))
  if [ "$rc" -eq "$want" ]; then echo "ok $n $name (exit $rc)"; else echo "not ok $n $name (exit $rc, want $want)"; cat "$res/$name.out"; fail=$((fail+1)); fi
done
echo "smoke: $((n-fail)) passed, $fail failed"
exit $((fail > 0))
