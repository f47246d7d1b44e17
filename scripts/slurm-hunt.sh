#!/usr/bin/env bash
# A det seed sweep as a Slurm job array: task I of N runs `hunt --shard I/N` into
# $OUT/shard-I on a shared filesystem; `kvmtorture merge $OUT/shard-*` combines them.
#   sbatch --array=0-15 scripts/slurm-hunt.sh --model hpt --variant buggy --seeds 1..100000
#   # when the array is done:
#   kvmtorture merge results/slurm-<array job id>/shard-*
# Outside Slurm (a test), SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT may be set by hand.
#SBATCH --job-name=kvmtorture-hunt
#SBATCH --cpus-per-task=4
#SBATCH --time=04:00:00
#SBATCH --output=slurm-%A_%a.out
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
. scripts/bin.sh
i=${SLURM_ARRAY_TASK_ID:?run under sbatch --array, or set SLURM_ARRAY_TASK_ID}
n=${SLURM_ARRAY_TASK_COUNT:?run under sbatch --array, or set SLURM_ARRAY_TASK_COUNT}
out=${OUT:-results/slurm-${SLURM_ARRAY_JOB_ID:-local}}
rc=0
"$BIN" hunt --mode det --jobs "${SLURM_CPUS_PER_TASK:-1}" --shard "$i/$n" \
  --results-dir "$out/shard-$i" "$@" || rc=$?
# 1 = failing seeds found (kept in the shard's directory), not a job failure.
[ "$rc" -le 1 ] || exit "$rc"
