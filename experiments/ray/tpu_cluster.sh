#!/usr/bin/env bash
# A Ray cluster on Cloud TPU VMs for `gancmp sweep --engine ray`: a head on a small CPU VM (the
# driver: the queue, the records, the report; no actor) and N single-host TPU VMs (v4-8 by
# default: one node, one actor, all its chips), then the sweep's driver on the head.
#
#   experiments/ray/tpu_cluster.sh [--dry_run] [--spot] [--watch]
#       NAME ZONE N GS_WORKDIR [SWEEP_CONFIG] [-- GANCMP_SWEEP_FLAGS...]
#   e.g. DATA_DIR=gs://B/tfds INCEPTION_WEIGHTS=gs://B/inception.npz \
#        experiments/ray/tpu_cluster.sh --spot --watch lucic us-central2-b 4 gs://B/lucic2018
#
# --dry_run prints every command instead of running it. --spot: Spot (preemptible) workers (the
# head is always on-demand). --watch: stays, and re-creates a worker that is preempted or gone
# (it rejoins; its group resumed elsewhere from its checkpoint meanwhile) until the driver exits.
# Environment: ACCELERATOR (a single-host slice: v4-8, v5litepod-8, v5p-8, v6e-8; default v4-8),
# TPU_SOFTWARE_VERSION (the runtime image), PROJECT, DATA_DIR, INCEPTION_WEIGHTS,
# HEAD_MACHINE_TYPE (default e2-standard-4), WATCH_INTERVAL_S (default 300).
# Progress: `gcloud compute ssh NAME-head --zone ZONE --command 'tail ~/gancmp/sweep.log'`.
# Teardown: printed at the end.
set -euo pipefail
usage_lines='2,19p'
# shellcheck source=experiments/ray/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
parse_args "$@"

accel=${ACCELERATOR:-v4-8}
case "$accel" in v5e-8) accel=v5litepod-8 ;; esac
case "$accel" in
  v4-8) image="tpu-ubuntu2204-base" ;;
  v5litepod-8) image="v2-alpha-tpuv5-lite" ;;
  v5p-8) image="v2-alpha-tpuv5" ;;
  v6e-8) image="v2-alpha-tpuv6e" ;;
  *) echo "tpu_cluster.sh: ACCELERATOR must be a single-host slice (v4-8, v5litepod-8, v5p-8," \
       "v6e-8): one Ray node per host; got $accel (a pod slice: experiments/tpu/launch.sh)" >&2
     exit 2 ;;
esac
image=${TPU_SOFTWARE_VERSION:-$image}
jax_extra=tpu
tpu=(gcloud compute tpus tpu-vm)

worker_create() {
  local kind=()
  if [ "$spot" = 1 ]; then kind=(--spot); fi
  run "${tpu[@]}" create "$1" --zone "$zone" "${project[@]}" --accelerator-type "$accel" \
    --version "$image" "${kind[@]}"
}
worker_delete() { run "${tpu[@]}" delete "$1" --zone "$zone" "${project[@]}" --quiet; }
worker_scp() {
  run "${tpu[@]}" scp "$archive" "$1:gancmp.tar.gz" --zone "$zone" "${project[@]}"
}
worker_ssh() { run "${tpu[@]}" ssh "$1" --zone "$zone" "${project[@]}" --command "$2"; }
worker_state() {
  local s
  s=$("${tpu[@]}" describe "$1" --zone "$zone" "${project[@]}" --format='value(state)' \
    2>/dev/null || true)
  echo "${s:-MISSING}"
}

archive_code
head_up
for ((i = 0; i < count; i++)); do worker_up "$name-w$i"; done
start_driver
echo "started $sweep on $count x $accel ($name-w0..w$((count - 1))), driver on $head_vm"
if [ "$watch" = 1 ] && [ "$dry_run" = 0 ]; then watch_workers; fi
echo "report: gcloud storage cat $workdir/report/report.md"
echo "teardown: ${tpu[*]} delete $name-w{0..$((count - 1))} --zone $zone --quiet;" \
  "gcloud compute instances delete $head_vm --zone $zone --quiet"
