#!/usr/bin/env bash
# Runs one gancmp sweep on this GPU host, as one process over all its GPUs (groups of trials
# spread over them), results under WORKDIR (local or gs://). Several GPU hosts: give each host
# its own share with `-- --shard i/N` (recommended: no host waits for another), or run it under
# SLURM (`srun --ntasks=HOSTS --ntasks-per-node=1 experiments/gpu/launch.sh ...`) or Open MPI
# and the hosts join into one jax.distributed job, each process with every GPU of its host
# (`gancmp.runtime.one_task_per_node`: JAX alone would give it only its local rank's GPU).
#
#   experiments/gpu/launch.sh [--dry_run] [--restarts N] WORKDIR [SWEEP_CONFIG]
#       [-- GANCMP_SWEEP_FLAGS...]
#   e.g. DATA_DIR=gs://B/tfds INCEPTION_WEIGHTS=gs://B/inception.npz \
#        experiments/gpu/launch.sh gs://B/lucic2018 configs/sweeps/lucic2018.py -- \
#        --config.max_trials_per_group=16
#
# Installs Python 3.11 (uv), the pinned stack and jax[cuda12] of the lock's JAX into .venv.
# --dry_run prints every command instead of running it. A run stopped by SIGTERM (exit 143: a
# preempted VM's notice, a scheduler) is started again, up to --restarts times (default 3);
# it resumes. Environment: DATA_DIR, INCEPTION_WEIGHTS (passed to every trial). Log:
# WORKDIR/logs/sweep-<host>.log (copied there when WORKDIR is gs://). Nothing to tear down
# but the host itself (this script creates no cloud resource).
set -euo pipefail

dry_run=0 restarts=3
while [ "$#" -gt 0 ]; do
  case "$1" in
    --dry_run) dry_run=1 ;;
    --restarts) restarts=$2; shift ;;
    *) break ;;
  esac
  shift
done
if [ "$#" -lt 1 ]; then
  sed -n '2,20p' "$0" >&2
  exit 2
fi
workdir=${1%/}
shift
sweep=configs/sweeps/lucic2018.py
if [ "$#" -gt 0 ] && [ "$1" != "--" ]; then sweep=$1; shift; fi
if [ "$#" -gt 0 ] && [ "$1" = "--" ]; then shift; fi
extra=("$@")
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

# shellcheck source=experiments/run.sh
source experiments/run.sh  # run: runs a command, or prints it (--dry_run)

export PATH=$HOME/.local/bin:$PATH
if ! command -v uv >/dev/null; then
  if [ "$dry_run" = 1 ]; then
    echo "curl -LsSf https://astral.sh/uv/install.sh | sh"
  else
    curl -LsSf https://astral.sh/uv/install.sh | sh
  fi
fi
run uv venv --python 3.11 --allow-existing .venv
run uv pip install -q --python .venv/bin/python -r requirements.lock
run uv pip install -q --python .venv/bin/python --no-deps -e .
jaxver=$(sed -n 's/^jax==//p' requirements.lock)
run uv pip install -q --python .venv/bin/python "jax[cuda12]==$jaxver"

args=(.venv/bin/gancmp sweep --config "$sweep" --workdir "$workdir" --noprogress)
case "$workdir" in gs://*) args+=(--compilation_cache "$workdir/xla") ;; esac
if [ -n "${DATA_DIR:-}" ]; then args+=(--trial "data_dir=$DATA_DIR"); fi
if [ -n "${INCEPTION_WEIGHTS:-}" ]; then
  args+=(--trial "fid.inception_weights=$INCEPTION_WEIGHTS")
fi
args+=("${extra[@]}")

# the code's commit for the records (a copy made with `git archive` has no .git: set it)
GANCMP_GIT_COMMIT=${GANCMP_GIT_COMMIT:-$(git rev-parse HEAD 2>/dev/null || true)}
export GANCMP_GIT_COMMIT
log=sweep-$(hostname).log
for ((attempt = 0; attempt <= restarts; attempt++)); do
  rc=0
  if [ "$dry_run" = 1 ]; then
    printf '%q ' "${args[@]}"
    echo "> $log 2>&1"
  else
    "${args[@]}" >"$log" 2>&1 || rc=$?
  fi
  case "$workdir" in
    gs://*) run gcloud storage cp -q "$log" "$workdir/logs/" ;;
    *) run mkdir -p "$workdir/logs"; run cp "$log" "$workdir/logs/" ;;
  esac
  if [ "$rc" != 143 ] || [ "$dry_run" = 1 ]; then break; fi
  echo "stopped by SIGTERM: running the same command again (it resumes)"
done
if [ "$rc" != 0 ]; then
  echo "launch.sh: gancmp sweep exited $rc; see $log" >&2
  exit "$rc"
fi
echo "report: .venv/bin/gancmp report $workdir"
echo "teardown: nothing to delete (no cloud resource was created); stop the host when done"
