#!/usr/bin/env bash
# The whole study of the research fork in one command: four SIGGRAPH17 colorization models,
# evaluated the same way and compared in one report.
#
#   model       what                                                   checkpoint (<dir>/<name>)
#   pretrained  PRETRAINED=download: the official SIGGRAPH17 weights    CHECKPOINTS_DIR_PRETRAINED/siggraph_caffemodel
#               (pretrained_models/download_siggraph_model.sh; evaluated with --mask_cent 0)
#   baseline    PRETRAINED=retrain instead: the 4-phase recipe on       CHECKPOINTS_DIR/siggraph_reg2
#               ImageNet-100, trained here (takes the first slot)
#   saturation  VARIANT=saturation on ImageNet-100: phases 1-2 as the   CHECKPOINTS_DIR/siggraph_reg2_sat
#               baseline (the same folders, shared with it), phases 3-4 with --lambda_sat 1e-4
#   stylized    the 4 phases on Stylized-ImageNet-100                   CHECKPOINTS_DIR_STYLIZED/siggraph_reg2
#               (phase 1 on the stylized copies of ImageNet-100's train_small classes)
#   coco        the 4 phases on COCO 2017 train (make_coco_dataset.py)   CHECKPOINTS_DIR_COCO/siggraph_reg2
#               phase 1 on all of COCO train for COCO_NITER_1 epochs (COCO has no train_small:
#               11 epochs of its 118k images are as many images as 100 epochs of the ~13k of train_small)
#
# Stages (STAGES, in this order; each step is skipped when its output exists, so the script can be
# rerun after an interruption or to add a model, and a second run does nothing):
#   data     ImageNet-100 with make_ilsvrc_dataset.py --num_classes 100 (if IMAGENET_SRC is set; done
#            when test/imgs holds 10000 links), its val_classes/ (if IMAGENET_VAL_BY_CLASS is set),
#            Stylized-ImageNet-100 with make_stylized_dataset.py (if STYLE_DIR is set; done when its
#            content_style_map.json says finished) plus train_small/ links to the stylized
#            train_small classes, COCO with make_coco_dataset.py (if COCO_SRC is set; done when
#            manifest.csv exists). Without a source, the dataset must already be in place.
#   train    scripts/train_siggraph.sh per model, starting at the first phase whose final epoch file
#            (<niter-1>_net_G.pth) is missing; the pretrained weights are downloaded if missing
#   eval     test.py on IMAGENET_VAL (metrics.json) and test_sweep.py on IMAGENET_TEST (sweep.csv)
#   probes   train_linear_classifiers.py on IMAGENET_TRAIN / IMAGENET_VAL_CLASSES (results.json)
#   shape    test_shape_bias.py: 16-way probes on GEIRHOS16_ROOT, then the cue-conflict STIMULI
#            (RESULTS_DIR/<model>/<name>/shape_bias/shape_bias.json; docs/shape_bias.md); skipped
#            with one line when STIMULI or the 16-class data is missing. The data stage builds the
#            16-class data with make_geirhos16_dataset.py when this stage is asked for and
#            GEIRHOS16_SRC and GEIRHOS16_VAL_BY_CLASS are set (done when its layout.json exists)
#   report   compare_models.py over the four models: RESULTS_DIR/comparison/index.html (rewritten when
#            any earlier step ran)
# Outputs: RESULTS_DIR/<model>/<name>/{val_latest,sweep_latest}/, PROBES_DIR/<model>/, the report.
# The Python steps of the data stage, and all evaluation and probe steps, each run in one Python
# process (scripts/run_entry_points.py), which saves importing torch a dozen times.
#
# Configuration (environment variables, defaults in brackets):
#   SMOKE=1            the whole study on tiny generated data on the CPU in about a minute and a half:
#                      scripts/make_study_smoke_data.py (photos, random AdaIN weights, a fake COCO
#                      tree), 1 epoch per phase at 32 px, every root under SMOKE_ROOT
#                      [./study_smoke]. Downloads are impossible there, so the "pretrained" model
#                      is a copy of the smoke baseline's phase-2 weights (said in the output).
#                      One CPU thread per process (OMP_NUM_THREADS=1 unless set). Every variable
#                      below can still be set.
#   IMAGENET_SRC       ILSVRC2012 root with train/<wnid>/ and a flat val/  [empty: IMAGENET_ROOT exists]
#   IMAGENET_ROOT      [./dataset/ilsvrc2012_100]; IMAGENET_TRAIN [$IMAGENET_ROOT/train],
#                      IMAGENET_TRAIN_SMALL [.../train_small], IMAGENET_VAL [.../val],
#                      IMAGENET_TEST [.../test], IMAGENET_VAL_CLASSES [.../val_classes]
#   IMAGENET_VAL_BY_CLASS  the 50,000 ILSVRC2012 validation images sorted into <wnid>/ folders;
#                      val_classes/ gets a link to the folder of each of the 100 training classes
#                      [empty: IMAGENET_VAL_CLASSES exists]
#   STYLE_DIR          style images (Painter by Numbers train/)  [empty: STYLIZED_ROOT exists]
#   STYLIZED_ROOT      [./dataset/stylized_imagenet100] (train/, train_small/)
#   ADAIN_VGG, ADAIN_DECODER  [./pretrained_models/adain/vgg_normalised.pth, decoder.pth]
#   STYLIZE_ARGS       more make_stylized_dataset.py flags  ["--extensions JPEG jpeg jpg png --content_size 256"]
#   COCO_SRC           COCO 2017 root (train2017/, val2017/, annotations/)  [empty: COCO_ROOT exists]
#   COCO_ROOT          [./dataset/coco2017] (train/, val/, val_cls/); COCO_ARGS: more make_coco_dataset.py flags
#   PRETRAINED         download | retrain  [download]
#   CHECKPOINTS_DIR    baseline and saturation phases [./checkpoints]; CHECKPOINTS_DIR_PRETRAINED
#                      [./checkpoints], CHECKPOINTS_DIR_STYLIZED [./checkpoints_stylized],
#                      CHECKPOINTS_DIR_COCO [./checkpoints_coco]
#   RESULTS_DIR        [./results/study]; PROBES_DIR [./linear_checkpoints/study]
#   MODELS             which models, in this order  [pretrained saturation stylized coco]
#   STAGES             [data train eval probes shape report]
#   GPU_IDS            --gpu_ids of every step (-1: CPU; empty: GPU 0 if there is one)
#   NITER_1..NITER_4   epochs per phase [100 15 10 5]; COCO_NITER_1 [11]
#   MAX_DATASET_SIZE   training images per epoch, a fresh random subset each epoch [130000, the fork's;
#                      empty: all]
#   TRAIN_ARGS         more train.py flags for every phase (train_siggraph.sh's EXTRA_ARGS)
#   TRAIN_LAUNCHER     what runs train.py (train_siggraph.sh's; e.g. "torchrun --standalone --nproc_per_node 8")
#   TRAIN_JOBS         models trained at the same time [1; SMOKE: 2]: the ImageNet-100 models (baseline,
#                      saturation and the pretrained copy, which share phases 1-2) form one job, the
#                      stylized and coco models one job each; their logs are printed when all are done.
#                      More than 1 only makes sense with the resources for it (cores, or GPUs per job
#                      through TRAIN_LAUNCHER / GPU_IDS)
#   HOW_MANY [200], SWEEP_HOW_MANY [1000]; TEST_ARGS, SWEEP_ARGS: more test.py / test_sweep.py flags
#   PROBE_NITER [200], PROBE_MAX_DATASET_SIZE [13000; empty: all]; PROBE_ARGS: more
#                      train_linear_classifiers.py flags
#   COCO_PROBE_TRAIN, COCO_PROBE_VAL   the coco model's probe data  [IMAGENET_TRAIN, IMAGENET_VAL_CLASSES:
#                      all four models are probed on the same task; the fork used COCO folders, i.e.
#                      COCO_ROOT/train and COCO_ROOT/val_cls]
#   GEIRHOS16_SRC      ILSVRC2012 root (train/<wnid>/) of the 16-class data [IMAGENET_SRC];
#   GEIRHOS16_VAL_BY_CLASS  [IMAGENET_VAL_BY_CLASS]; GEIRHOS16_ROOT [./dataset/geirhos16];
#                      GEIRHOS16_ARGS: more make_geirhos16_dataset.py flags (--per_category ...)
#   STIMULI            [./dataset/cue-conflict/style-transfer-preprocessed-512]
#                      (bash scripts/download_cue_conflict.sh)
#   SHAPE_NITER [PROBE_NITER]; SHAPE_ARGS: more test_shape_bias.py flags
#   PYTHON             [python]
set -euo pipefail

