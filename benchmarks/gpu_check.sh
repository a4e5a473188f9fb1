#!/usr/bin/env bash
# One prepared check for a CUDA machine, under 8 minutes: parity with the original on the GPU, the
# 4-phase recipe end to end at small scale, then at batch 64 and 176 px: batch preparation
# (bench_prep), training throughput for fp32 and each speed flag (bench_train: images/s, model
# FLOPs utilisation, peak memory) and the sweep's batching (bench_sweep). Ends with a summary
# (benchmarks/gpu_report.py): images/s, MFU and the fp32 -> amp+channels_last+compile ratio.
#
#   bash benchmarks/gpu_check.sh                       # logs and JSON lines in $OUT (./gpu_check_out)
#   DRY_RUN=1 OUT=/tmp/dry bash benchmarks/gpu_check.sh  # the same stages on the CPU at tiny sizes
#
# Every stage runs under its own time limit (the limits add up to 465 s); a stage that fails or
# runs out of time is reported in one line and the next one still runs. The exit status is 1 if
# any stage failed. Per stage: $OUT/<stage>.jsonl (JSON lines) and $OUT/<stage>.err (everything
# else); $OUT/gpu_check.log is the whole console output, $OUT/summary.json the closing summary.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-./gpu_check_out}
DRY_RUN=${DRY_RUN:-0}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

if [ "$DRY_RUN" = 1 ]; then  # checks the script and its commands, not the figures
  DEVICE=cpu GPU_IDS=-1 BATCH=2 SIZE=16 STEPS=1 WARMUP=1 PREP_REPEATS=1 SWEEP_BATCHES=1 SWEEP_WARMUP=0
  RECIPE_DATA="--size 40 --per_image 1" RECIPE_ARGS="--loadSize 40 --fineSize 32 --batch_size 4 --max_dataset_size 4 --num_threads 0"
else
  DEVICE=cuda GPU_IDS=0 BATCH=64 SIZE=176 STEPS=10 WARMUP=3 PREP_REPEATS=3 SWEEP_BATCHES=16 SWEEP_WARMUP=2
  RECIPE_DATA="--size 96 --per_image 40" RECIPE_ARGS="--loadSize 96 --fineSize 64 --batch_size 16 --num_threads 4"
fi
# The most informative training configurations first: a stage cut by its limit keeps those.
CONFIGS="fp32 amp+channels_last+compile amp channels_last compile"

# Dense peak TFLOP/s for MFU: (bf16, TF32). PyTorch runs fp32 convolutions in TF32 on these GPUs by
# default (torch.backends.cudnn.allow_tf32), so fp32 configurations are measured against TF32.
peak_args() {
  case "$1" in
    *H100*PCIe*) echo "--peak_tflops 756 --peak_tflops_fp32 378" ;;
    *NVL*) ;;  # H100 NVL / H200 NVL: lower clocks than the SXM parts; not tabulated
    *H100*|*H200*) echo "--peak_tflops 989 --peak_tflops_fp32 495" ;;
    *A100*) echo "--peak_tflops 312 --peak_tflops_fp32 156" ;;
    *L40S*) echo "--peak_tflops 362 --peak_tflops_fp32 183" ;;
  esac
}

failed=0
# stage NAME LIMIT_S COMMAND...: run it with a time limit; stdout -> $OUT/NAME.jsonl (and shown),
# stderr -> $OUT/NAME.err (its tail shown on failure). Never stops the script.
stage() {
  local name=$1 limit=$2 start rc=0
  shift 2
  echo "== $name (limit ${limit} s) =="
  start=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.jsonl" 2> "$OUT/$name.err" || rc=$?
  cat "$OUT/$name.jsonl"
  if [ "$rc" -eq 0 ]; then
    echo "$name: ok in $(( $(date +%s) - start )) s"
  else
    failed=1
    [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && why="out of time after ${limit} s" || why="exit status $rc"
    echo "$name: FAILED ($why); last lines of $OUT/$name.err:"
    tail -15 "$OUT/$name.err" | sed 's/^/  /'
  fi
}

# The 4 phases of scripts/train_siggraph.sh, one epoch each, on a small generated dataset.
recipe() {
  set -euo pipefail
  local data
  data=$(mktemp -d)
  # shellcheck disable=SC2086
  "$PYTHON" scripts/make_sample_dataset.py --out_path "$data" $RECIPE_DATA >&2
  PYTHON="$PYTHON" DATAROOT="$data/train" DATAROOT_SMALL="$data/train_small" CHECKPOINTS_DIR="$data/ckpt" \
    GPU_IDS="$GPU_IDS" NITER_1=1 NITER_2=1 NITER_3=1 NITER_4=1 \
    EXTRA_ARGS="$RECIPE_ARGS --print_freq 64 --display_freq 128" bash scripts/train_siggraph.sh >&2
  "$PYTHON" -c "
import json, sys, torch
s = torch.load(sys.argv[1], weights_only=True)
print(json.dumps({'phase4_checkpoint_keys': len(s), 'devices': sorted({str(v.device) for v in s.values()})}))" \
    "$data/ckpt/siggraph_reg2/latest_net_G.pth"
  rm -rf "$data"
}
export -f recipe
export PYTHON RECIPE_DATA RECIPE_ARGS GPU_IDS

{
  if [ "$DEVICE" = cuda ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi failed"
  fi
  NAME=$("$PYTHON" -c "import torch, sys; print(torch.cuda.get_device_name(0) if sys.argv[1] == 'cuda' else 'cpu')" \
         "$DEVICE" 2>/dev/null) || NAME=unknown
  echo "device: $NAME; $("$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)")"
  PEAKS=$(peak_args "$NAME")
  [ -n "$PEAKS" ] && echo "MFU against $PEAKS" || echo "no peak TFLOP/s known for '$NAME': achieved TFLOP/s only"

  stage parity 45 "$PYTHON" benchmarks/cuda_parity.py --device "$DEVICE"
  stage recipe 110 bash -c recipe
  stage prep 50 "$PYTHON" benchmarks/bench_prep.py --device "$DEVICE" --batch_size "$BATCH" --size "$SIZE" \
    --repeats "$PREP_REPEATS" --warmup 1
  # shellcheck disable=SC2086
  stage train 220 "$PYTHON" benchmarks/bench_train.py --device "$DEVICE" --batch_size "$BATCH" --size "$SIZE" \
    --steps "$STEPS" --warmup "$WARMUP" --configs $CONFIGS --config_timeout_s 150 $PEAKS
  stage sweep 40 "$PYTHON" benchmarks/bench_sweep.py --device "$DEVICE" --size "$SIZE" --batches "$SWEEP_BATCHES" \
    --warmup "$SWEEP_WARMUP"
  echo "== summary =="
  "$PYTHON" benchmarks/gpu_report.py "$OUT" || failed=1
  [ "$failed" -eq 0 ] && echo "gpu_check: all stages ok" || echo "gpu_check: some stages FAILED (see above)"
  exit "$failed"
} 2>&1 | tee "$OUT/gpu_check.log"
