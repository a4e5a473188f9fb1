#!/usr/bin/env bash
# Linear probes on frozen conv1..conv5 features for the four models of the study
# (train_linear_classifiers.py; protocols and outputs are described in its docstring):
#
#   model        checkpoint (<dir>/<name>/<WHICH_EPOCH>_net_G.pth)        data                 mask_cent
#   pretrained   CHECKPOINTS_DIR_PRETRAINED/NAME_PRETRAINED                 DATAROOT*            0 (caffe weights)
#                (./checkpoints/siggraph_caffemodel, from pretrained_models/download_siggraph_model.sh)
#   saturation   CHECKPOINTS_DIR_SATURATION/NAME_SATURATION                 DATAROOT*            0.5
#                (./checkpoints/siggraph_reg2_sat: scripts/train_siggraph.sh VARIANT=saturation)
#   stylized     CHECKPOINTS_DIR_STYLIZED/NAME_STYLIZED                     DATAROOT*            0.5
#                (./checkpoints_stylized/siggraph_reg2: the recipe trained on Stylized-ImageNet)
#   coco         CHECKPOINTS_DIR_COCO/NAME_COCO                             COCO_DATAROOT*       0.5
#                (./checkpoints_coco/siggraph_reg2: the recipe trained on COCO)
#
# A model whose checkpoint is missing is skipped with one line on stderr; the others still run.
# Outputs: OUT_ROOT/<model>/ (results.json, accuracy_by_layer.png, log.jsonl, heads, feature cache)
# and OUT_ROOT/summary.{md,json,png} (all models that have results). Exit status: 0 unless a probe
# run that started failed (then 1, after the other models have run).
#
# Configuration (environment variables, defaults in brackets):
#   DATAROOT, DATAROOT_VALIDATION   ImageNet-100 train and validation, both <root>/<class>/<img>
#                                   with the same class folders  [./dataset/ilsvrc2012/train,
#                                   ./dataset/ilsvrc2012/val_classes]
#   COCO_DATAROOT, COCO_DATAROOT_VALIDATION  data for the coco model's probes  [DATAROOT,
#                                   DATAROOT_VALIDATION, so that all four models are probed on the
#                                   same task; the fork used COCO folders here]
#   CHECKPOINTS_DIR_<MODEL>, NAME_<MODEL>   see the table; MASK_CENT_PRETRAINED [0], MASK_CENT [0.5]
#   MODELS            which models to run, in order  [pretrained saturation stylized coco]
#   WHICH_EPOCH       checkpoint prefix  [latest]
#   OUT_ROOT          [./linear_checkpoints]
#   PROTOCOL          corrected | fork  [corrected]
#   NITER [200], MAX_DATASET_SIZE [13000; empty = all], GPU_IDS [empty: GPU 0 if available; -1: CPU]
#   EXTRA_ARGS        more train_linear_classifiers.py flags, e.g. "--layers conv3 conv4 --num_threads 8"
#   PYTHON            [python]
set -uo pipefail

DATAROOT=${DATAROOT:-./dataset/ilsvrc2012/train}
DATAROOT_VALIDATION=${DATAROOT_VALIDATION:-./dataset/ilsvrc2012/val_classes}
COCO_DATAROOT=${COCO_DATAROOT:-$DATAROOT}
COCO_DATAROOT_VALIDATION=${COCO_DATAROOT_VALIDATION:-$DATAROOT_VALIDATION}
CHECKPOINTS_DIR_PRETRAINED=${CHECKPOINTS_DIR_PRETRAINED:-./checkpoints}
NAME_PRETRAINED=${NAME_PRETRAINED:-siggraph_caffemodel}
CHECKPOINTS_DIR_SATURATION=${CHECKPOINTS_DIR_SATURATION:-./checkpoints}
NAME_SATURATION=${NAME_SATURATION:-siggraph_reg2_sat}
CHECKPOINTS_DIR_STYLIZED=${CHECKPOINTS_DIR_STYLIZED:-./checkpoints_stylized}
NAME_STYLIZED=${NAME_STYLIZED:-siggraph_reg2}
CHECKPOINTS_DIR_COCO=${CHECKPOINTS_DIR_COCO:-./checkpoints_coco}
NAME_COCO=${NAME_COCO:-siggraph_reg2}
MASK_CENT_PRETRAINED=${MASK_CENT_PRETRAINED:-0}
MASK_CENT=${MASK_CENT:-0.5}
MODELS=${MODELS:-pretrained saturation stylized coco}
WHICH_EPOCH=${WHICH_EPOCH:-latest}
OUT_ROOT=${OUT_ROOT:-./linear_checkpoints}
PROTOCOL=${PROTOCOL:-corrected}
NITER=${NITER:-200}
MAX_DATASET_SIZE=${MAX_DATASET_SIZE-13000}
GPU_IDS=${GPU_IDS:-}
EXTRA_ARGS=${EXTRA_ARGS:-}
PYTHON=${PYTHON:-python}