prog=run_study.sh
REPO="$(cd "$(dirname "$0")/.." && pwd)"
SMOKE=${SMOKE:-0}
PYTHON=${PYTHON:-python}

die() { echo "$prog: $*" >&2; exit 2; }

if [ "$SMOKE" = 1 ]; then
  SMOKE_ROOT=${SMOKE_ROOT:-./study_smoke}
  SMOKE_DATA="$SMOKE_ROOT/data"
  IMAGENET_ROOT=${IMAGENET_ROOT:-$SMOKE_DATA/imagenet}
  IMAGENET_TEST=${IMAGENET_TEST:-$IMAGENET_ROOT/val}
  STYLE_DIR=${STYLE_DIR:-$SMOKE_DATA/styles}
  ADAIN_VGG=${ADAIN_VGG:-$SMOKE_DATA/adain/vgg_normalised.pth}
  ADAIN_DECODER=${ADAIN_DECODER:-$SMOKE_DATA/adain/decoder.pth}
  STYLIZE_ARGS=${STYLIZE_ARGS:---content_size 40 --style_size 64 --batch_size 8 --num_threads 0}
  COCO_SRC=${COCO_SRC:-$SMOKE_DATA/coco}
  STYLIZED_ROOT=${STYLIZED_ROOT:-$SMOKE_ROOT/stylized}
  COCO_ROOT=${COCO_ROOT:-$SMOKE_ROOT/coco2017}
  CHECKPOINTS_DIR=${CHECKPOINTS_DIR:-$SMOKE_ROOT/checkpoints}
  CHECKPOINTS_DIR_PRETRAINED=${CHECKPOINTS_DIR_PRETRAINED:-$SMOKE_ROOT/checkpoints}
  CHECKPOINTS_DIR_STYLIZED=${CHECKPOINTS_DIR_STYLIZED:-$SMOKE_ROOT/checkpoints_stylized}
  CHECKPOINTS_DIR_COCO=${CHECKPOINTS_DIR_COCO:-$SMOKE_ROOT/checkpoints_coco}
  RESULTS_DIR=${RESULTS_DIR:-$SMOKE_ROOT/results}
  PROBES_DIR=${PROBES_DIR:-$SMOKE_ROOT/probes}
  GPU_IDS=${GPU_IDS:--1}
  NITER_1=${NITER_1:-1}; NITER_2=${NITER_2:-1}; NITER_3=${NITER_3:-1}; NITER_4=${NITER_4:-1}
  COCO_NITER_1=${COCO_NITER_1:-1}
  MAX_DATASET_SIZE=${MAX_DATASET_SIZE:-2}  # one step of 2 images per phase
  TRAIN_ARGS=${TRAIN_ARGS:---loadSize 40 --fineSize 32 --batch_size 2 --num_threads 0 --no_html --print_freq 100}
  HOW_MANY=${HOW_MANY:-1}; SWEEP_HOW_MANY=${SWEEP_HOW_MANY:-1}
  TEST_ARGS=${TEST_ARGS:---loadSize 32 --num_threads 0}
  SWEEP_ARGS=${SWEEP_ARGS:---loadSize 32 --num_threads 0}
  PROBE_NITER=${PROBE_NITER:-2}; PROBE_MAX_DATASET_SIZE=${PROBE_MAX_DATASET_SIZE:-12}
  PROBE_ARGS=${PROBE_ARGS:---loadSize 40 --fineSize 32 --num_threads 0 --batch_size 12}
  GEIRHOS16_SRC=${GEIRHOS16_SRC:-$SMOKE_DATA/ilsvrc16}
  GEIRHOS16_VAL_BY_CLASS=${GEIRHOS16_VAL_BY_CLASS:-$SMOKE_DATA/ilsvrc16/val_by_class}
  GEIRHOS16_ROOT=${GEIRHOS16_ROOT:-$SMOKE_ROOT/geirhos16}
  STIMULI=${STIMULI:-$SMOKE_DATA/cue_conflict/style-transfer-preprocessed-512}
  SHAPE_ARGS=${SHAPE_ARGS:---loadSize 40 --fineSize 32 --num_threads 0 --batch_size 16}
  # Tensors this small gain nothing from a second thread, and threads that wait for each other on
  # shared cores (CI) made the smoke run twice as slow (measured: 228 s instead of 108 s).
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  TRAIN_JOBS=${TRAIN_JOBS:-2}
fi

