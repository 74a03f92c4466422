#!/usr/bin/env bash
# Runs a gancmp sweep on a multi-GPU host: one shard per GPU (trial-parallel across GPUs, each
# process seeing one device), all writing under one workdir (local or gs://).
#
#   experiments/gpu/launch.sh WORKDIR [SWEEP_CONFIG] [NUM_GPUS]
#
# Re-run the same command to resume after an interruption.
set -euo pipefail

if [ "$#" -lt 1 ]; then
  sed -n '2,8p' "$0" >&2
  exit 2
fi
workdir=$1
sweep=${2:-configs/sweeps/lucic2018.py}
gpus=${3:-$(nvidia-smi --list-gpus | wc -l)}
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

./dev setup
jaxver=$(.venv/bin/python -c 'import jax; print(jax.__version__)')
.venv/bin/pip install -q "jax[cuda12]==$jaxver"

for ((i = 0; i < gpus; i++)); do
  CUDA_VISIBLE_DEVICES=$i nohup .venv/bin/gancmp sweep --config "$sweep" --workdir "$workdir" \
    --shard "$i/$gpus" --noprogress >"sweep-$i.log" 2>&1 &
done
wait
.venv/bin/gancmp report "$workdir"
