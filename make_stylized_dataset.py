#!/usr/bin/env python
"""Stylize an image dataset with AdaIN, as bethgelab/stylize-datasets does (Stylized-ImageNet).

    bash pretrained_models/download_adain_models.sh          # the two weight files, once
    python make_stylized_dataset.py --content_dir ./dataset/ilsvrc2012_100/train \\
        --style_dir ./dataset/painter_by_numbers/train --output_dir ./dataset/stylized_imagenet100/train \\
        --extensions JPEG jpg --content_size 256

The output tree mirrors --content_dir; a rerun resumes. The outputs, and what is the same as
stylize-datasets and what differs: docs/datasets.md.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

import torch

from models.adain import AdaIN, resolve_weight_path
from options import flags
from util.checkpoint import CheckpointError
from util.runtime import resolve_device
from dataset_builders.stylize import DEFAULT_EXTENSIONS, Settings, StylizeError, find_files, stylize_folder

DEFAULT_VGG = "./pretrained_models/adain/vgg_normalised.pth"
DEFAULT_DECODER = "./pretrained_models/adain/decoder.pth"
DOWNLOAD_HINT = "run 'bash pretrained_models/download_adain_models.sh' or pass --vgg/--decoder"


def _flag(parser: argparse.ArgumentParser, name: str, **kwargs) -> None:
    """--name, plus stylize-datasets' dashed spelling as an alias when it differs."""
    names = ["--" + name] + (["--" + name.replace("_", "-")] if "_" in name else [])
    parser.add_argument(*names, dest=name, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="make_stylized_dataset.py", description=__doc__,
                                     formatter_class=flags.HelpFormatter)
    _flag(parser, "content_dir", required=True, help="root of the images to stylize (searched recursively)")
    _flag(parser, "style_dir", required=True, help="root of the style images (searched recursively)")
    _flag(parser, "output_dir", default="output", help="where the mirrored tree is written (default: %(default)s)")
    _flag(parser, "vgg", default=DEFAULT_VGG, help="encoder weights (default: %(default)s)")
    _flag(parser, "decoder", default=DEFAULT_DECODER, help="decoder weights (default: %(default)s)")
    _flag(parser, "num_styles", type=int, default=1, help="distinct styles per content image (default: %(default)s)")
    _flag(parser, "alpha", type=float, default=1.0,
          help="stylization strength in [0, 1]; 0 decodes the content's own features (default: %(default)s)")
    _flag(parser, "content_size", type=int, default=0,
          help="shorter side of the content in px before --crop; 0 keeps the size (default: %(default)s)")
    _flag(parser, "style_size", type=int, default=512,
          help="shorter side of the style in px; 0 keeps the size (default: %(default)s)")
    _flag(parser, "crop", type=int, default=0, help="centre crop of the content in px after resizing; 0: none")
    flags.add_flags(parser, "seed")
    _flag(parser, "extensions", nargs="+", default=list(DEFAULT_EXTENSIONS),
          help="file suffixes without the dot, case-sensitive, for contents and styles (default: %(default)s)")
    flags.add_loader_flags(parser.add_argument_group(
        "loading", "--batch_size: (content, style) pairs per decoder call"), dashed=True)
    # The stylizer's own defaults (dataset_builders.stylize.Settings), not the colorization model's.
    parser.set_defaults(batch_size=Settings.batch_size, num_threads=Settings.num_workers)
    flags.add_device_flags(parser, dashed=True)
    return parser


def parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0.0 <= args.alpha <= 1.0:
        parser.error(f"--alpha must be between 0 and 1 (got {args.alpha:g})")
    for name in ("num_styles", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    for name in ("content_size", "style_size", "crop", "num_threads"):
        if getattr(args, name) < 0:
            parser.error(f"--{name} must not be negative")
    if os.path.isdir(args.style_dir):
        available = len(find_files(args.style_dir, args.extensions))
        if args.num_styles > available:
            parser.error(f"--num_styles {args.num_styles} is more than the {available} style image(s) in "
                         f"{args.style_dir} (extensions, case-sensitive: {' '.join(args.extensions)})")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse(argv)
    weights = []
    for flag, path in (("--vgg", args.vgg), ("--decoder", args.decoder)):
        resolved = resolve_weight_path(path)
        if not os.path.isfile(resolved):
            print(f"error: AdaIN weights not found: {path} ({flag}); {DOWNLOAD_HINT}", file=sys.stderr)
            return 2
        weights.append(resolved)
    device = resolve_device(args.gpu_ids)
    try:
        model = AdaIN.from_files(*weights).to(device)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if device.type == "cuda" and args.crop:
        torch.backends.cudnn.benchmark = True  # every batch has the same shape
    settings = Settings(alpha=args.alpha, content_size=args.content_size, style_size=args.style_size, crop=args.crop,
                        seed=args.seed, num_styles=args.num_styles, batch_size=args.batch_size,
                        num_workers=args.num_threads)
    print(f"stylizing {args.content_dir} with {args.style_dir} -> {args.output_dir} on {device} "
          f"(weights {weights[0]}, {weights[1]})")
    try:
        report = stylize_folder(model, device, args.content_dir, args.style_dir, args.output_dir, settings,
                                extensions=args.extensions)
    except StylizeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except torch.cuda.OutOfMemoryError:
        print(f"error: out of GPU memory at --batch_size {args.batch_size}; rerun with a smaller one "
              "(finished outputs are kept)", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: could not write to {args.output_dir}: {e}", file=sys.stderr)
        return 1
    print(f"done: {report.summary()}")
    if report.skipped_contents or report.skipped_styles:
        print(f"skipped images are listed in {os.path.join(args.output_dir, 'skipped_imgs.txt')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
