#!/usr/bin/env bash
# A det seed sweep spread over hosts with GNU parallel (`apt-get install parallel`),
# one `hunt --shard I/N` per job, then `kvmtorture merge` of every shard's results.
#   SSHLOGIN  parallel's --sshlogin list, e.g. "4/alice,4/bob" (default ":" = this host);
#             remote hosts need the same CPU architecture and libc as this one (the
#             binary is copied with --basefile, the results come back with --return)
#   SHARDS    how many shards (default 4); JOBS: parallel jobs per host (default 4)
#   OUT       where the shards' results go (default results/cluster-<UTC time>)
# Usage: scripts/parallel-hunt.sh HUNT-ARGS...   e.g.
#   scripts/parallel-hunt.sh --model hpt --variant buggy --threads 4 --ops 100 --seeds 1..2000
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bin.sh
shards=${SHARDS:-4}
out=${OUT:-results/cluster-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
# parallel copies the binary next to the results on each remote host (a no-op for ":").
cp "$BIN" "$out/kvmtorture"
rc=0
parallel --sshlogin "${SSHLOGIN:-:}" --jobs "${JOBS:-4}" --workdir . \
  --basefile "$out/kvmtorture" --return "$out/shard-{}" --cleanup --line-buffer \
  "$out/kvmtorture" hunt --mode det --jobs 1 --shard "{}/$shards" \
  --results-dir "$out/shard-{}" --format human "$@" \
  ::: $(seq 0 $((shards - 1))) || rc=$?
# parallel's exit is the number of failed jobs; a hunt that found a bug exits 1, so
# only the merge below decides.
echo "parallel: $rc shard(s) exited non-zero (1 = it found failing seeds)" >&2
exec "$BIN" merge "$out"/shard-*
