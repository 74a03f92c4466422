#!/usr/bin/env bash
# A first measurement of gancmp on one GPU, offline, in under 8 minutes (experiments/gpu/README.md):
#   1. versions and devices (and what the machine's Python lacks, unpacked from wheels);
#   2. the InfoGAN MNIST train step at K = 1, 16, 64 vmapped trials (images/s, step ms,
#      trials/hour at the paper's budget), and at K = 16 both loop kinds at the same iterations
#      per call;
#   3. FID-Inception features images/s at batch 50, 200, 500 at the precision a trial's FID
#      computes in, beside torchvision's Inception-v3 on the machine's torch (random weights);
#   4. a tiny sweep end to end (4 trials, with evaluation: experiments/gpu/tiny_sweep.py);
#   5. the plan's hours for 1xH100 (configs/sweeps/lucic2018.py) beside the utilisations that
#      steps 2 and 3 measured.
# It prints its plan of steps with their time limits first; each step gets its own limit, cut to
# what is left of the whole check's (CHECK_TOTAL_S, default 450 s, the wheels' install included;
# then the summary's 20 s; `timeout` kills 5 s after a limit: 8 minutes at most); a step that
# cannot start with 15 s left is skipped and says so. Results: OUT_DIR/check.md (paste into
# experiments/bench/RESULTS.md), OUT_DIR/check.json, one JSON file and one log per step.
#
#   experiments/gpu/check.sh [--dry_run] [--tiny] [OUT_DIR]    (default OUT_DIR: /tmp/gancmp-check)
#
# Needs only a Python (PYTHON, default python3) with JAX for CUDA, flax, optax, orbax-checkpoint,
# etils and tensorstore (torch and torchvision for the reference; without them it is skipped).
# What gancmp needs besides and the machine lacks (ml-collections, tensorboardX, matplotlib...)
# is unpacked from the wheels that experiments/gpu/prepare_wheels.sh put in experiments/gpu/wheels
# into a throwaway folder on PYTHONPATH (CHECK_WORK, default OUT_DIR.work, with the compilation
# cache and the sweep), never into the system (CHECK_WHEELS: another wheels folder); gancmp runs
# from this checkout.
# --dry_run prints every command instead of running it. --tiny: sizes for a CPU rehearsal
# (JAX_PLATFORMS=cpu experiments/gpu/check.sh --tiny): K = 1 and 2 of a quarter-width InfoGAN at
# batch 16, 2 iterations per call, FID at batch 2 and 4, a 20-step sweep with a small evaluation.
set -euo pipefail

dry_run=0
tiny=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dry_run) dry_run=1; shift ;;
    --tiny) tiny=1; shift ;;
    -*) echo "check.sh: unknown flag $1 (allowed: --dry_run, --tiny)" >&2; exit 2 ;;
    *) break ;;
  esac
done
out=${1:-/tmp/gancmp-check}
work=${CHECK_WORK:-$out.work}
# --tiny on a CPU: every limit 4x, the whole check 30 min (CHECK_LIMIT_SCALE, CHECK_TOTAL_S);
# CHECK_ONLY="fid sweep": only the steps named (a rerun), and the summary
scale=${CHECK_LIMIT_SCALE:-$([ "$tiny" = 1 ] && echo 4 || echo 1)}
total=${CHECK_TOTAL_S:-$([ "$tiny" = 1 ] && echo 1800 || echo 450)}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
python=${PYTHON:-python3}
wheels=${CHECK_WHEELS:-$here/wheels}
site=$work/site
cd "$root"
export PYTHONPATH=$root:$site${PYTHONPATH:+:$PYTHONPATH}
export GANCMP_COMPILATION_CACHE=$work/xla

# shellcheck source=experiments/run.sh
source "$here/../run.sh"  # run: runs a command, or prints it (--dry_run)

if [ "$tiny" = 1 ]; then
  ks="1 2" loop_k=2 per_call=2 calls=2 fid_sizes=2,4 fid_batches=2 sweep_steps=20
  small=(--batch_size 16 --config.width_multiplier=0.25)  # a rolled conv loop is slow on CPU
  sweep_eval=(--trial eval.num_samples=64 --trial eval.bank_size=256
    --trial eval.calibration_size=64 --trial eval.recall_size=4 --trial eval.restarts=1
    --trial eval.steps=5)
else
  ks="1 16 64" loop_k=16 per_call=100 calls=10 fid_sizes=50,200,500 fid_batches=10
  sweep_steps=1000 sweep_eval=() small=()
