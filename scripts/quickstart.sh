#!/usr/bin/env bash
# Quickstart: the whole 4-phase SIGGRAPH17 recipe, scaled down to run on a laptop CPU in minutes,
# on a small dataset cut from the colour photos that scikit-image ships (no download).
#
#   bash scripts/quickstart.sh
#
# Data: ./quickstart_data (train/, train_small/, val/). Models and logs: ./checkpoints/quickstart/
# <phase>/ with latest_net_G.pth, loss_log.txt and web/index.html (the loss curves and the training
# visuals). Then the final model is evaluated (test.py, test_sweep.py), colorizes a photo
# (colorize.py), and compare_models.py writes a report, all under ./results/quickstart/.
# Scale: 64 px images, 48 px crops, batch 8, 4/2/2/1 epochs instead of 100/15/10/5; the learning
# rates, hint schedule and losses are the paper's (docs/training.md). Environment: PYTHON (python),
# GPU_IDS (-1), OUT (./checkpoints/quickstart), DATA (./quickstart_data), RESULTS (./results/quickstart).
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

# Evaluate the final model: the test page and metrics (auto, 1/8 and 1/32 hint densities), the
# PSNR-vs-hints sweep on 8 photos, one photo colorized with a user hint, and the comparison report.
RESULTS=${RESULTS:-./results/quickstart}
MODEL=(--name siggraph_reg2 --checkpoints_dir "$OUT" --gpu_ids "$GPU_IDS")
"$PYTHON" "$HERE/../test.py" "${MODEL[@]}" --dataroot "$DATA/val" --loadSize 64 --how_many 16 \
  --results_dir "$RESULTS" --num_threads 0
"$PYTHON" "$HERE/../test_sweep.py" "${MODEL[@]}" --dataroot "$DATA/val" --loadSize 64 --how_many 8 \
  --results_dir "$RESULTS" --num_threads 0
"$PYTHON" "$HERE/../colorize.py" -i "$DATA/val/coffee_000.png" -o "$RESULTS/coffee_000_colorized.png" \
  "${MODEL[@]}" --load_size 64 --hint 32,32,#c08040,3
"$PYTHON" "$HERE/../compare_models.py" --names siggraph_reg2 --results_dir "$RESULTS" --out "$RESULTS/comparison"

cat <<MSG

Quickstart finished in $(( $(date +%s) - start )) s.
  final model:       $OUT/siggraph_reg2/latest_net_G.pth
  training visuals:  $OUT/siggraph_class_small/web/index.html ... $OUT/siggraph_reg2/web/index.html
  loss logs:         $OUT/<phase>/loss_log.txt (and loss_log.jsonl)
  test page:         $RESULTS/siggraph_reg2/val_latest/index.html (metrics.json beside it)
  PSNR vs hints:     $RESULTS/siggraph_reg2/sweep_latest/index.html (sweep.csv, sweep.png)
  colorized photo:   $RESULTS/coffee_000_colorized.png (input: $DATA/val/coffee_000.png)
  comparison report: $RESULTS/comparison/index.html
MSG