IMAGENET_SRC=${IMAGENET_SRC:-}
IMAGENET_ROOT=${IMAGENET_ROOT:-./dataset/ilsvrc2012_100}
IMAGENET_TRAIN=${IMAGENET_TRAIN:-$IMAGENET_ROOT/train}
IMAGENET_TRAIN_SMALL=${IMAGENET_TRAIN_SMALL:-$IMAGENET_ROOT/train_small}
IMAGENET_VAL=${IMAGENET_VAL:-$IMAGENET_ROOT/val}
IMAGENET_TEST=${IMAGENET_TEST:-$IMAGENET_ROOT/test}
IMAGENET_VAL_CLASSES=${IMAGENET_VAL_CLASSES:-$IMAGENET_ROOT/val_classes}
IMAGENET_VAL_BY_CLASS=${IMAGENET_VAL_BY_CLASS:-}
STYLE_DIR=${STYLE_DIR:-}
STYLIZED_ROOT=${STYLIZED_ROOT:-./dataset/stylized_imagenet100}
ADAIN_VGG=${ADAIN_VGG:-./pretrained_models/adain/vgg_normalised.pth}
ADAIN_DECODER=${ADAIN_DECODER:-./pretrained_models/adain/decoder.pth}
STYLIZE_ARGS=${STYLIZE_ARGS:---extensions JPEG jpeg jpg png --content_size 256}
COCO_SRC=${COCO_SRC:-}
COCO_ROOT=${COCO_ROOT:-./dataset/coco2017}
COCO_ARGS=${COCO_ARGS:-}
PRETRAINED=${PRETRAINED:-download}
CHECKPOINTS_DIR=${CHECKPOINTS_DIR:-./checkpoints}
CHECKPOINTS_DIR_PRETRAINED=${CHECKPOINTS_DIR_PRETRAINED:-./checkpoints}
CHECKPOINTS_DIR_STYLIZED=${CHECKPOINTS_DIR_STYLIZED:-./checkpoints_stylized}
CHECKPOINTS_DIR_COCO=${CHECKPOINTS_DIR_COCO:-./checkpoints_coco}
RESULTS_DIR=${RESULTS_DIR:-./results/study}
PROBES_DIR=${PROBES_DIR:-./linear_checkpoints/study}
MODELS=${MODELS:-pretrained saturation stylized coco}
STAGES=${STAGES:-data train eval probes shape report}
GPU_IDS=${GPU_IDS:-}
NITER_1=${NITER_1:-100}; NITER_2=${NITER_2:-15}; NITER_3=${NITER_3:-10}; NITER_4=${NITER_4:-5}
COCO_NITER_1=${COCO_NITER_1:-11}
MAX_DATASET_SIZE=${MAX_DATASET_SIZE-130000}
TRAIN_ARGS=${TRAIN_ARGS:-}
TRAIN_LAUNCHER=${TRAIN_LAUNCHER:-}
TRAIN_JOBS=${TRAIN_JOBS:-1}
HOW_MANY=${HOW_MANY:-200}; SWEEP_HOW_MANY=${SWEEP_HOW_MANY:-1000}
TEST_ARGS=${TEST_ARGS:-}; SWEEP_ARGS=${SWEEP_ARGS:-}
PROBE_NITER=${PROBE_NITER:-200}; PROBE_MAX_DATASET_SIZE=${PROBE_MAX_DATASET_SIZE-13000}
PROBE_ARGS=${PROBE_ARGS:-}
GEIRHOS16_SRC=${GEIRHOS16_SRC:-$IMAGENET_SRC}
GEIRHOS16_VAL_BY_CLASS=${GEIRHOS16_VAL_BY_CLASS:-$IMAGENET_VAL_BY_CLASS}
GEIRHOS16_ROOT=${GEIRHOS16_ROOT:-./dataset/geirhos16}
GEIRHOS16_ARGS=${GEIRHOS16_ARGS:-}
STIMULI=${STIMULI:-./dataset/cue-conflict/style-transfer-preprocessed-512}
SHAPE_NITER=${SHAPE_NITER:-$PROBE_NITER}
SHAPE_ARGS=${SHAPE_ARGS:-}
COCO_PROBE_TRAIN=${COCO_PROBE_TRAIN:-$IMAGENET_TRAIN}
COCO_PROBE_VAL=${COCO_PROBE_VAL:-$IMAGENET_VAL_CLASSES}
# The downloaded SIGGRAPH17 weights were trained with a {0,1} hint mask; the smoke's fake
# "pretrained" model is our own baseline, trained with the default 0.5.
if [ "$SMOKE" = 1 ]; then pretrained_mask_cent=0.5; else pretrained_mask_cent=0; fi

