#!/usr/bin/env bash
# Runs one gancmp sweep on a Cloud TPU VM — a single host (v4-8) or a pod slice (v4-32, ...) —
# as ONE job: `gancmp sweep` starts on every worker (--worker=all), the workers join into one
# jax.distributed job (detected from the TPU VM's metadata), every group of trials is spread
# over all chips of all hosts, and process 0 writes every record under GS_WORKDIR.
#
#   experiments/tpu/launch.sh [--dry_run] [--spot] [--queued] [--watch]
#       NAME ZONE ACCELERATOR_TYPE GS_WORKDIR [SWEEP_CONFIG] [-- GANCMP_SWEEP_FLAGS...]
#   e.g. DATA_DIR=gs://B/tfds INCEPTION_WEIGHTS=gs://B/inception.npz \
#        experiments/tpu/launch.sh --spot --watch gancmp-v4 us-central2-b v4-32 gs://B/lucic2018 \
#        configs/sweeps/lucic2018.py -- --config.max_trials_per_group=16
#
# --dry_run prints every command instead of running it. --spot: a Spot (preemptible) VM.
# --queued: a queued resource (waits for capacity) instead of `tpu-vm create`. --watch: stays,
# and when the VM is preempted (or a worker exits 143) recreates it and runs the same command
# again, which resumes; a failed create (no Spot capacity) is tried again with backoff (1, 2,
# 4, ... minutes, at most 30), a queued resource that turns FAILED is said in one line, deleted
# and requested again; a sweep that exits 75 (a phase waits for other shards) is started
# again, as is one that could not be started (the VM lost meanwhile); it stops when every
# worker has exited 0 (or one failed otherwise). Every re-create
# ships the commit of the first launch (not the checkout's HEAD by then), and the workers pass
# it to the records (GANCMP_GIT_COMMIT: an archive has no .git).
# Environment: DATA_DIR (TFDS data_dir, gs://), INCEPTION_WEIGHTS (converted .npz, gs://),
# TPU_SOFTWARE_VERSION (overrides the runtime image), PROJECT (else gcloud's default),
# WATCH_INTERVAL_S (seconds between looks, default 300), WATCH_BACKOFF_S (first wait after a
# failed create, default 60).
# Logs: GS_WORKDIR/logs/sweep-<host>.log (copied every minute) and exit-<host> (exit status).
# Teardown: printed at the end (`gcloud compute tpus tpu-vm delete NAME --zone ZONE --quiet`).
set -euo pipefail

dry_run=0 spot=0 queued=0 watch=0
while [ "$#" -gt 0 ]; do
  case "$1" in
    --dry_run) dry_run=1 ;;
    --spot) spot=1 ;;
    --queued) queued=1 ;;
    --watch) watch=1 ;;
    *) break ;;
  esac
  shift
done
if [ "$#" -lt 4 ]; then
  sed -n '2,28p' "$0" >&2
  exit 2
fi
name=$1 zone=$2 accel=$3 workdir=${4%/}
shift 4
sweep=configs/sweeps/lucic2018.py
if [ "$#" -gt 0 ] && [ "$1" != "--" ]; then sweep=$1; shift; fi
if [ "$#" -gt 0 ] && [ "$1" = "--" ]; then shift; fi
extra=("$@")

case "$workdir" in
  gs://*) ;;
  *) echo "launch.sh: GS_WORKDIR must be a gs:// path (every worker writes there; a VM's disk" \
       "dies with it)" >&2; exit 2 ;;
esac

# The runtime image per TPU generation (cloud.google.com/tpu/docs/runtimes): it only has to
# boot; Python 3.11 and the pinned stack are installed below with uv.
# gcloud names v5e slices v5litepod-N (`v5e-8` is refused by `gcloud ... create`)
case "$accel" in v5e-*) accel="v5litepod-${accel#v5e-}" ;; esac
case "$accel" in
  v6e-*) image="v2-alpha-tpuv6e" ;;
  v5p-*) image="v2-alpha-tpuv5" ;;
  v5litepod-*) image="v2-alpha-tpuv5-lite" ;;
  v4-* | v3-* | v2-*) image="tpu-ubuntu2204-base" ;;
  *) echo "launch.sh: unknown ACCELERATOR_TYPE $accel (v4-8, v4-32, v5litepod-8, v5p-8," \
       "v6e-8, ...)" >&2; exit 2 ;;
