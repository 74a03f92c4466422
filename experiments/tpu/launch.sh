#!/usr/bin/env bash
# Runs a gancmp sweep on a Cloud TPU VM (single host or pod slice): creates the VM if it does not
# exist, installs gancmp from this checkout's git remote and commit on every worker, and starts
# `gancmp sweep --shard $WORKER/$N` on each worker in the background, results under a gs:// dir.
#
#   experiments/tpu/launch.sh NAME ZONE ACCELERATOR_TYPE GS_WORKDIR [SWEEP_CONFIG]
#   e.g. experiments/tpu/launch.sh gancmp-v4 us-central2-b v4-32 gs://my-bucket/lucic2018
#
# Each worker is one shard (its own results-<i>.jsonl). Re-running the script on the same VM and
# workdir resumes: finished trials are skipped, unfinished groups continue from checkpoints.
set -euo pipefail

if [ "$#" -lt 4 ]; then
  sed -n '2,10p' "$0" >&2
  exit 2
fi
name=$1 zone=$2 accel=$3 workdir=$4
sweep=${5:-configs/sweeps/lucic2018.py}
version=${TPU_SOFTWARE_VERSION:-tpu-ubuntu2204-base}
repo=$(git config --get remote.origin.url)
commit=$(git rev-parse HEAD)

case "$workdir" in
  gs://*) ;;
  *) echo "launch.sh: GS_WORKDIR must be a gs:// path shared by all workers" >&2; exit 2 ;;
esac

if ! gcloud compute tpus tpu-vm describe "$name" --zone "$zone" >/dev/null 2>&1; then
  gcloud compute tpus tpu-vm create "$name" --zone "$zone" \
    --accelerator-type "$accel" --version "$version"
fi

# Number of workers (hosts) of the slice: one shard each.
workers=$(gcloud compute tpus tpu-vm describe "$name" --zone "$zone" \
  --format='value(networkEndpoints.len())')
workers=${workers:-1}

setup="set -e
if [ ! -d gancmp ]; then git clone $repo gancmp; fi
cd gancmp && git fetch -q origin && git checkout -q $commit
./dev setup
jaxver=\$(.venv/bin/python -c 'import jax; print(jax.__version__)')
.venv/bin/pip install -q \"jax[tpu]==\$jaxver\""

gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=all --command "$setup"

# TPU_WORKER_ID is set on every TPU VM worker; each worker runs its own shard.
run="cd gancmp && nohup .venv/bin/gancmp sweep --config $sweep --workdir $workdir \
--shard \${TPU_WORKER_ID:-0}/$workers --noprogress > sweep-\${TPU_WORKER_ID:-0}.log 2>&1 &"
gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=all --command "$run"

echo "started $workers shard(s) of $sweep on $name; results in $workdir"
echo "when all shards are done: gancmp report $workdir"
