#!/usr/bin/env bash
# One prepared check for a CUDA machine (a few minutes): parity with the original on the GPU,
# the 4-phase recipe end to end on CUDA at small scale, and training throughput at the paper's
# 176 px. Prints figures; writes its log to $OUT (or ./gpu_check_out) when set.
#   bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-./gpu_check_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"

  echo "== parity with the original (eval mode), TF32 off and on =="
  "$PYTHON" benchmarks/cuda_parity.py --device cuda

  echo "== 4-phase recipe on CUDA, 64 px data, 1 epoch each =="
  data=$(mktemp -d)
  "$PYTHON" scripts/make_sample_dataset.py --out_path "$data" --size 96 --per_image 40
  start=$(date +%s)
  PYTHON="$PYTHON" DATAROOT="$data/train" DATAROOT_SMALL="$data/train_small" CHECKPOINTS_DIR="$data/ckpt" GPU_IDS=0 \
    NITER_1=1 NITER_2=1 NITER_3=1 NITER_4=1 \
    EXTRA_ARGS="--loadSize 96 --fineSize 64 --batch_size 16 --num_threads 4 --print_freq 64 --display_freq 128" \
    bash scripts/train_siggraph.sh > "$OUT/recipe.log" 2>&1 || { tail -30 "$OUT/recipe.log"; exit 1; }
  echo "recipe ok in $(( $(date +%s) - start )) s"; grep -o "(epoch: .*" "$OUT/recipe.log" | tail -2 || true
  "$PYTHON" -c "
import torch, sys
s = torch.load(sys.argv[1], weights_only=True)
print('phase-4 checkpoint:', len(s), 'keys, device of tensors:', {str(v.device) for v in s.values()})" "$data/ckpt/siggraph_reg2/latest_net_G.pth"

  echo "== training throughput, 176 px, fp32 =="
  for bs in 25 64; do "$PYTHON" benchmarks/bench_train.py --device cuda --batch_size $bs --size 176 --steps 20 --warmup 5 | tail -1; done
} 2>&1 | tee "$OUT/gpu_check.log"