case "$PRETRAINED" in download|retrain) ;; *) die "PRETRAINED must be download or retrain (got '$PRETRAINED')" ;; esac
[[ "$TRAIN_JOBS" =~ ^[1-9][0-9]*$ ]] || die "TRAIN_JOBS must be a positive integer (got '$TRAIN_JOBS')"
for s in $STAGES; do
  case "$s" in data|train|eval|probes|shape|report) ;; *) die "unknown stage '$s' in STAGES (use data train eval probes shape report)" ;; esac
done
for m in $MODELS; do
  case "$m" in pretrained|saturation|stylized|coco) ;; *) die "unknown model '$m' in MODELS (use pretrained saturation stylized coco)" ;; esac
done
GPU=(); [ -n "$GPU_IDS" ] && GPU=(--gpu_ids "$GPU_IDS")
read -r -a STYLIZE_EXTRA <<< "$STYLIZE_ARGS"
read -r -a COCO_EXTRA <<< "$COCO_ARGS"
read -r -a TEST_EXTRA <<< "$TEST_ARGS"
read -r -a SWEEP_EXTRA <<< "$SWEEP_ARGS"
read -r -a PROBE_EXTRA <<< "$PROBE_ARGS"
read -r -a GEIRHOS16_EXTRA <<< "$GEIRHOS16_ARGS"
read -r -a SHAPE_EXTRA <<< "$SHAPE_ARGS"
PROBE_SIZE=(); [ -n "$PROBE_MAX_DATASET_SIZE" ] && PROBE_SIZE=(--max_dataset_size "$PROBE_MAX_DATASET_SIZE")

