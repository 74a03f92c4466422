#!/usr/bin/env bash
# A first check of gancmp on a single-GPU machine without network, in under 8 minutes: the
# bench suite's InfoGAN train step (configs/mnist_infogan.py) at K = 1, 16 and 64 trials per
# chip, one tiny sweep end to end, and the plan's hours for 1xH100 beside the measured
# trials/hour. Numbers go to OUT_DIR/check.json and, as table rows, to the screen (paste them
# into experiments/bench/RESULTS.md).
#
#   experiments/gpu/check.sh [--dry_run] [OUT_DIR]     (default OUT_DIR: /tmp/gancmp-check)
#
# Expects a Python (PYTHON, default python3) with JAX for CUDA, flax, optax, orbax-checkpoint,
# etils and tensorstore. What gancmp needs besides, when missing, is installed offline from
# wheels placed next to this script (experiments/gpu/wheels/*.whl): ml-collections,
# tensorboardX (and protobuf), tqdm, absl-py, scipy, pillow, matplotlib — on a typical JAX
# image only the first three are missing. gancmp itself runs from this checkout (PYTHONPATH);
# nothing is installed into the system. --dry_run prints every command instead of running it.
# To try it on a CPU: JAX_PLATFORMS=cpu CHECK_KS="1 2" CHECK_D_STEPS=20 (smaller K and budget).
set -euo pipefail

dry_run=0
if [ "${1:-}" = "--dry_run" ]; then dry_run=1; shift; fi
out=${1:-/tmp/gancmp-check}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
python=${PYTHON:-python3}
cd "$root"
export PYTHONPATH=$root${PYTHONPATH:+:$PYTHONPATH}
export GANCMP_COMPILATION_CACHE=$out/xla

# shellcheck source=experiments/run.sh
source "$here/../run.sh"  # run: runs a command, or prints it (--dry_run)

# step: a command with a time limit, its stdout kept in $out/NAME.json (the commands print JSON)
step() {
  local name=$1 limit=$2
  shift 2
  if [ "$dry_run" = 1 ]; then
    printf '%q ' timeout "$limit" "$@"
    echo "> $out/$name.json"
    return 0
  fi
  echo "== $name" >&2
  timeout "$limit" "$@" >"$out/$name.json" || echo "check.sh: $name failed or ran past ${limit}s" >&2
}

run mkdir -p "$out"

# 1. Packages: import names and the wheels that provide them.
missing=()
for pair in ml_collections:ml-collections tensorboardX:tensorboardX tqdm:tqdm absl:absl-py \
  scipy:scipy PIL:pillow matplotlib:matplotlib google.protobuf:protobuf; do
  if [ "$dry_run" = 1 ] || ! "$python" -c "import ${pair%%:*}" 2>/dev/null; then
    missing+=("${pair#*:}")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$dry_run" = 0 ] && ! ls "$here"/wheels/*.whl >/dev/null 2>&1; then
    echo "check.sh: missing ${missing[*]}; place their wheels in $here/wheels/" >&2
    exit 2
  fi
  run "$python" -m pip install --no-index --find-links "$here/wheels" "${missing[@]}"
fi
run nvidia-smi -L || echo "check.sh: no nvidia-smi (no NVIDIA driver?): going on" >&2
run "$python" -c "import jax; print(jax.__version__, jax.devices())"

# 2. The InfoGAN train step at K = 1, 16, 64 trials on the one GPU (about 1 min each).
for k in ${CHECK_KS:-1 16 64}; do
  step "infogan_k$k" 150 "$python" -m gancmp.cli bench --config configs/mnist_infogan.py \
    --trials "$k" --calls 10 --json
done
# The same at K = 16 with a fixed iteration count per program (a loop XLA:GPU knows the trip
# count of): against infogan_k16, the cost of the host wait per iteration that an argument
# count brings on GPU (`config.loop_count`, gancmp/train/step.py `plan_calls`).
step "infogan_k16_fixed" 150 "$python" -m gancmp.cli bench --config configs/mnist_infogan.py \
  --config.loop_count=fixed --trials 16 --calls 10 --json

