#!/usr/bin/env bash
# Quickstart: the whole 4-phase SIGGRAPH17 recipe, scaled down to run on a laptop CPU in minutes,
# on a small dataset cut from the colour photos that scikit-image ships (no download).
#
#   bash scripts/quickstart.sh
#
# Data: ./quickstart_data (train/, train_small/, val/). Models and logs: ./checkpoints/quickstart/
# <phase>/ with latest_net_G.pth, loss_log.txt and web/index.html (the training visuals).
# Scale: 64 px images, 48 px crops, batch 8, 4/2/2/1 epochs instead of 100/15/10/5; the learning
# rates, hint schedule and losses are the paper's. Environment: PYTHON (python), GPU_IDS (-1),
# OUT (./checkpoints/quickstart), DATA (./quickstart_data).
set -euo pipefail
PYTHON=${PYTHON:-python}
GPU_IDS=${GPU_IDS:--1}
OUT=${OUT:-./checkpoints/quickstart}
DATA=${DATA:-./quickstart_data}
HERE="$(cd "$(dirname "$0")" && pwd)"
start=$(date +%s)

"$PYTHON" "$HERE/make_sample_dataset.py" --out_path "$DATA" --size 64 --per_image 40 --val_per_image 8

PYTHON="$PYTHON" DATAROOT="$DATA/train" DATAROOT_SMALL="$DATA/train_small" CHECKPOINTS_DIR="$OUT" \
GPU_IDS="$GPU_IDS" NITER_1=4 NITER_2=2 NITER_3=2 NITER_4=1 \
EXTRA_ARGS="--loadSize 64 --fineSize 48 --batch_size 8 --num_threads 1 --print_freq 80 --display_freq 160 --save_epoch_freq 100" \
  bash "$HERE/train_siggraph.sh"

cat <<MSG

Quickstart finished in $(( $(date +%s) - start )) s.
  final model:      $OUT/siggraph_reg2/latest_net_G.pth
  training visuals: $OUT/siggraph_class_small/web/index.html ... $OUT/siggraph_reg2/web/index.html
  loss logs:        $OUT/<phase>/loss_log.txt (and loss_log.jsonl)
  validation photos: $DATA/val
MSG