esac
image=${TPU_SOFTWARE_VERSION:-$image}
interval=${WATCH_INTERVAL_S:-300} backoff=${WATCH_BACKOFF_S:-60}
project=()
if [ -n "${PROJECT:-}" ]; then project=(--project "$PROJECT"); fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# shellcheck source=experiments/run.sh
source "$here/experiments/run.sh"  # run: runs a command, or prints it (--dry_run)

tpu=(gcloud compute tpus tpu-vm)
ssh_all() { run "${tpu[@]}" ssh "$name" --zone "$zone" "${project[@]}" --worker=all --command "$1"; }

state() {  # sets $current: READY, PREEMPTED, SUSPENDED, ... or MISSING
  local describe=("${tpu[@]}" describe "$name" --zone "$zone" "${project[@]}"
                  --format='value(state)')
  if [ "$queued" = 1 ]; then
    describe=(gcloud compute tpus queued-resources describe "$name" --zone "$zone"
              "${project[@]}" --format='value(state.state)')
  fi
  if [ "$dry_run" = 1 ]; then
    run "${describe[@]}"
    current=MISSING
    return
  fi
  current=$("${describe[@]}" 2>/dev/null || true)
  current=${current:-MISSING}
  if [ "$current" = ACTIVE ]; then current=READY; fi  # a queued resource's word for it
}

create_once() {  # 0: created (READY); 1: failed (no capacity, a FAILED queued resource)
  local kind=()
  if [ "$spot" = 1 ]; then kind=(--spot); fi
  if [ "$queued" = 1 ]; then
    run gcloud compute tpus queued-resources create "$name" --node-id "$name" --zone "$zone" \
      "${project[@]}" --accelerator-type "$accel" --runtime-version "$image" "${kind[@]}" ||
      return 1
    if [ "$dry_run" = 0 ]; then
      state
      until [ "$current" = READY ]; do  # waits for capacity
        case "$current" in
          FAILED | SUSPENDED | MISSING)
            echo "launch.sh: queued resource $name is $current (gcloud compute tpus" \
              "queued-resources describe $name --zone $zone says why); deleting it" >&2
            delete || true
            return 1 ;;
        esac
        sleep "$interval"
        state
      done
    fi
  else
    run "${tpu[@]}" create "$name" --zone "$zone" "${project[@]}" --accelerator-type "$accel" \
      --version "$image" "${kind[@]}"
  fi
}

create() {  # without --watch a failed create ends the script; with it, tried again (backoff)
  local wait=$backoff
  until create_once; do
    if [ "$watch" = 0 ]; then
      echo "launch.sh: could not create $name" >&2
      exit 1
    fi
    echo "launch.sh: could not create $name (no capacity?); trying again in ${wait} s" >&2
    sleep "$wait"
    wait=$((wait * 2 > 1800 ? 1800 : wait * 2))
  done
}

delete() {
  if [ "$queued" = 1 ]; then
    run gcloud compute tpus queued-resources delete "$name" --zone "$zone" "${project[@]}" \
      --force --quiet
  else
    run "${tpu[@]}" delete "$name" --zone "$zone" "${project[@]}" --quiet
  fi
}

# The code: this checkout's HEAD (committed files) at the first launch, copied to every worker;
# every re-create (--watch) ships the same commit, whatever the checkout holds by then.
commit=$(git -C "$here" rev-parse HEAD)
archive=/tmp/gancmp-$name-${commit:0:12}.tar.gz
if [ "$dry_run" = 0 ] && [ -n "$(git -C "$here" status --porcelain --untracked-files=no)" ]; then
  echo "launch.sh: warning: uncommitted changes are not copied (git archive $commit)" >&2