fi
# Both loop kinds at the same iterations per call: a fixed count must divide the checkpoint
# interval (in iterations), so the interval is 32 calls (the budget is unchanged); rolled on every
# backend (a GPU's default; CPU conv nets would otherwise be unrolled, the kinds then the same).
calls_flags=(--config.steps_per_call="$per_call" --config.checkpoint_every=$((32 * per_call))
  --config.scan_unroll=rolled)
bench=("$python" -m gancmp.cli bench --config configs/mnist_infogan.py --calls "$calls" --json
  "${small[@]}")
first_ks=${ks% *}  # the largest K runs last

first=""
for k in $first_ks; do first+="infogan_k$k $([ "$k" = 1 ] && echo 60 || echo 75), "; done
echo "check.sh plan (each step's limit in s, times $scale, cut to what is left of ${total} s):
  packages 60 (unpack what is missing from $wheels into $site)
  1. versions 45; plan 90 (step 5's, on the CPU)
  2. ${first}infogan_fixed 75 (K = $loop_k, the loop count fixed); after step 4:
     infogan_k${ks##* } 90 ($per_call iterations per call, $calls timed calls each)
  3. fid 150 (batch ${fid_sizes}), torch_inception 60
  4. sweep 150 (4 trials, $sweep_steps D updates each)
  5. summary 20 -> $out/check.md${CHECK_ONLY:+
  only: $CHECK_ONLY (and the summary)}"

started=$(date +%s)
# selected NAME: whether the step runs (all, or those CHECK_ONLY names)
selected() { [ -z "${CHECK_ONLY:-}" ] || [[ " $CHECK_ONLY " == *" $1 "* ]]; }
# step [--text] NAME LIMIT CMD...: runs CMD under `timeout` (LIMIT, cut to what is left of the
# check's), its stdout in $out/NAME.json (NAME.txt with --text) and stderr in $out/NAME.log; one
# line "NAME<TAB>limit<TAB>took<TAB>status" in $out/steps.tsv. Never fails the script.
step() {
  local ext=json
  if [ "$1" = --text ]; then ext=txt; shift; fi
  local name=$1 limit=$(($2 * scale))
  shift 2
  [ "$name" = summary ] || selected "$name" || return 0
  if [ "$dry_run" = 1 ]; then
    printf '%q ' timeout "$limit" "$@"
    echo "> $out/$name.$ext"
    return 0
  fi
  local left=$((total - ($(date +%s) - started)))
  took=0
  if [ "$left" -lt 15 ]; then
    printf '%s\t%s\t0\tskipped: %ss of %ss left\n' "$name" "$limit" "$left" "$total" \
      >>"$out/steps.tsv"
    echo "check.sh: $name skipped ($left s of the check's $total s left)" >&2
    return 0
  fi
  [ "$left" -lt "$limit" ] && limit=$left
  echo "== $name (limit ${limit} s)" >&2
  local t0 rc=0 status=ok
  t0=$(date +%s)
  timeout -k 5 "$limit" "$@" >"$out/$name.$ext" 2>"$out/$name.log" || rc=$?
  took=$(($(date +%s) - t0))
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then status="timed out"; elif [ "$rc" != 0 ]; then
    status="failed (exit $rc): $(grep -v '^\s*$' "$out/$name.log" | tail -1 | tr '\t|' '  ' |
      cut -c1-160)"
  fi
  printf '%s\t%s\t%s\t%s\n' "$name" "$limit" "$took" "$status" >>"$out/steps.tsv"
  echo "   $name: $status in ${took} s" >&2
}

run mkdir -p "$out" "$site"
[ -n "${CHECK_ONLY:-}" ] || run rm -f "$out/steps.tsv"  # a CHECK_ONLY rerun appends to it

# Packages: import name -> distribution, as prepare_wheels.sh downloads them.
probe="import importlib.util as u
pairs = '''ml_collections:ml_collections tensorboardX:tensorboardX matplotlib:matplotlib
contourpy:contourpy cycler:cycler fontTools:fonttools kiwisolver:kiwisolver pyparsing:pyparsing
dateutil:python-dateutil six:six absl:absl-py yaml:PyYAML google.protobuf:protobuf PIL:pillow
packaging:packaging'''.split()
def found(name):
    try:
        return u.find_spec(name) is not None
    except ModuleNotFoundError:
        return False
print(' '.join(p for p in pairs if not found(p.split(':')[0])))"
if [ "$dry_run" = 1 ]; then
  echo "# missing=\$($python -c <probe of 15 import names>)  # then, if any:"
  missing=(MODULE:DISTRIBUTION...)
else
  read -r -a missing <<<"$("$python" -c "$probe")"
fi
if [ "${#missing[@]}" -gt 0 ]; then
  dists=("${missing[@]#*:}") modules=("${missing[@]%%:*}")
  if [ "$dry_run" = 0 ] && ! ls "$wheels"/*.whl >/dev/null 2>&1; then
    echo "check.sh: this Python lacks ${dists[*]}; put their wheels in $wheels/ first" \
      "(experiments/gpu/prepare_wheels.sh, where there is network)" >&2
    exit 2
  fi
  if [ "$dry_run" = 1 ] || "$python" -m pip --version >/dev/null 2>&1; then
    if ! run timeout 60 "$python" -m pip install --no-index --no-deps --find-links "$wheels" \
      --target "$site" --quiet "${dists[@]}"; then
      echo "check.sh: the wheels in $wheels do not install on this Python ($("$python" -V 2>&1)):" \
        "run experiments/gpu/prepare_wheels.sh with GPU_PYTHON_VERSION set to its version" >&2
      exit 2
    fi
  else  # no pip: a wheel is a zip of what goes on the path
    for dist in "${dists[@]}"; do
      whl=$(find "$wheels" -iname "$(echo "$dist" | tr '-' '_')-*.whl" | head -1)
      timeout 60 "$python" -m zipfile -e "$whl" "$site"
    done
  fi
  imports=$(IFS=,; echo "${modules[*]}")
  if [ "$dry_run" = 0 ] && ! "$python" -c "import $imports" 2>"$out/packages.log"; then
    echo "check.sh: unpacked, but import $imports fails on this Python ($("$python" -V 2>&1)):" \
      "$(tail -1 "$out/packages.log"); wheels for another Python? (GPU_PYTHON_VERSION)" >&2
    exit 2
  fi
fi

# 1. Versions and devices; step 5's plan (compiles nothing for the GPU: CPU, no memory figures).
step versions 45 "$python" -m gancmp.bench.gpu_check versions
step plan 90 env JAX_PLATFORMS=cpu "$python" -m gancmp.cli plan --config \
  configs/sweeps/lucic2018.py --nomemory --accelerator 1xH100 --json

# 2. The InfoGAN train step at K trials, the loop count an argument (the default), then fixed.
for k in $first_ks; do
  step "infogan_k$k" "$([ "$k" = 1 ] && echo 60 || echo 75)" "${bench[@]}" --trials "$k" \
    "${calls_flags[@]}"
done
step infogan_fixed 75 "${bench[@]}" --trials "$loop_k" "${calls_flags[@]}" \
  --config.loop_count=fixed

# 3. FID features at three batch sizes, at the precision of a trial's FID here; torch beside.
step fid 150 "$python" -m gancmp.cli bench --what fid --fid_batch_sizes "$fid_sizes" \
  --fid_batches "$fid_batches" --fid_precision auto --json
step torch_inception 60 "$python" experiments/gpu/torch_inception.py --batch_sizes "$fid_sizes" \
  --batches "$fid_batches" --precision auto --json

# 4. The tiny sweep end to end, from an empty workdir.
selected sweep && run rm -rf "$work/sweep"
step --text sweep 150 "$python" -m gancmp.cli sweep --config experiments/gpu/tiny_sweep.py \
  --workdir "$work/sweep" --noprogress --trial num_d_steps="$sweep_steps" \
  --trial checkpoint_every=$((sweep_steps / 2)) "${sweep_eval[@]}"
if [ "$dry_run" = 0 ] && selected sweep; then
  echo "{\"wall_s\": ${took:-0}}" >"$out/sweep.json"  # its status: steps.tsv
  cat "$work"/sweep/results-*.jsonl >"$out/sweep-results.jsonl" 2>/dev/null || true
fi

# 2, last: the largest K.
step "infogan_k${ks##* }" 90 "${bench[@]}" --trials "${ks##* }" "${calls_flags[@]}"

# 5. Everything side by side (the summary runs whatever time is left).
total=$((total + 20 * scale))
step --text summary 20 "$python" -m gancmp.bench.gpu_check summary "$out"
run cat "$out/check.md" || echo "check.sh: no summary (see $out/summary.log)" >&2
