#!/usr/bin/env bash
# The SIGGRAPH17 training recipe in 4 phases (Zhang et al. 2017; the original's scripts/train_siggraph.sh):
#
#   phase  name                   data            loss            hints (sample_p)  epochs  lr
#   1      siggraph_class_small   DATAROOT_SMALL  classification  none (1.0)        100     1e-4
#   2      siggraph_class         DATAROOT        classification  none (1.0)        15      1e-4
#   3      siggraph_reg           DATAROOT        regression      1/8               10      1e-5
#   4      siggraph_reg2          DATAROOT        regression      1/8               5       1e-6
#
# Each phase starts from the previous phase's latest_net_G.pth (copied into its own folder) with a
# fresh Adam optimizer and a constant learning rate (--niter_decay 0). Everything else is default:
# batch 25, 256 -> 176 crops, lambda_A 1, mask_cent 0.5, patch sizes 1..9.
#
# Configuration (environment variables; the defaults reproduce the paper):
#   DATAROOT           training images, <root>/<class>/<img>   (./dataset/ilsvrc2012/train)
#   DATAROOT_SMALL     phase-1 images                          (./dataset/ilsvrc2012/train_small)
#   CHECKPOINTS_DIR    where the phase folders go              (./checkpoints)
#   GPU_IDS            --gpu_ids (-1: CPU; empty: GPU 0 if there is one)
#   MAX_DATASET_SIZE   images per epoch, a fresh random subset each epoch (empty: all; the fork used 130000)
#   VARIANT            baseline | saturation. saturation adds --lambda_sat LAMBDA_SAT (1e-4) to phases
#                      3-4 and names them siggraph_reg_sat / siggraph_reg2_sat, so that
#                      VARIANT=saturation START_PHASE=3 fine-tunes the baseline's phase-2 model.
#   NAME_PREFIX        prepended to every phase name            (empty)
#   START_PHASE        first phase to run, 1-4; a later start needs the previous phase's checkpoint (1)
#   NITER_1..NITER_4   epochs per phase                        (100, 15, 10, 5)
#   EXTRA_ARGS         more train.py flags for every phase, e.g. "--loadSize 64 --fineSize 48"
#   EXTRA_ARGS_1..4    more train.py flags for one phase, after EXTRA_ARGS; a later flag wins, so they
#                      can change the recipe's --sample_p or --lr, e.g. EXTRA_ARGS_3="--sample_p 0.03125"
#   PYTHON             the interpreter                          (python)
#   TRAIN_LAUNCHER     what runs train.py instead of PYTHON, e.g. "torchrun --standalone --nproc_per_node 8"
#                      for data-parallel training on 8 GPUs (then --batch_size is per GPU; see README)
set -euo pipefail

DATAROOT=${DATAROOT:-./dataset/ilsvrc2012/train}
DATAROOT_SMALL=${DATAROOT_SMALL:-./dataset/ilsvrc2012/train_small}
CHECKPOINTS_DIR=${CHECKPOINTS_DIR:-./checkpoints}
GPU_IDS=${GPU_IDS:-}
MAX_DATASET_SIZE=${MAX_DATASET_SIZE:-}
VARIANT=${VARIANT:-baseline}
NAME_PREFIX=${NAME_PREFIX:-}
START_PHASE=${START_PHASE:-1}
LAMBDA_SAT=${LAMBDA_SAT:-1e-4}
NITER_1=${NITER_1:-100}
NITER_2=${NITER_2:-15}
NITER_3=${NITER_3:-10}
NITER_4=${NITER_4:-5}
EXTRA_ARGS=${EXTRA_ARGS:-}
PYTHON=${PYTHON:-python}
TRAIN_LAUNCHER=${TRAIN_LAUNCHER:-}

# Relative paths are taken from the caller's directory; train.py is found beside this folder.
TRAIN_PY="$(cd "$(dirname "$0")/.." && pwd)/train.py"

case "$VARIANT" in
  baseline) SAT_ARGS=(); SAT_SUFFIX="" ;;
  saturation) SAT_ARGS=(--lambda_sat "$LAMBDA_SAT"); SAT_SUFFIX="_sat" ;;
  *) echo "train_siggraph.sh: VARIANT must be baseline or saturation (got '$VARIANT')" >&2; exit 2 ;;
esac
case "$START_PHASE" in
  1|2|3|4) ;;
  *) echo "train_siggraph.sh: START_PHASE must be 1, 2, 3 or 4 (got '$START_PHASE')" >&2; exit 2 ;;
esac

NAMES=("" "${NAME_PREFIX}siggraph_class_small" "${NAME_PREFIX}siggraph_class"
       "${NAME_PREFIX}siggraph_reg${SAT_SUFFIX}" "${NAME_PREFIX}siggraph_reg2${SAT_SUFFIX}")
COMMON=(--checkpoints_dir "$CHECKPOINTS_DIR")
[ -n "$GPU_IDS" ] && COMMON+=(--gpu_ids "$GPU_IDS")
[ -n "$MAX_DATASET_SIZE" ] && COMMON+=(--max_dataset_size "$MAX_DATASET_SIZE")
read -r -a EXTRA <<< "$EXTRA_ARGS"
PHASE_EXTRA=("" "${EXTRA_ARGS_1:-}" "${EXTRA_ARGS_2:-}" "${EXTRA_ARGS_3:-}" "${EXTRA_ARGS_4:-}")
if [ -n "$TRAIN_LAUNCHER" ]; then read -r -a LAUNCH <<< "$TRAIN_LAUNCHER"; else LAUNCH=("$PYTHON"); fi

# Copy the previous phase's latest weights into the next phase's folder.
carry_forward() {
  local from="$CHECKPOINTS_DIR/${NAMES[$1]}/latest_net_G.pth" to="$CHECKPOINTS_DIR/${NAMES[$2]}"
  if [ ! -f "$from" ]; then
    echo "train_siggraph.sh: phase $2 needs $from (run phase $1 first)" >&2
    exit 2
  fi
  mkdir -p "$to"
  cp "$from" "$to/latest_net_G.pth"
}

run_phase() {
  local phase=$1; shift
  local own
  read -r -a own <<< "${PHASE_EXTRA[$phase]}"
  echo "==== phase $phase: ${NAMES[$phase]} ===="
  "${LAUNCH[@]}" "$TRAIN_PY" --name "${NAMES[$phase]}" "${COMMON[@]}" --niter_decay 0 "$@" ${EXTRA[@]+"${EXTRA[@]}"} \
    ${own[@]+"${own[@]}"}
}

if [ "$START_PHASE" -le 1 ]; then
  run_phase 1 --dataroot "$DATAROOT_SMALL" --classification --sample_p 1.0 --niter "$NITER_1" --lr 0.0001
fi
if [ "$START_PHASE" -le 2 ]; then
  carry_forward 1 2
  run_phase 2 --dataroot "$DATAROOT" --classification --sample_p 1.0 --niter "$NITER_2" --lr 0.0001 --load_model
fi
if [ "$START_PHASE" -le 3 ]; then
  carry_forward 2 3
  run_phase 3 --dataroot "$DATAROOT" --sample_p 0.125 --niter "$NITER_3" --lr 0.00001 --load_model ${SAT_ARGS[@]+"${SAT_ARGS[@]}"}
fi
carry_forward 3 4
run_phase 4 --dataroot "$DATAROOT" --sample_p 0.125 --niter "$NITER_4" --lr 0.000001 --load_model ${SAT_ARGS[@]+"${SAT_ARGS[@]}"}

echo "done: the final model is $CHECKPOINTS_DIR/${NAMES[4]}/latest_net_G.pth"
