r"""Linear classifiers on the frozen conv1..conv5 features of a colorization model.

    python train_linear_classifiers.py --name siggraph_caffemodel --mask_cent 0 \
        --dataroot ./dataset/ilsvrc2012/train --dataroot_validation ./dataset/ilsvrc2012/val_classes \
        --linear_checkpoints ./linear_checkpoints/pretrained --train_subset 13000 --niter 200

Two protocols (--protocol): the corrected one (default; features pooled to ~9k dimensions and
cached on disk, standardised linear heads) and the fork's, reproduced for comparison. Both, their
outputs and the feature cache: docs/probes.md. The engine is evaluation/probes.py.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from data.datasets import SkipLog
from evaluation.feature_cache import CACHE_DTYPES
from evaluation.probe_results import print_results
from evaluation.probes import ProbeError, check_sizes, set_up, train_and_record
from models import probes
from options import flags
from util.checkpoint import CheckpointError
from util.runtime import save_options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
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
    check_sizes(opt, parser.error, ("niter", "batch_size", "head_batch_size", "train_augment", "loadSize",
                                    "fineSize"))
    check_subsets(opt, parser)
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
    device, train_set, val_set, ckpt_path, trunk = set_up(opt)
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
