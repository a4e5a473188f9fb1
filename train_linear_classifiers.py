"""Linear classifiers on the frozen conv1..conv5 features of a colorization model.

    python train_linear_classifiers.py --name siggraph_caffemodel --mask_cent 0 \
        --dataroot ./dataset/ilsvrc2012/train --dataroot_validation ./dataset/ilsvrc2012/val100 \
        --linear_checkpoints ./linear_checkpoints/pretrained --train_subset 13000 --niter 200

How well do the colorization features generalise to object recognition? One linear classifier per
block output of the generator <checkpoints_dir>/<name>/<which_epoch>_net_G.pth, frozen and in eval
mode (BatchNorm running statistics), fed the L channel with no hints (hint ab 0, mask -mask_cent;
--mask_cent 0 for the caffemodel weights). conv1..conv5 are the outputs of blocks model1..model5
after their BatchNorm (conv1_2, conv2_2, conv3_3, conv4_3, conv5_3). Images that are nearly
grayscale (ab range < 5) are dropped together with their labels and counted. Classes are the
sub-folders of --dataroot; --dataroot_validation must have the same ones (<val>/<class>/<image>).

Two protocols (--protocol):

corrected (default)
  * Features: each block output is average-pooled straight to a fixed grid (adaptive pooling, every
    pixel counts) and flattened: conv1 64x12x12 = 9216, conv2 128x9x8 = 9216, conv3 256x6x6 = 9216,
    conv4 512x4x4 = 8192, conv5 512x4x4 = 8192 dimensions, the fork's sizes (~9k per layer, as in
    Zhang et al. and Goyal et al.).
  * Views: training images go through the original's random training pipeline (random resize,
    RandomResizedCrop(fineSize), flip) with a fixed seed, --train_augment views per image (default
    1); validation images are resized (shorter side to loadSize) and centre-cropped to fineSize.
  * Features are extracted once and cached in --cache_dir (default <linear_checkpoints>/
    feature_cache) as bfloat16 by default (half the size of float32, the range of float32; the
    heads standardise and compute in float32; on the quickstart data and model every layer's top-1
    was identical with --cache_dtype float32). A cache
    file is keyed by the checkpoint's SHA-1, the folder's file list (paths, sizes, mtimes), the
    image subset, the transform and its seed, the layer set, mask_cent and the dtype; a rerun with
    the same key does not run the backbone. --no_cache neither reads nor writes the cache.
  * Heads: per layer, standardisation with the training features' per-dimension mean and std
    (a non-affine BatchNorm frozen at the training statistics), then Linear -> logits ->
    CrossEntropy. All layers train together (one Adam, lr --lr, cosine decay over --niter epochs,
    minibatches of --head_batch_size, reshuffled each epoch).
  * Subsets: --train_subset / --val_subset pick one fixed, seeded subset of images whose features
    are cached (default: all; their old names --max_dataset_size / --max_dataset_size_validation
    still work).
  * Reported (results.json): top-1/top-5 and loss at the last epoch, sample-weighted. Training
    metrics are the running averages of the epoch. <layer>_best.pth is the epoch of best
    validation top-1 (best_epoch, best_val_top1), <layer>_last.pth the last one; keys mean, std,
    linear.weight, linear.bias.

fork: the JPatrick9793 fork's procedure, reproduced for comparison
  * Features pooled by avg_pool2d(kernel = stride = 32, 16, 16, 8, 8) and then bilinearly
    upsampled (align_corners) to the same grids, so at 176 px they carry 5x5, 5x5, 2x2, 2x2, 2x2
    independent values per channel; crops must be >= 64 px.
  * The backbone runs every epoch; random training transforms on validation too; each epoch a
    fresh random subset of ceil(max_dataset_size / batch_size) batches for training and the first
    that many validation images; one Linear + Softmax head per layer fed to CrossEntropy (a double
    softmax), one Adam(lr 1e-3) per head, heads updated one after the other on each batch.
  * Epoch metrics are means of per-batch values over a list seeded with 0.0 (the fork's slight
    downward bias); top-1 is also the fork's "F1 micro". Top-5 is an extra, averaged the same way.
  * <model_k>_best.pth (validation loss <= best so far) and <model_k>_e<epoch>.pth every epoch,
    keys 0.weight (num_classes x D) and 0.bias.
  * Deviations: the class count comes from the folder (the fork hard-coded 100); grayscale images
    are dropped with their labels instead of skipping the whole batch; randomness is seeded.

Speed (both protocols, off by default): --amp, --channels_last and --compile apply to the frozen
backbone as in train.py (util/perf.py). Its block outputs are cast to float32 before pooling, so
pooling and the heads compute in float32 (the cache stores --cache_dtype as always). --amp is part
of the feature cache key; the other two compute the same float32 features up to rounding and are not.

Outputs in --linear_checkpoints: opt.txt, log.jsonl (one line per epoch: lr and, per layer,
train/val loss, top-1, top-5), TensorBoard scalars in tensorboard/ when tensorboard is installed,
the head checkpoints, results.json ({"layers": {"conv1": {"val_top1", "val_top5", "train_top1", ...}},
"protocol", "num_classes", ...}), accuracy_by_layer.png and, when files were skipped,
skipped_images.txt. Every result file is written atomically.

Bad inputs: unreadable images (data.datasets.load_rgb) are skipped with one warning each, counted in
results.json ("unreadable_dropped", per split) and listed at the end; the feature cache remembers
them, so a cached rerun reports the same files. The generator checkpoint and the feature cache are
read with weights_only=True: a checkpoint that cannot be read, does not fit or would run code when
unpickled is a one-line error (exit 2); such a cache file is ignored with a one-line warning and
the features are extracted again. Errors are one line on stderr: exit 2 for bad inputs, 1 when an
output file cannot be written.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from data.datasets import SkipLog
from evaluation.feature_cache import CACHE_DTYPES
from evaluation.probe_results import print_results
from evaluation.probes import ProbeError, generator_path, load_trunk, probe_datasets, train_and_record
from models import probes
from options import flags
from util.checkpoint import CheckpointError
from util.runtime import resolve_device, save_options, seed_everything


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] + " (see the module docstring)",
                                     formatter_class=flags.HelpFormatter)
    model = parser.add_argument_group("the colorization model")
    flags.add_checkpoint_flags(model)
    flags.add_flags(model, "mask_cent")
    # the fork's flags
    parser.add_argument("--linear_checkpoints", required=True, help="output folder of the probes")
    parser.add_argument("--dataroot", default="./dataset/ilsvrc2012/train", help="training images, <root>/<class>/<img>")
    parser.add_argument("--dataroot_validation", required=True, help="validation images, <root>/<class>/<img>")
    add_subset_flags(parser)
    parser.add_argument("--niter", type=int, default=200, help="epochs")
    flags.add_flags(parser, "gpu_ids")
    loading = parser.add_argument_group("loading", "--batch_size: images per backbone batch; under --protocol fork "
                                                   "also per head\nupdate (corrected: --head_batch_size)")
    flags.add_loader_flags(loading)
    # ours
    parser.add_argument("--protocol", choices=["corrected", "fork"], default="corrected", help="see above")
    parser.add_argument("--layers", nargs="+", choices=probes.LAYERS, default=list(probes.LAYERS),
                        help="layers to probe")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of the heads")
    flags.add_flags(parser, "seed")
    flags.add_size_flags(parser.add_argument_group(
        "image sizes", "training views: the original's random training resize, then RandomResizedCrop(--fineSize)\n"
                       "and a flip; validation views: shorter side to --loadSize, centre crop to --fineSize.\n"
                       "--fineSize is at least 8 (--protocol fork: at least 64)"))
    parser.add_argument("--train_augment", type=int, default=1,
                        help="corrected: random training views cached per image")
    parser.add_argument("--head_batch_size", type=int, default=256, help="corrected: samples per head update")
    parser.add_argument("--no_cache", action="store_true", help="corrected: neither read nor write the feature cache")
    parser.add_argument("--cache_dir", default=None, help="corrected: default <linear_checkpoints>/feature_cache")
    parser.add_argument("--cache_dtype", choices=sorted(CACHE_DTYPES), default="bfloat16",
                        help="corrected: precision of the cached features")
    flags.add_speed_flags(parser.add_argument_group(
        "speed", "of the frozen backbone, both protocols: its outputs are cast to float32 before pooling and the\n"
                 "heads stay float32. --amp is part of the feature cache key; --channels_last and --compile are\n"
                 "not (the same float32 features up to rounding)"))
    return parser


def add_subset_flags(parser: argparse.ArgumentParser) -> None:
    """How many images the probes use. --max_dataset_size keeps train.py's meaning (a fresh random
    subset each epoch) for the fork; the corrected protocol's fixed subsets have their own names."""
    parser.add_argument("--train_subset", type=int, default=None,
                        help="corrected: one fixed, seeded subset of this many training images, whose features "
                             "are cached (default: all)")
    parser.add_argument("--val_subset", "--max_dataset_size_validation", dest="val_subset", type=int, default=None,
                        help="corrected: one fixed, seeded subset of this many validation images (default: all); "
                             "fork: ignored, see --max_dataset_size. --max_dataset_size_validation is its old name")
    parser.add_argument("--max_dataset_size", type=int, default=None,
                        help="fork: this many training images per epoch, a fresh random subset rounded up to whole "
                             "batches, and the first that many validation images, as the fork did (default: all). "
                             "Under --protocol corrected: the old name of --train_subset")


