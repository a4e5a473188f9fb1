"""The flags that choose and run the model in colorize.py and app.py, declared once for both (the
flags themselves come from options/flags.py), and the Colorizer they describe.

Both scripts call :func:`add_model_flags` on their parser and :func:`load_colorizer` on the parsed
options, so the same command-line settings give the same output in either.
"""
from __future__ import annotations

import argparse
import os

from inference.colorize import MAX_MEMORY_GB, MAX_SIDE, Colorizer
from models import load_generator
from options import flags
from util.runtime import resolve_device


class UsageError(Exception):
    """A wrong argument, path or file given by the user (exit status 2, message is one line)."""


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """The model (--checkpoint or --name, --checkpoints_dir, --which_epoch, --mask_cent, --norm),
    the sizes (--load_size, --max_side), the budget (--max_memory_gb), --gpu_ids and the speed flags."""
    model = parser.add_argument_group("model", "exactly one of --checkpoint and --name; --checkpoints_dir and\n"
                                               "--which_epoch only with --name")
    weights = model.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", metavar="FILE", help="generator weight file (a plain state_dict)")
    flags.add_checkpoint_flags(model, name_container=weights)
    # --name has no default (it or --checkpoint is required); None for the other two means "not
    # given", so that checkpoint_path can refuse them with --checkpoint (their help names the
    # defaults it uses otherwise).
    parser.set_defaults(name=None, checkpoints_dir=None, which_epoch=None)
    flags.add_flags(model, "mask_cent", "norm")
    sizes = parser.add_argument_group(
        "image sizes and memory", "the network input's shorter side is --load_size, the aspect ratio is kept and\n"
                                  "both sides are rounded to multiples of 8; --load_size 0: the native size (padded\n"
                                  "to a multiple of 8, then cropped back)")
    flags.add_size_flags(sizes, fine=False)
    sizes.add_argument("--max_side", type=int, default=MAX_SIDE, metavar="PX",
                       help="cap on the network input's longer side with --load_size > 0 (the shorter side "
                            "shrinks with it, keeping the aspect ratio as far as multiples of 8 allow); 0: no cap")
    sizes.add_argument("--max_memory_gb", type=float, default=MAX_MEMORY_GB, metavar="GB",
                       help="memory budget of one image, estimated before running: an image that needs more is "
                            "skipped with one line (a single file: a one-line error)")
    flags.add_device_flags(parser)
    flags.add_speed_flags(parser.add_argument_group("speed", "off by default: the fp32 eager computation"))


def checkpoint_path(opt: argparse.Namespace) -> str:
    """The weight file that --checkpoint or --name/--checkpoints_dir/--which_epoch name."""
    if opt.checkpoint is not None:
        for flag, value in (("--checkpoints_dir", opt.checkpoints_dir), ("--which_epoch", opt.which_epoch)):
            if value is not None:
                raise UsageError(f"{flag} only applies with --name, not with --checkpoint")
        return opt.checkpoint
    return os.path.join(opt.checkpoints_dir or flags.CHECKPOINTS_DIR, opt.name,
                        f"{opt.which_epoch or flags.WHICH_EPOCH}_net_G.pth")


def check_sizes(opt: argparse.Namespace) -> None:
    """UsageError for a negative --load_size or --max_side, or a budget that is not positive."""
    if opt.loadSize < 0:
        raise UsageError(f"--load_size must be >= 0 (0 = native size), got {opt.loadSize}")
    if opt.max_side < 0 or 0 < opt.max_side < 8:
        raise UsageError(f"--max_side must be 0 (no cap) or at least 8, got {opt.max_side}")
    if not opt.max_memory_gb > 0:
        raise UsageError(f"--max_memory_gb must be > 0, got {opt.max_memory_gb}")


def load_colorizer(opt: argparse.Namespace) -> Colorizer:
    """The Colorizer of parsed options. UsageError, or util.checkpoint.CheckpointError when the
    weights do not load (one-line messages)."""
    check_sizes(opt)
    weights = checkpoint_path(opt)
    device = resolve_device(opt.gpu_ids)
    net = load_generator(weights, opt.norm, device)
    return Colorizer.create(net, device, compile=opt.compile, load_size=opt.loadSize, mask_cent=opt.mask_cent,
                            max_side=opt.max_side or None, max_memory_gb=opt.max_memory_gb, amp=opt.amp,
                            channels_last=opt.channels_last)