fi
run git -C "$here" archive --format=tar.gz -o "$archive" "$commit"
copy_code() {
  run "${tpu[@]}" scp "$archive" "$name:gancmp.tar.gz" --zone "$zone" "${project[@]}" --worker=all
}

# Python 3.11 (uv fetches it: the images ship 3.10), the lock, and jax[tpu] of the lock's JAX.
setup="set -euo pipefail
export PATH=\$HOME/.local/bin:\$PATH
command -v uv >/dev/null || curl -LsSf https://astral.sh/uv/install.sh | sh
rm -rf ~/gancmp && mkdir -p ~/gancmp && tar -xzf ~/gancmp.tar.gz -C ~/gancmp && cd ~/gancmp
uv venv --python 3.11 --allow-existing .venv
uv pip install -q --python .venv/bin/python -r requirements.lock
uv pip install -q --python .venv/bin/python --no-deps -e .
jaxver=\$(.venv/bin/python -c 'import jax; print(jax.__version__)')
uv pip install -q --python .venv/bin/python \"jax[tpu]==\$jaxver\""

# The one command every worker runs; the same command after a preemption resumes.
args=(.venv/bin/gancmp sweep --config "$sweep" --workdir "$workdir" --noprogress
      --compilation_cache "$workdir/xla")
if [ -n "${DATA_DIR:-}" ]; then args+=(--trial "data_dir=$DATA_DIR"); fi
if [ -n "${INCEPTION_WEIGHTS:-}" ]; then
  args+=(--trial "fid.inception_weights=$INCEPTION_WEIGHTS")
fi
args+=("${extra[@]}")
logs="$workdir/logs"
start="cd ~/gancmp && GANCMP_GIT_COMMIT=$commit nohup bash experiments/tpu/worker.sh \
$(printf '%q ' "$logs" "${args[@]}")>/dev/null 2>&1 &"

launch() {
  copy_code && ssh_all "$setup" && ssh_all "$start"
}

started=0
try_launch() {  # with --watch a failed start (the VM lost meanwhile) is tried again later
  if launch; then
    started=1
  elif [ "$watch" = 1 ]; then
    started=0
    echo "launch.sh: could not start the sweep on $name; trying again in ${interval} s" >&2
  else
    exit 1
  fi
}

state
case "$current" in
  READY) ;;
  MISSING) create ;;
  *) delete; create ;;  # preempted, terminated, suspended: a fresh VM, same disk contents
esac
try_launch
echo "started $sweep on $name ($accel, $image) as one job over all its workers; logs in $logs"

finished() {  # 0: all exited 0; 1: still running; 2: a worker failed; 3: preempted (143);
  local codes  # 4: a phase waits for other shards (75)
  codes=$(gcloud storage cat "$logs/exit-*" 2>/dev/null || true)
  [ -z "$codes" ] && return 1
  if grep -qvx '0' <<<"$codes"; then
    grep -qx 143 <<<"$codes" && return 3
    grep -qvx -e 0 -e 75 <<<"$codes" && return 2
    return 4
  fi
  return 0
}

if [ "$watch" = 1 ] && [ "$dry_run" = 0 ]; then
  while :; do
    sleep "$interval"
    state
    if [ "$started" = 0 ] && [ "$current" = READY ]; then try_launch; continue; fi
    status=0
    finished || status=$?
    if [ "$status" = 0 ]; then echo "sweep finished"; break; fi
    if [ "$status" = 2 ]; then echo "a worker failed: see $logs" >&2; exit 1; fi
    if [ "$current" != READY ] || [ "$status" = 3 ]; then
      echo "$name is $current: recreating it and running the same command (it resumes)"
      delete || true
      create
      try_launch
    elif [ "$status" = 4 ]; then
      echo "a phase waits for other shards (exit 75): running the same command again"
      ssh_all "$start" || started=0
    fi
  done
fi
echo "report: .venv/bin/gancmp report $workdir"
if [ "$queued" = 1 ]; then
  echo "teardown: gcloud compute tpus queued-resources delete $name --zone $zone --force --quiet"
else
  echo "teardown: gcloud compute tpus tpu-vm delete $name --zone $zone --quiet"
fi