def check_subsets(opt: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Map the old spelling --max_dataset_size onto --train_subset under --protocol corrected."""
    for flag in ("train_subset", "val_subset", "max_dataset_size"):
        if getattr(opt, flag) is not None and getattr(opt, flag) < 1:
            parser.error(f"--{flag} must be at least 1")
    if opt.protocol == "fork" and opt.train_subset is not None:
        parser.error("--train_subset applies to --protocol corrected only (the fork's is --max_dataset_size)")
    if opt.protocol == "corrected" and opt.max_dataset_size is not None:
        if opt.train_subset is not None:
            parser.error("--max_dataset_size is the old name of --train_subset under --protocol corrected; give one")
        opt.train_subset, opt.max_dataset_size = opt.max_dataset_size, None


def parse(argv: Optional[Sequence[str]] = None):
    parser = build_parser()
    opt = parser.parse_args(argv)
    opt.layers = [layer for layer in probes.LAYERS if layer in opt.layers]
    for flag in ("niter", "batch_size", "head_batch_size", "train_augment", "loadSize", "fineSize"):
        if getattr(opt, flag) < 1:
            parser.error(f"--{flag} must be at least 1")
    check_subsets(opt, parser)
    if opt.num_threads < 0:
        parser.error("--num_threads must be >= 0")
    if opt.fineSize < 8:
        parser.error("--fineSize must be at least 8 (conv4 and conv5 are at 1/8 resolution)")
    if opt.fineSize > opt.loadSize:
        parser.error(f"--fineSize {opt.fineSize} is larger than --loadSize {opt.loadSize}")
    if opt.protocol == "fork":
        if opt.fineSize < probes.min_fork_size():
            parser.error(f"--protocol fork needs --fineSize >= {probes.min_fork_size()} "
                         "(its pooling kernels are 32, 16, 16, 8, 8 at strides 1, 2, 4, 8, 8)")
        if opt.train_augment != 1:
            parser.error("--train_augment applies to --protocol corrected only")
    if opt.cache_dir is None:
        opt.cache_dir = os.path.join(opt.linear_checkpoints, "feature_cache")
    return opt, parser


def run(opt, parser) -> int:
    """Wire the engine (evaluation/probes.py) to the options, then report; returns the exit code."""
    device = resolve_device(opt.gpu_ids)
    seed_everything(opt.seed)
    train_set, val_set = probe_datasets(opt)
    ckpt_path = generator_path(opt)
    trunk = load_trunk(opt, ckpt_path, device)

    os.makedirs(opt.linear_checkpoints, exist_ok=True)
    save_options(opt, parser, opt.linear_checkpoints)
    print(f"probing {opt.layers} of {ckpt_path} ({opt.protocol} protocol, {len(train_set.classes)} classes, "
          f"{len(train_set)} training and {len(val_set)} validation images, {device})")
    skip_log = SkipLog()
    results, path = train_and_record(opt, train_set, val_set, trunk, device, ckpt_path, skip_log)
    print_results(results, path)
    skip_log.report(opt.linear_checkpoints)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    opt, parser = parse(argv)
    try:
        return run(opt, parser)
    except (ProbeError, CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a read-only or full output folder: files already there stay whole (atomic writes)
        print(f"error: cannot write to {opt.linear_checkpoints}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
