#!/usr/bin/env bash
# GPU checks and benchmarks for the lent machine (PyTorch 2.11 / Python 3.12 preinstalled, no internet).
# Prepare here once (wheels of what the box lacks, for Python 3.12):
#   pip download -d .gpu-wheels --only-binary=:all: --python-version 3.12 pydantic pydantic-core \
#       annotated-types typing-extensions typing-inspection rich markdown-it-py mdurl pygments pyyaml
#   echo /.gpu-wheels/ >> .git/info/exclude
# Run (device tool): command "bash bench/gpu.sh", carry [".gpu-wheels"], timeout_s 420. Writes under $OUT.
# Budget: <= 5 minutes, so a rerun fits in the same 15-minute lease.
set -uo pipefail
OUT=${OUT:-/tmp/bnlab-gpu}; mkdir -p "$OUT"
cd "$(dirname "$0")/.."
if [ -d .gpu-wheels ]; then pip install -q --no-index --find-links .gpu-wheels pydantic rich pyyaml >"$OUT/pip.txt" 2>&1; fi
export PYTHONPATH=$PWD/src MPLBACKEND=Agg
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
python -c "import torch; print(torch.__version__, torch.cuda.get_device_name())" >> "$OUT/gpu.txt" 2>&1
# 1. correctness first (a few steps vs CPU within bf16 tolerance; every probe on CUDA)
timeout 90 python bench/gpu_check.py > "$OUT/correctness.txt" 2>&1; echo "correctness rc=$?" >> "$OUT/correctness.txt"
# 2. throughput: bnlab vs bare loop vs the usual DataLoader way, ResNet-20/56/110 at batch 128, bf16 + channels_last
timeout 150 python bench/train.py --depths 20 56 110 --batch 128 --steps 120 --amp --channels-last \
  --out "$OUT/train.json" > "$OUT/train.txt" 2>&1; echo "train rc=$?" >> "$OUT/train.txt"
# 3. steady state for the 164-epoch projection: >= 60 s of ResNet-110 steps (sync_every 50, compiled)
timeout 120 python bench/steady.py --depth 110 --seconds 60 --out "$OUT/steady.json" > "$OUT/steady.txt" 2>&1
echo "steady rc=$?" >> "$OUT/steady.txt"
cat "$OUT"/*.txt