has_stage() { [[ " $STAGES " == *" $1 "* ]]; }
has_model() { [[ " $MODELS " == *" $1 "* ]]; }

# Per model: LABEL (results folder and report name), CKPT_DIR, NAME, MASK_CENT, probe data.
model_info() {
  PROBE_TRAIN=$IMAGENET_TRAIN; PROBE_VAL=$IMAGENET_VAL_CLASSES; MASK_CENT=0.5
  case "$1" in
    pretrained)
      if [ "$PRETRAINED" = download ]; then
        LABEL=pretrained; CKPT_DIR=$CHECKPOINTS_DIR_PRETRAINED; NAME=siggraph_caffemodel; MASK_CENT=$pretrained_mask_cent
      else
        LABEL=baseline; CKPT_DIR=$CHECKPOINTS_DIR; NAME=siggraph_reg2
      fi ;;
    saturation) LABEL=saturation; CKPT_DIR=$CHECKPOINTS_DIR; NAME=siggraph_reg2_sat ;;
    stylized) LABEL=stylized; CKPT_DIR=$CHECKPOINTS_DIR_STYLIZED; NAME=siggraph_reg2 ;;
    coco) LABEL=coco; CKPT_DIR=$CHECKPOINTS_DIR_COCO; NAME=siggraph_reg2
          PROBE_TRAIN=$COCO_PROBE_TRAIN; PROBE_VAL=$COCO_PROBE_VAL ;;
  esac
}

RAN=0
SUMMARY=()
# is_done OUTPUT: whether a step's output is complete. A stylized tree is complete when its
# content_style_map.json says so, an ImageNet layout when test/imgs holds the 10,000 test links;
# anything else when it exists (every tool here writes its final file last and atomically).
is_done() {
  case "$1" in
    */content_style_map.json) [ -f "$1" ] && grep -q '"finished": true' "$1" ;;
    */test/imgs) [ -d "$1" ] && [ "$(find "$1" -mindepth 1 -maxdepth 1 | wc -l)" -ge 10000 ] ;;
    *) [ -e "$1" ] ;;
  esac
}
# step WHAT OUTPUT COMMAND...: run COMMAND unless OUTPUT is done; afterwards it must be.
step() {
  local what=$1 output=$2 t0=$SECONDS; shift 2
  if is_done "$output"; then
    echo "skip $what: $output exists"
    SUMMARY+=("skipped  $what")
    return 0
  fi
  echo "==== $what ===="
  "$@"
  is_done "$output" || { echo "$prog: $what finished but $output is missing or incomplete" >&2; exit 1; }
  RAN=1
  SUMMARY+=("ran      $what ($((SECONDS - t0)) s)")
}

