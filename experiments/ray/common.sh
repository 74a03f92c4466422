#!/usr/bin/env bash
# Sourced by experiments/ray/tpu_cluster.sh and gpu_cluster.sh: their arguments, the code they
# ship, the Ray head (a small CPU VM that runs the driver and no actor), the install every node
# runs, and the commands that join a worker to the cluster and start the driver.
#
# After `source`: parse_args "$@" sets dry_run spot watch name zone count workdir sweep extra;
# the caller then calls head_up, worker_up WORKER for each worker, start_driver, and (--watch)
# watch_workers, with its own worker_state / worker_create / worker_ssh / worker_scp functions.

# shellcheck source=experiments/run.sh
source "$(dirname "${BASH_SOURCE[0]}")/../run.sh"  # run: runs a command, or prints it (--dry_run)

usage_lines=${usage_lines:-'2,30p'}
# spot, watch and the rest are read by the sourcing script
# shellcheck disable=SC2034
parse_args() {
  dry_run=0 spot=0 watch=0
  while [ "$#" -gt 0 ]; do
    case "$1" in
      --dry_run) dry_run=1 ;;
      --spot) spot=1 ;;
      --watch) watch=1 ;;
      *) break ;;
    esac
    shift
  done
  if [ "$#" -lt 4 ]; then
    sed -n "$usage_lines" "$0" >&2
    exit 2
  fi
  name=$1 zone=$2 count=$3 workdir=${4%/}
  shift 4
  sweep=configs/sweeps/lucic2018.py
  if [ "$#" -gt 0 ] && [ "$1" != "--" ]; then sweep=$1; shift; fi
  if [ "$#" -gt 0 ] && [ "$1" = "--" ]; then shift; fi
  extra=("$@")
  case "$count" in
    '' | *[!0-9]* | 0) echo "$(basename "$0"): N (workers) must be a positive integer, got" \
                         "$count" >&2; exit 2 ;;
  esac
  case "$workdir" in
    gs://*) ;;
    *) echo "$(basename "$0"): GS_WORKDIR must be a gs:// path (every node reads and writes" \
         "there; a VM's disk dies with it)" >&2; exit 2 ;;
  esac
  project=()
  if [ -n "${PROJECT:-}" ]; then project=(--project "$PROJECT"); fi
  interval=${WATCH_INTERVAL_S:-300}
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  commit=$(git -C "$here" rev-parse HEAD)
  archive=/tmp/gancmp-$name-${commit:0:12}.tar.gz
  head_vm=$name-head
}

# Python 3.11 with uv, the lock (ray included: gancmp[cluster]) and gancmp, from the archive;
# $1: the accelerator's JAX extra ("" on the head: the lock's CPU jaxlib).
setup_script() {
  local jax_extra=$1
  printf '%s\n' "set -euo pipefail" \
    "export PATH=\$HOME/.local/bin:\$PATH" \
    "command -v uv >/dev/null || curl -LsSf https://astral.sh/uv/install.sh | sh" \
    "rm -rf ~/gancmp && mkdir -p ~/gancmp && tar -xzf ~/gancmp.tar.gz -C ~/gancmp && cd ~/gancmp" \
    "uv venv --python 3.11 --allow-existing .venv" \
    "uv pip install -q --python .venv/bin/python -r requirements.lock" \
    "uv pip install -q --python .venv/bin/python --no-deps -e ."
  if [ -n "$jax_extra" ]; then
    printf '%s\n' "jaxver=\$(.venv/bin/python -c 'import jax; print(jax.__version__)')" \
      "uv pip install -q --python .venv/bin/python \"jax[$jax_extra]==\$jaxver\""
  fi
}

archive_code() {
  if [ "$dry_run" = 0 ] && [ -n "$(git -C "$here" status --porcelain --untracked-files=no)" ]
  then
    echo "$(basename "$0"): warning: uncommitted changes are not copied (git archive" \
      "$commit)" >&2
  fi
  run git -C "$here" archive --format=tar.gz -o "$archive" "$commit"
}

head_ssh() { run gcloud compute ssh "$head_vm" --zone "$zone" "${project[@]}" --command "$1"; }

# The head: an on-demand e2-standard-4 (HEAD_MACHINE_TYPE), `ray start --head` offering no
# gancmp_host (no actor runs there); its internal address in $head_ip.
head_up() {
  run gcloud compute instances create "$head_vm" --zone "$zone" "${project[@]}" \
    --machine-type "${HEAD_MACHINE_TYPE:-e2-standard-4}" --image-family ubuntu-2204-lts \
    --image-project ubuntu-os-cloud --scopes cloud-platform
  run gcloud compute scp "$archive" "$head_vm:gancmp.tar.gz" --zone "$zone" "${project[@]}"
  head_ssh "$(setup_script '')"
  head_ssh "cd ~/gancmp && .venv/bin/ray start --head --port 6379 --num-cpus 0 \
--disable-usage-stats"
  head_ip=HEAD_IP
  if [ "$dry_run" = 0 ]; then
    head_ip=$(gcloud compute instances describe "$head_vm" --zone "$zone" "${project[@]}" \
      --format='value(networkInterfaces[0].networkIP)')
  fi
}

# What a worker runs once installed: join the head, offering one gancmp_host (one actor).
join_command() {
  printf '%s' "cd ~/gancmp && .venv/bin/ray start --address $head_ip:6379 --resources " \
    "'{\"gancmp_host\": 1}' --disable-usage-stats"
}

worker_up() {  # $1: the worker's name; worker_create, worker_scp and worker_ssh: the caller's
  worker_create "$1"
  worker_scp "$1"
  worker_ssh "$1" "$(setup_script "$jax_extra")"
  worker_ssh "$1" "$(join_command)"
}

# The driver, on the head, detached: the sweep's queue, its records and its report in the bucket.
start_driver() {
  local args=(.venv/bin/gancmp sweep --engine ray --ray_address 127.0.0.1:6379 --config "$sweep"
              --workdir "$workdir" --noprogress --compilation_cache "$workdir/xla")
  if [ -n "${DATA_DIR:-}" ]; then args+=(--trial "data_dir=$DATA_DIR"); fi
  if [ -n "${INCEPTION_WEIGHTS:-}" ]; then
    args+=(--trial "fid.inception_weights=$INCEPTION_WEIGHTS")
  fi
  args+=("${extra[@]}")
  head_ssh "cd ~/gancmp && GANCMP_GIT_COMMIT=$commit nohup $(printf '%q ' "${args[@]}")\
>sweep.log 2>&1 </dev/null & echo started"
}

# --watch: every $interval s, a worker that is gone (preempted, deleted) is created again and
# joins the cluster (its group went back on the driver's queue when it died); stops when the
# driver has exited (its last lines: `gcloud compute ssh HEAD --command 'tail ~/gancmp/sweep.log'`).
watch_workers() {
  local i
  while :; do
    sleep "$interval"
    if ! gcloud compute ssh "$head_vm" --zone "$zone" "${project[@]}" \
        --command "pgrep -f 'gancmp sweep --engine ray' >/dev/null"; then
      echo "the driver has exited: $(gcloud compute ssh "$head_vm" --zone "$zone" \
        "${project[@]}" --command 'tail -n 3 ~/gancmp/sweep.log')"
      break
    fi
    for ((i = 0; i < count; i++)); do
      if [ "$(worker_state "$name-w$i")" != READY ]; then
        echo "$name-w$i is gone (preempted?): creating it again; it rejoins the cluster"
        worker_delete "$name-w$i" || true
        worker_up "$name-w$i" || echo "$name-w$i: not up yet; trying again later" >&2
      fi
    done
  done
}
