#!/usr/bin/env bash
# Puts in experiments/gpu/wheels/ the wheels that check.sh installs on a GPU machine without
# network: what gancmp needs that a JAX-for-CUDA image with flax, optax, orbax-checkpoint,
# etils, tensorstore, tqdm, tensorboard, torch and torchvision lacks (ml-collections,
# tensorboardX, matplotlib and its dependencies) and the small dependencies those images usually
# have but might not (absl-py, PyYAML, protobuf, pillow, packaging, six). Each at the version
# pinned in requirements.lock, for the GPU machine's Python (default 3.12) on manylinux x86-64,
# binary wheels only, without dependency resolution (the list is the closure). Run it where
# there is network (or a package mirror); the folder is git-ignored and travels beside the
# checkout (about 20 MB).
#
#   experiments/gpu/prepare_wheels.sh [--dry_run] [DEST]   (default DEST: experiments/gpu/wheels)
#
# PYTHON: a Python with pip (default python3); GPU_PYTHON_VERSION: the target's (default 3.12).
set -euo pipefail

dry_run=0
if [ "${1:-}" = "--dry_run" ]; then dry_run=1; shift; fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
dest=${1:-$here/wheels}
python=${PYTHON:-python3}
version=${GPU_PYTHON_VERSION:-3.12}

# shellcheck source=experiments/run.sh
source "$here/../run.sh"  # run: runs a command, or prints it (--dry_run)

# The distributions (as requirements.lock spells them); check.sh maps import names to these.
names=(ml_collections tensorboardX matplotlib contourpy cycler fonttools kiwisolver pyparsing
  python-dateutil six absl-py PyYAML protobuf pillow packaging)
pins=()
for name in "${names[@]}"; do
  pin=$(grep -i "^${name}==" "$root/requirements.lock" | cut -d' ' -f1 || true)
  if [ -z "$pin" ]; then
    echo "prepare_wheels.sh: $name is not pinned in requirements.lock" >&2
    exit 2
  fi
  pins+=("$pin")
done

run mkdir -p "$dest"
run "$python" -m pip download --only-binary=:all: --no-deps --implementation cp \
  --python-version "$version" --platform manylinux2014_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_28_x86_64 --dest "$dest" "${pins[@]}"
if [ "$dry_run" = 0 ]; then
  du -sh "$dest"
fi