# parallel N FUNCTION...: run the functions (each a series of steps) as background jobs, at most
# N at a time; then print each one's log in order and take over its summary lines. Fails, after
# all have finished, if one of them did.
parallel() {
  local n=$1 logs f failed=() line; shift
  logs=$(mktemp -d)
  for f in "$@"; do
    while [ "$(jobs -rp | wc -l)" -ge "$n" ]; do wait -n || true; done
    ( SUMMARY=(); RAN=0; "$f"; printf '%s\n' ${SUMMARY[@]+"${SUMMARY[@]}"} > "$logs/$f.summary"
      echo "$RAN" > "$logs/$f.ran" ) > "$logs/$f.log" 2>&1 &
  done
  wait || true
  for f in "$@"; do
    echo "---- job $f ----"
    cat "$logs/$f.log"
    if [ -f "$logs/$f.ran" ]; then
      while IFS= read -r line; do [ -n "$line" ] && SUMMARY+=("$line"); done < "$logs/$f.summary"
      [ "$(cat "$logs/$f.ran")" = 1 ] && RAN=1
    else
      failed+=("$f")
    fi
  done
  rm -rf "$logs"
  [ ${#failed[@]} -eq 0 ] || { echo "$prog: failed: ${failed[*]}" >&2; exit 1; }
}

# queue WHAT OUTPUT SCRIPT ARGS...: like step for one of the repository's Python scripts, but it
# runs at the next flush, in one Python process with the other queued ones
# (scripts/run_entry_points.py; this saves the seconds that importing torch takes per process).
QUEUE=()
QUEUED=()
queue() {
  local what=$1 output=$2; shift 2
  if is_done "$output"; then
    echo "skip $what: $output exists"
    SUMMARY+=("skipped  $what")
    return 0
  fi
  [ ${#QUEUE[@]} -gt 0 ] && QUEUE+=(":::")
  QUEUE+=("$@")
  QUEUED+=("$what"$'\t'"$output")
}
flush() {
  [ ${#QUEUED[@]} -gt 0 ] || return 0
  local t0=$SECONDS entry what output
  echo "==== ${#QUEUED[@]} step(s) in one process: $(printf '%s, ' "${QUEUED[@]%%$'\t'*}" | sed 's/, $//') ===="
  "$PYTHON" "$REPO/scripts/run_entry_points.py" "${QUEUE[@]}"
  for entry in "${QUEUED[@]}"; do
    what=${entry%%$'\t'*}; output=${entry#*$'\t'}
    is_done "$output" || { echo "$prog: $what finished but $output is missing or incomplete" >&2; exit 1; }
    SUMMARY+=("ran      $what")
  done
  SUMMARY+=("         (the ${#QUEUED[@]} step(s) above: $((SECONDS - t0)) s)")
  RAN=1
  QUEUE=()
  QUEUED=()
}

# link_classes SRC_ROOT CLASS_LIST_DIR DEST: DEST/<c> -> SRC_ROOT/<c> for every folder c of CLASS_LIST_DIR.
link_classes() {
  local src=$1 classes=$2 dest=$3 d c target
  mkdir -p "$dest.partial"
  for d in "$classes"/*/; do
    c=$(basename "$d")
    [ -d "$src/$c" ] || die "$src/$c not found (needed for $dest/$c)"
    target="$(cd "$src/$c" && pwd -P)"
    if [ ! -L "$dest.partial/$c" ]; then ln -s "$target" "$dest.partial/$c"; fi
  done
  mv "$dest.partial" "$dest"  # the folder appears complete or not at all
}

stage_data() {
  if [ "$SMOKE" = 1 ]; then
    queue "smoke data" "$SMOKE_DATA/smoke_data.txt" scripts/make_study_smoke_data.py --out_path "$SMOKE_DATA"
  fi
  if [ -n "$IMAGENET_SRC" ]; then
    queue "ImageNet-100" "$IMAGENET_ROOT/test/imgs" make_ilsvrc_dataset.py --in_path "$IMAGENET_SRC" \
      --out_path "$IMAGENET_ROOT" --num_classes 100
  fi
  if has_model stylized && [ -n "$STYLE_DIR" ]; then
    queue "Stylized-ImageNet-100" "$STYLIZED_ROOT/train/content_style_map.json" make_stylized_dataset.py \
      --content_dir "$IMAGENET_TRAIN" --style_dir "$STYLE_DIR" --output_dir "$STYLIZED_ROOT/train" \
      --vgg "$ADAIN_VGG" --decoder "$ADAIN_DECODER" ${GPU[@]+"${GPU[@]}"} ${STYLIZE_EXTRA[@]+"${STYLIZE_EXTRA[@]}"}
  fi
  if has_model coco && [ -n "$COCO_SRC" ]; then
    queue "COCO 2017" "$COCO_ROOT/manifest.csv" make_coco_dataset.py --coco_root "$COCO_SRC" \
      --out_path "$COCO_ROOT" ${COCO_EXTRA[@]+"${COCO_EXTRA[@]}"}
  fi
  if has_stage shape && [ -n "$GEIRHOS16_SRC" ] && [ -n "$GEIRHOS16_VAL_BY_CLASS" ]; then
    queue "16-class data" "$GEIRHOS16_ROOT/layout.json" make_geirhos16_dataset.py --in_path "$GEIRHOS16_SRC" \
      --val_by_class "$GEIRHOS16_VAL_BY_CLASS" --out_path "$GEIRHOS16_ROOT" ${GEIRHOS16_EXTRA[@]+"${GEIRHOS16_EXTRA[@]}"}
  fi
  flush
  if [ -n "$IMAGENET_VAL_BY_CLASS" ]; then
    step "ImageNet-100 val_classes" "$IMAGENET_VAL_CLASSES" link_classes "$IMAGENET_VAL_BY_CLASS" "$IMAGENET_TRAIN" "$IMAGENET_VAL_CLASSES"
  fi
  if has_model stylized && [ -n "$STYLE_DIR" ]; then
    step "Stylized-ImageNet-100 train_small" "$STYLIZED_ROOT/train_small" \
      link_classes "$STYLIZED_ROOT/train" "$IMAGENET_TRAIN_SMALL" "$STYLIZED_ROOT/train_small"
  fi
}

# recipe VARIANT CKPT_DIR DATAROOT DATAROOT_SMALL NITER_1: train_siggraph.sh from the first phase whose
# final epoch file is missing (phases 1-2 are shared by the baseline and saturation variants).
recipe() {
  local variant=$1 dir=$2 data=$3 small=$4 niter1=$5 sfx="" start=5 p
  [ "$variant" = saturation ] && sfx=_sat
  local names=(siggraph_class_small siggraph_class "siggraph_reg$sfx" "siggraph_reg2$sfx")
  local niters=("$niter1" "$NITER_2" "$NITER_3" "$NITER_4")
  for p in 4 3 2 1; do
    [ -f "$dir/${names[p-1]}/$((niters[p-1] - 1))_net_G.pth" ] || start=$p
  done
  echo "starting at phase $start"
  PYTHON="$PYTHON" DATAROOT="$data" DATAROOT_SMALL="$small" CHECKPOINTS_DIR="$dir" GPU_IDS="$GPU_IDS" \
  MAX_DATASET_SIZE="$MAX_DATASET_SIZE" VARIANT="$variant" START_PHASE="$start" NITER_1="$niter1" \
  NITER_2="$NITER_2" NITER_3="$NITER_3" NITER_4="$NITER_4" EXTRA_ARGS="$TRAIN_ARGS" NAME_PREFIX="" \
  TRAIN_LAUNCHER="$TRAIN_LAUNCHER" bash "$REPO/scripts/train_siggraph.sh"
}

pretrained_weights() {
  local dest="$CHECKPOINTS_DIR_PRETRAINED/siggraph_caffemodel/latest_net_G.pth"
  if [ "$SMOKE" = 1 ]; then
    local from="$CHECKPOINTS_DIR/siggraph_class/latest_net_G.pth"
    [ -f "$from" ] || die "SMOKE: the fake pretrained model is a copy of $from; train the saturation model first (MODELS)"
    echo "SMOKE: no download possible here; the 'pretrained' model is a copy of the smoke baseline's phase-2 weights ($from)"
    mkdir -p "$(dirname "$dest")"
    cp "$from" "$dest"
  elif [ "$(realpath -m "$CHECKPOINTS_DIR_PRETRAINED")" = "$(realpath -m ./checkpoints)" ]; then  # where it downloads to
    bash "$REPO/pretrained_models/download_siggraph_model.sh"
  else
    die "$dest is missing: run 'bash pretrained_models/download_siggraph_model.sh' and copy checkpoints/siggraph_caffemodel there"
  fi
}

# final DIR NAME NITER: the file saved at the end of a phase's last epoch.
final() { echo "$1/$2/$(($3 - 1))_net_G.pth"; }

# The training jobs: the ImageNet-100 models share the classification phases, so they train in
# one job, one after the other.
train_imagenet() {
  if has_model pretrained && [ "$PRETRAINED" = retrain ]; then
    step "train baseline" "$(final "$CHECKPOINTS_DIR" siggraph_reg2 "$NITER_4")" \
      recipe baseline "$CHECKPOINTS_DIR" "$IMAGENET_TRAIN" "$IMAGENET_TRAIN_SMALL" "$NITER_1"
  fi
  if has_model saturation; then
    step "train saturation" "$(final "$CHECKPOINTS_DIR" siggraph_reg2_sat "$NITER_4")" \
      recipe saturation "$CHECKPOINTS_DIR" "$IMAGENET_TRAIN" "$IMAGENET_TRAIN_SMALL" "$NITER_1"
  fi
  if has_model pretrained && [ "$PRETRAINED" = download ]; then
    step "pretrained weights" "$CHECKPOINTS_DIR_PRETRAINED/siggraph_caffemodel/latest_net_G.pth" pretrained_weights
  fi
}
train_stylized() {
  step "train stylized" "$(final "$CHECKPOINTS_DIR_STYLIZED" siggraph_reg2 "$NITER_4")" \
    recipe baseline "$CHECKPOINTS_DIR_STYLIZED" "$STYLIZED_ROOT/train" "$STYLIZED_ROOT/train_small" "$NITER_1"
}
train_coco() {
  step "train coco" "$(final "$CHECKPOINTS_DIR_COCO" siggraph_reg2 "$NITER_4")" \
    recipe baseline "$CHECKPOINTS_DIR_COCO" "$COCO_ROOT/train" "$COCO_ROOT/train" "$COCO_NITER_1"
}

stage_train() {
  local jobs=(train_imagenet) f
  has_model stylized && jobs+=(train_stylized)
  has_model coco && jobs+=(train_coco)
  if [ "$TRAIN_JOBS" -gt 1 ] && [ ${#jobs[@]} -gt 1 ]; then
    parallel "$TRAIN_JOBS" "${jobs[@]}"
  else
    for f in "${jobs[@]}"; do "$f"; done
  fi
}

stage_eval() {
  local m
  for m in $MODELS; do
    model_info "$m"
    local common=(--name "$NAME" --checkpoints_dir "$CKPT_DIR" --mask_cent "$MASK_CENT" --results_dir "$RESULTS_DIR/$LABEL" ${GPU[@]+"${GPU[@]}"})
    queue "test $LABEL" "$RESULTS_DIR/$LABEL/$NAME/val_latest/metrics.json" \
      test.py "${common[@]}" --dataroot "$IMAGENET_VAL" --how_many "$HOW_MANY" ${TEST_EXTRA[@]+"${TEST_EXTRA[@]}"}
    queue "sweep $LABEL" "$RESULTS_DIR/$LABEL/$NAME/sweep_latest/sweep.csv" \
      test_sweep.py "${common[@]}" --dataroot "$IMAGENET_TEST" --how_many "$SWEEP_HOW_MANY" ${SWEEP_EXTRA[@]+"${SWEEP_EXTRA[@]}"}
  done
  has_stage probes || flush  # otherwise the probes join the same process
}

stage_probes() {
  local m
  for m in $MODELS; do
    model_info "$m"
    queue "probes $LABEL" "$PROBES_DIR/$LABEL/results.json" \
      train_linear_classifiers.py --name "$NAME" --checkpoints_dir "$CKPT_DIR" --mask_cent "$MASK_CENT" \
      --dataroot "$PROBE_TRAIN" --dataroot_validation "$PROBE_VAL" --linear_checkpoints "$PROBES_DIR/$LABEL" \
      --niter "$PROBE_NITER" ${PROBE_SIZE[@]+"${PROBE_SIZE[@]}"} ${GPU[@]+"${GPU[@]}"} ${PROBE_EXTRA[@]+"${PROBE_EXTRA[@]}"}
  done
  has_stage shape || flush  # otherwise the shape-bias runs join the same process
}

# The shape bias of every model (docs/shape_bias.md); skipped, with one line, without its inputs.
stage_shape() {
  local m
  if [ ! -d "$STIMULI" ]; then
    echo "skip shape bias: no cue-conflict stimuli at $STIMULI (bash scripts/download_cue_conflict.sh)"
  elif [ ! -d "$GEIRHOS16_ROOT/train" ]; then
    echo "skip shape bias: no 16-class data at $GEIRHOS16_ROOT (set GEIRHOS16_SRC and GEIRHOS16_VAL_BY_CLASS)"
  else
    for m in $MODELS; do
      model_info "$m"
      queue "shape $LABEL" "$RESULTS_DIR/$LABEL/$NAME/shape_bias/shape_bias.json" \
        test_shape_bias.py --name "$NAME" --checkpoints_dir "$CKPT_DIR" --mask_cent "$MASK_CENT" \
        --dataroot "$GEIRHOS16_ROOT/train" --dataroot_validation "$GEIRHOS16_ROOT/val" --stimuli "$STIMULI" \
        --results_dir "$RESULTS_DIR/$LABEL" --niter "$SHAPE_NITER" ${GPU[@]+"${GPU[@]}"} ${SHAPE_EXTRA[@]+"${SHAPE_EXTRA[@]}"}
    done
  fi
  flush
}

stage_report() {
  local m names=() probes=() report="$RESULTS_DIR/comparison/index.html"
  for m in $MODELS; do
    model_info "$m"
    names+=("$LABEL=$LABEL/$NAME")
    probes+=("$LABEL=$PROBES_DIR/$LABEL")
  done
  [ "$RAN" = 1 ] && rm -f "$report"  # something changed: write it again
  step "report" "$report" "$PYTHON" "$REPO/compare_models.py" --names "${names[@]}" --results_dir "$RESULTS_DIR" \
    --probes "${probes[@]}" --out "$RESULTS_DIR/comparison"
}

start=$SECONDS
for s in data train eval probes shape report; do
  has_stage "$s" && "stage_$s"
done
echo
[ "$SMOKE" = 1 ] && mode=" (SMOKE=1: tiny data, random AdaIN weights, fake pretrained model)" || mode=""
echo "study finished in $((SECONDS - start)) s$mode:"
printf '  %s\n' ${SUMMARY[@]+"${SUMMARY[@]}"}
if has_stage report; then echo "report: $RESULTS_DIR/comparison/index.html"; fi
