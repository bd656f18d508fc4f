#!/usr/bin/env bash
# GPU checks and benchmarks for a lent machine (PyTorch / Python 3.12 preinstalled, no internet).
#   bash bench/gpu.sh            the real run: each section time-boxed, <= 300 s in all
#   bash bench/gpu.sh --dry-run  every section on the CPU at tiny sizes (<= 3 minutes): every import and
#                                code path, the same output files, so no GPU minute is spent on a typo
# Writes under $OUT (a new temp dir when unset) and prints its path last; exits 1 if any section failed.
# Prepare here once (wheels of what the box lacks, for Python 3.12):
#   pip download -d .gpu-wheels --only-binary=:all: --python-version 3.12 pydantic pydantic-core \
#       annotated-types typing-extensions typing-inspection rich markdown-it-py mdurl pygments pyyaml
#   echo /.gpu-wheels/ >> .git/info/exclude
# Run (device tool): command "bash bench/gpu.sh", carry [".gpu-wheels"], timeout_s 420.
# Then: record the numbers in bench/RESULTS.md (card, torch/CUDA versions, this command).
set -uo pipefail
DRY=0
case "${1:-}" in
  --dry-run) DRY=1 ;;
  "") ;;
  *) echo "usage: bash bench/gpu.sh [--dry-run]" >&2; exit 2 ;;
esac
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/bnlab-gpu.XXXXXX")}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} MPLBACKEND=Agg

FAILED=()
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
# section NAME SECONDS COMMAND...: run COMMAND with a time box, its output in $OUT/NAME.txt; the summary
# line has its wall seconds and its CPU seconds (user + system, all its processes)
section() {
  local name=$1 secs=$2; shift 2
  local t0=$SECONDS rc cpu TIMEFORMAT='%U %S'
  echo "== $name (time box ${secs}s)" >&2
  { time timeout --kill-after=5 "$secs" "$@" > "$OUT/$name.txt" 2>&1; } 2> "$OUT/.$name.cpu"
  rc=$?
  cpu=$(awk '{ printf "%.1f", $1 + $2 }' "$OUT/.$name.cpu") && rm -f "$OUT/.$name.cpu"
  local cmd="$*"
  cmd=${cmd//$'\n'/ }  # one line (the env section's command is a function body)
  printf '%-12s rc=%-3s %4ss %6s CPU-s  %s\n' "$name" "$rc" "$((SECONDS - t0))" "$cpu" "${cmd:0:160}" \
    | tee -a "$SUMMARY" >&2
  if [ "$rc" != 0 ]; then FAILED+=("$name"); tail -n 20 "$OUT/$name.txt" >&2; fi
}

if [ "$DRY" = 1 ]; then
  # tiny sizes on the CPU, one thread per process (tiny tensors gain nothing from more, and idle OpenMP
  # threads spin on a busy machine); the fewest steps and repeats that still run every code path.
  # ~35 CPU-s in all (summary.txt has each section's); per-section boxes sum to 180 s
  export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
  ENV_S=10 CHECK_S=45 TRAIN_S=45 COMPILE_S=25 CONC_S=30 STEADY_S=15 EST_S=10
  TRAIN=(--depths 8 --batch 8 --steps 4 --repeats 1 --workers 1 --device cpu --clock cpu --dry-run)
  COMPILE=(--depths 8 --batch 8 --steps 4 --repeats 1 --skip-usual --device cpu --clock cpu --dry-run
    --compile reduce-overhead)
  CONC=(--depth 8 --batch 8 --steps 2 --warmup-steps 1 --counts 1 2 --device cpu)
  STEADY=(--depth 8 --batch 8 --seconds 0.1 --images 64)
  CHECK=(--dry-run)
else
  # the real run: boxes sum to 300 s
  ENV_S=20 CHECK_S=60 TRAIN_S=80 COMPILE_S=50 CONC_S=50 STEADY_S=35 EST_S=5
  TRAIN=(--depths 20 56 110 --batch 128 --steps 120 --amp --channels-last)
  COMPILE=(--depths 20 --batch 128 --steps 120 --amp --channels-last --skip-usual --compile reduce-overhead)
  CONC=(--depth 20 --batch 128 --steps 300 --counts 1 2 4 8)
  STEADY=(--depth 110 --seconds 20)
  CHECK=()
fi

env_info() {
  if [ -d .gpu-wheels ]; then pip install -q --no-index --find-links .gpu-wheels pydantic rich pyyaml || return 1; fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi (dry run: CPU)"
  python -c "import sys, torch, bnlab; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, \
torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"
}

# 1. environment; 2. correctness first: CUDA vs CPU trajectories (fp32, bf16 + channels_last, CUDA graphs),
#    host syncs per step, every probe on CUDA
section env "$ENV_S" bash -c "$(declare -f env_info); env_info"
section correctness "$CHECK_S" python bench/gpu_check.py "${CHECK[@]}"
# 3. throughput at batch 128: bnlab vs the bare loop vs the usual DataLoader loop, bf16 + channels_last,
#    peak memory, the card's bf16 matmul rate and the fraction reached; then the same with CUDA graphs
section train "$TRAIN_S" python bench/train.py "${TRAIN[@]}" --out "$OUT/train.json"
section compile "$COMPILE_S" python bench/train.py "${COMPILE[@]}" --out "$OUT/compile.json"
# 4. several runs on one device: 1, 2, 4, 8 concurrent ResNet-20 runs, total img/s
section concurrency "$CONC_S" python bench/concurrency.py "${CONC[@]}" --out "$OUT/concurrency.json"
# 5. steady state of ResNet-110 and its 164-epoch projection; 6. the fast profile's projected total
section steady "$STEADY_S" python bench/steady.py "${STEADY[@]}" --out "$OUT/steady.json"
section estimate "$EST_S" python bench/fast_estimate.py --throughput "$OUT/train.json"

if [ ${#FAILED[@]} -gt 0 ]; then
  echo "failed sections: ${FAILED[*]} (outputs in $OUT)" >&2
  echo "$OUT"
  exit 1
fi
echo "all sections passed" >&2
echo "$OUT"