# 3. One tiny sweep end to end (ring8 MLP, 2 methods x 2 settings, 2,000 D steps each).
sweep=$out/tiny_sweep.py
if [ "$dry_run" = 1 ]; then
  echo "cat > $sweep  # configs/sweeps/quick.py's ring8 study, 2 methods x 2 settings"
else
  cat >"$sweep" <<EOF
import ml_collections

from gancmp.config import load_config_file


def get_config():
    c = ml_collections.ConfigDict()
    c.name, c.seed, c.max_trials_per_group, c.imports = "gpu-check", 0, 4, ""
    s = ml_collections.ConfigDict()
    s.name, s.methods = "ring8", "NS_GAN,WGAN_GP"
    s.trial = load_config_file("$root/configs/ring8_mlp.py", num_d_steps=${CHECK_D_STEPS:-2000},
                                checkpoint_every=${CHECK_D_STEPS:-2000} // 2)
    s.phases = [ml_collections.ConfigDict(dict(
        name="tuned", mode="tuned", range="narrow", num_settings=2, seeds=[0]))]
    c.studies = [s]
    return c
EOF
fi
run rm -rf "$out/sweep"
started=$(date +%s)
run timeout 240 "$python" -m gancmp.cli sweep --config "$sweep" --workdir "$out/sweep" \
  --noprogress || echo "check.sh: the tiny sweep failed or ran past 240 s" >&2
sweep_s=$(($(date +%s) - started))

# 4. The plan's hours for 1xH100 (gancmp plan, issue 12 item 5), if this checkout has it.
if [ "$dry_run" = 1 ]; then
  step plan 60 "$python" -m gancmp.cli plan --config configs/sweeps/lucic2018.py \
    --accelerator 1xH100 --json
elif ! "$python" -m gancmp.cli plan --help >/dev/null 2>&1; then
  echo "check.sh: this checkout has no \`gancmp plan\` yet: the plan's hours are left out" >&2
  echo '{}' >"$out/plan.json"
else
  step plan 60 "$python" -m gancmp.cli plan --config configs/sweeps/lucic2018.py \
    --accelerator 1xH100 --json
fi

# 5. The numbers side by side.
summary="import json, os, sys
out, sweep_s = sys.argv[1], float(sys.argv[2])
def load(name):
    try:
        with open(os.path.join(out, name + '.json')) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return {}
bench = {k: load(f'infogan_k{k}') for k in sys.argv[3].split()}
fixed = load('infogan_k16_fixed')
plan = load('plan')
hours = (plan.get('hours') or {}).get('1xH100')
trials = plan.get('trials')
records = [json.loads(l) for l in open(os.path.join(out, 'sweep', 'results-0.jsonl'))] \
    if os.path.exists(os.path.join(out, 'sweep', 'results-0.jsonl')) else []
print('| K | InfoGAN step ms | trials/hour (train step, at the budget) | hours for the plan\'s trials |')
print('|---|---|---|---|')
for k, r in bench.items():
    tph = r.get('trials_per_hour')
    ms = f\"{r['step_ms']:.2f}\" if r.get('step_ms') else 'n/a'
    need = f'{trials / tph:.1f}' if tph and trials else 'n/a'
    print(f\"| {k} | {ms} | {f'{tph:.3g}' if tph else 'n/a'} | {need} |\")
if fixed.get('step_ms') and (bench.get('16') or {}).get('step_ms'):
    print(f\"K = 16, loop count an argument / fixed: {bench['16']['step_ms'] / fixed['step_ms']:.3f}x the step time\")
print(f'tiny sweep: {len(records)} trials recorded in {sweep_s:.0f} s')
print(f'plan (1xH100): {hours} hours for {trials} trials' if hours else 'plan: not available')
json.dump({'bench': bench, 'fixed_count_k16': fixed, 'plan': plan, 'sweep_s': sweep_s,
           'sweep_trials': len(records)},
          open(os.path.join(out, 'check.json'), 'w'), indent=1)"
run "$python" -c "$summary" "$out" "$sweep_s" "${CHECK_KS:-1 16 64}"
