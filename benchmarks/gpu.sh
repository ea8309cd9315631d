#!/usr/bin/env bash
# Everything that needs a GPU, in one script: run it on a machine with CUDA (after the README's
# install) and commit benchmarks/results/gpu/ — the numbers go into README "Performance".
#   bash benchmarks/gpu.sh            # full (~10-20 min on one recent GPU)
#   QUICK=1 bash benchmarks/gpu.sh    # smoke run (also works on the CPU with DEVICE=cpu)
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE="${DEVICE:-cuda}"
OUT="${OUT:-benchmarks/results/gpu}"
mkdir -p "$OUT"
python -c "import torch, sys; d='$DEVICE'; sys.exit(0 if d=='cpu' or torch.cuda.is_available() else 'no CUDA device')"
q=(); [ -n "${QUICK:-}" ] && q=(--quick)
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
samplerlab bench --device "$DEVICE" --out "$OUT/bench" "${q[@]}"
python benchmarks/low_rank_denoiser.py --device "$DEVICE" --out "$OUT" "${q[@]}"
python benchmarks/gpu_scale.py --device "$DEVICE" --out "$OUT" "${q[@]}"
for dt in float64 float32; do
  samplerlab reproduce --quick --device "$DEVICE" --dtype "$dt" --out "$OUT/reproduce_$dt" --no-progress
done
echo "results in $OUT"
