#!/usr/bin/env bash
# A Ray cluster on GPU hosts (Compute Engine VMs) for `gancmp sweep --engine ray`: a head on a
# small CPU VM (the driver; no actor) and N GPU VMs (one node, one actor holding all the host's
# GPUs), then the sweep's driver on the head.
#
#   experiments/ray/gpu_cluster.sh [--dry_run] [--spot] [--watch]
#       NAME ZONE N GS_WORKDIR [SWEEP_CONFIG] [-- GANCMP_SWEEP_FLAGS...]
#   e.g. experiments/ray/gpu_cluster.sh --spot --watch lucic us-central1-a 4 gs://B/lucic2018
#
# --dry_run prints every command instead of running it. --spot: Spot VMs for the workers (the
# head is always on-demand). --watch: re-creates a worker that is preempted or gone until the
# driver exits. Environment: MACHINE_TYPE (default a3-highgpu-8g: 8 H100), GPU_IMAGE_FAMILY and
# GPU_IMAGE_PROJECT (an image with the NVIDIA driver; default the Deep Learning VM's
# common-cu124-ubuntu-2204 of deeplearning-platform-release), PROJECT, DATA_DIR,
# INCEPTION_WEIGHTS, HEAD_MACHINE_TYPE, WATCH_INTERVAL_S.
# Teardown: printed at the end.
set -euo pipefail
usage_lines='2,16p'
# shellcheck source=experiments/ray/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
parse_args "$@"

machine=${MACHINE_TYPE:-a3-highgpu-8g}
family=${GPU_IMAGE_FAMILY:-common-cu124-ubuntu-2204}
image_project=${GPU_IMAGE_PROJECT:-deeplearning-platform-release}
jax_extra=cuda12

worker_create() {
  local kind=()
  if [ "$spot" = 1 ]; then kind=(--provisioning-model SPOT --instance-termination-action DELETE)
  fi
  run gcloud compute instances create "$1" --zone "$zone" "${project[@]}" \
    --machine-type "$machine" --image-family "$family" --image-project "$image_project" \
    --maintenance-policy TERMINATE --boot-disk-size 200GB --scopes cloud-platform \
    --metadata install-nvidia-driver=True "${kind[@]}"
}
worker_delete() { run gcloud compute instances delete "$1" --zone "$zone" "${project[@]}" --quiet; }
worker_scp() { run gcloud compute scp "$archive" "$1:gancmp.tar.gz" --zone "$zone" "${project[@]}"; }
worker_ssh() { run gcloud compute ssh "$1" --zone "$zone" "${project[@]}" --command "$2"; }
worker_state() {
  local s
  s=$(gcloud compute instances describe "$1" --zone "$zone" "${project[@]}" \
    --format='value(status)' 2>/dev/null || true)
  case "$s" in RUNNING) echo READY ;; '') echo MISSING ;; *) echo "$s" ;; esac
}

archive_code
head_up
for ((i = 0; i < count; i++)); do worker_up "$name-w$i"; done
start_driver
echo "started $sweep on $count x $machine ($name-w0..w$((count - 1))), driver on $head_vm"
if [ "$watch" = 1 ] && [ "$dry_run" = 0 ]; then watch_workers; fi
echo "report: gcloud storage cat $workdir/report/report.md"
echo "teardown: gcloud compute instances delete $name-w{0..$((count - 1))} $head_vm" \
  "--zone $zone --quiet"
