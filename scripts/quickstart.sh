#!/usr/bin/env bash
# Quickstart: the whole 4-phase SIGGRAPH17 recipe, scaled down to run on a laptop CPU in under three
# minutes, on a small dataset cut from the colour photos that scikit-image ships (no download).
#
#   bash scripts/quickstart.sh
#
# Data: ./quickstart_data (train/, train_small/, val/). Models and logs: ./checkpoints/quickstart/
# <phase>/ with latest_net_G.pth, loss_log.txt and web/index.html (the loss curves and the training
# visuals). Then the final model is evaluated (test.py, test_sweep.py), colorizes a photo
# (colorize.py), and compare_models.py writes a report, all under ./results/quickstart/, with one
# landing page linking everything: ./results/quickstart/index.html (printed last).
#
# Scale: 64 px images, 32 px crops, batch 8, 1/1/3/1 epochs of 120/120/240/80 images instead of
# 100/15/10/5 ImageNet epochs. The losses and the phase order are the paper's; two settings of
# phases 3-4 are not, because the paper's assume ImageNet scale (docs/training.md, "The quickstart"):
#   * hints: --sample_p 1/32 (about 31 hints per crop) instead of 1/8 (about 7). Over millions of
#     images the paper's model meets enough dense hint sets to learn to follow them; in 100
#     steps, a model trained at 1/8 learns the sparse case only and ignores dense hints (its
#     PSNR falls past ~80 hints), so the sweep would not show what the method does.
#   * learning rates x10: 1e-4 and 1e-5 instead of 1e-5 and 1e-6: the paper's are sized for
#     hundreds of thousands of steps; at 1e-5, 120 steps barely move the weights.
# Environment: PYTHON (python), GPU_IDS (-1), OUT (./checkpoints/quickstart), DATA
# (./quickstart_data), RESULTS (./results/quickstart).
set -euo pipefail
PYTHON=${PYTHON:-python}
GPU_IDS=${GPU_IDS:--1}
OUT=${OUT:-./checkpoints/quickstart}
DATA=${DATA:-./quickstart_data}
HERE="$(cd "$(dirname "$0")" && pwd)"
start=$(date +%s)

"$PYTHON" "$HERE/make_sample_dataset.py" --out_path "$DATA" --size 64 --per_image 40 --val_per_image 8

PYTHON="$PYTHON" DATAROOT="$DATA/train" DATAROOT_SMALL="$DATA/train_small" CHECKPOINTS_DIR="$OUT" \
GPU_IDS="$GPU_IDS" NITER_1=1 NITER_2=1 NITER_3=3 NITER_4=1 \
EXTRA_ARGS="--loadSize 64 --fineSize 32 --batch_size 8 --num_threads 1 --print_freq 80 --display_freq 160 --save_epoch_freq 100" \
EXTRA_ARGS_2="--max_dataset_size 120" EXTRA_ARGS_3="--sample_p 0.03125 --lr 0.0001" EXTRA_ARGS_4="--sample_p 0.03125 --lr 0.00001 --max_dataset_size 80" \
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
"$PYTHON" "$HERE/quickstart_page.py" --checkpoints_dir "$OUT" --results_dir "$RESULTS" \
  --photo "$DATA/val/coffee_000.png" --colorized "$RESULTS/coffee_000_colorized.png" >/dev/null

cat <<MSG

Quickstart finished in $(( $(date +%s) - start )) s.
  final model:       $OUT/siggraph_reg2/latest_net_G.pth
  training visuals:  $OUT/siggraph_class_small/web/index.html ... $OUT/siggraph_reg2/web/index.html
  loss logs:         $OUT/<phase>/loss_log.txt (and loss_log.jsonl)
  test page:         $RESULTS/siggraph_reg2/val_latest/index.html (metrics.json beside it)
  PSNR vs hints:     $RESULTS/siggraph_reg2/sweep_latest/index.html (sweep.csv, sweep.png)
  colorized photo:   $RESULTS/coffee_000_colorized.png (input: $DATA/val/coffee_000.png)
  comparison report: $RESULTS/comparison/index.html
landing page (all of the above, with the final model's PSNR against the no-colour baseline):
  $RESULTS/index.html
MSG