prog=train_linear_classifiers.sh
REPO="$(cd "$(dirname "$0")" && pwd)"
read -r -a EXTRA <<< "$EXTRA_ARGS"
COMMON=(--protocol "$PROTOCOL" --niter "$NITER" --which_epoch "$WHICH_EPOCH")
[ -n "$MAX_DATASET_SIZE" ] && COMMON+=(--max_dataset_size "$MAX_DATASET_SIZE")
[ -n "$GPU_IDS" ] && COMMON+=(--gpu_ids "$GPU_IDS")

failed=()
ran=()
for model in $MODELS; do
  case "$model" in
    pretrained) dir=$CHECKPOINTS_DIR_PRETRAINED; name=$NAME_PRETRAINED; mask=$MASK_CENT_PRETRAINED
                train=$DATAROOT; val=$DATAROOT_VALIDATION ;;
    saturation) dir=$CHECKPOINTS_DIR_SATURATION; name=$NAME_SATURATION; mask=$MASK_CENT
                train=$DATAROOT; val=$DATAROOT_VALIDATION ;;
    stylized)   dir=$CHECKPOINTS_DIR_STYLIZED; name=$NAME_STYLIZED; mask=$MASK_CENT
                train=$DATAROOT; val=$DATAROOT_VALIDATION ;;
    coco)       dir=$CHECKPOINTS_DIR_COCO; name=$NAME_COCO; mask=$MASK_CENT
                train=$COCO_DATAROOT; val=$COCO_DATAROOT_VALIDATION ;;
    *) echo "$prog: unknown model '$model' in MODELS (use pretrained, saturation, stylized, coco)" >&2; exit 2 ;;
  esac
  ckpt="$dir/$name/${WHICH_EPOCH}_net_G.pth"
  if [ ! -f "$ckpt" ]; then
    echo "skipping $model: no checkpoint at $ckpt" >&2
    continue
  fi
  echo "==== $model: $ckpt ===="
  if "$PYTHON" "$REPO/train_linear_classifiers.py" --name "$name" --checkpoints_dir "$dir" --mask_cent "$mask" \
      --dataroot "$train" --dataroot_validation "$val" --linear_checkpoints "$OUT_ROOT/$model" \
      "${COMMON[@]}" ${EXTRA[@]+"${EXTRA[@]}"}; then
    ran+=("$model")
  else
    rc=$?
    echo "$prog: $model failed (exit $rc)" >&2
    failed+=("$model")
  fi
done

if [ ${#ran[@]} -gt 0 ]; then
  PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" - "$OUT_ROOT" "${ran[@]}" <<'PY'
import os, sys
from evaluation.probe_results import summarize
out_root, models = os.path.abspath(sys.argv[1]), sys.argv[2:]
print(summarize({m: os.path.join(out_root, m) for m in models}, out_root))
print(f"summary: {os.path.join(out_root, 'summary.md')} and summary.png")
PY
fi
if [ ${#failed[@]} -gt 0 ]; then
  echo "$prog: failed: ${failed[*]}" >&2
  exit 1
fi
exit 0
