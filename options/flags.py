"""One declaration of every flag that several scripts share: the same names, default and help everywhere.

A script adds them with add_flags (or the named helpers) to its parser or to an argument group
whose description says what is particular to that script. Where a script needs another default it
calls parser.set_defaults with a comment saying why; tests/test_options.py lists those overrides
and fails on any other difference.
"""
from __future__ import annotations

import argparse
from typing import Dict, Optional, Tuple

CHECKPOINTS_DIR = "./checkpoints"
WHICH_EPOCH = "latest"

#: dest -> (option strings, add_argument keywords). The first option string is the name shown.
SHARED: Dict[str, Tuple[Tuple[str, ...], dict]] = {
    # device and randomness
    "gpu_ids": (("--gpu_ids",), dict(
        type=str, default=None,
        help="GPU id, e.g. 0; -1 for the CPU (default: GPU 0 when CUDA is available, else the CPU)")),
    "seed": (("--seed",), dict(
        type=int, default=0,
        help="seeds every random choice of the run (the python, numpy and torch generators)")),
    # speed (util/perf.py); all off by default, so the default run is the plain float32 eager computation
    "amp": (("--amp",), dict(
        action="store_true",
        help="mixed precision: the network in bfloat16 autocast where supported, else float16 (training adds a "
             "GradScaler); losses, colour conversion, metrics and probe heads stay float32")),
    "channels_last": (("--channels_last",), dict(
        action="store_true", help="NHWC memory layout for the network's weights and inputs")),
    "compile": (("--compile",), dict(
        action="store_true", help="torch.compile the network (eager, with a one-line warning, where unsupported)")),
    # checkpoint selection
    "name": (("--name",), dict(
        type=str, default="experiment_name",
        help="experiment name: its models and logs are in <checkpoints_dir>/<name>/")),
    "checkpoints_dir": (("--checkpoints_dir",), dict(
        type=str, default=CHECKPOINTS_DIR,
        help=f"folder of the experiment folders (default: {CHECKPOINTS_DIR})")),
    "which_epoch": (("--which_epoch",), dict(
        type=str, default=WHICH_EPOCH,
        help=f"which checkpoint: <checkpoints_dir>/<name>/<which_epoch>_net_G.pth, '{WHICH_EPOCH}' or an epoch "
             f"number (default: {WHICH_EPOCH})")),
    # the model
    "norm": (("--norm",), dict(
        type=str, default="batch", choices=["batch", "instance"],
        help="normalisation layer of the generator, the one it was trained with (the official weights: batch)")),
    "mask_cent": (("--mask_cent",), dict(
        type=float, default=0.5,
        help="subtracted from the {0,1} hint mask: 0.5 for our and the retrained models; "
             "THE OFFICIAL CAFFEMODEL WEIGHTS NEED --mask_cent 0")),
    # image sizes (px); the original spells them --loadSize and --fineSize
    "loadSize": (("--loadSize", "--load_size"), dict(
        type=int, default=256, metavar="PX",
        help="images are first resized to this size, as the note above says; "
             "--loadSize and --load_size are one flag")),
    "fineSize": (("--fineSize", "--fine_size"), dict(
        type=int, default=176, metavar="PX",
        help="then cropped to this size, the network's input (at most --loadSize); "
             "--fineSize and --fine_size are one flag")),
    # data loading
    "batch_size": (("--batch_size",), dict(
        type=int, default=25, help="images per batch")),
    "num_threads": (("--num_threads",), dict(
        type=int, default=4, help="DataLoader worker processes that read and prepare the images; 0: none")),
    # reporting
    "verbose": (("--verbose",), dict(
        action="store_true",
        help="print the network's layers; train.py also prints the full option table (always saved in opt.txt)")),
}

SPEED = ("amp", "channels_last", "compile")
CHECKPOINT = ("name", "checkpoints_dir", "which_epoch")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written; ' (default: X)' after a help that does not state its
    default, unless X is None, False or empty (nothing worth showing)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "default" in text or not action.option_strings or default is None or default is False \
                or default is argparse.SUPPRESS or default in ("", []):
            return text
        return text + " (default: %(default)s)"


def add_flags(container, *dests: str, dashed: bool = False) -> None:
    """Add the SHARED flags ``dests`` to ``container`` (a parser or an argument group).
    dashed: also accept --dashed-spellings (bethgelab/stylize-datasets' command lines)."""
    for dest in dests:
        names, keywords = SHARED[dest]
        if dashed:
            names = names + tuple(n.replace("_", "-") for n in names if "_" in n)
        container.add_argument(*names, dest=dest, **keywords)


def add_device_flags(container, dashed: bool = False) -> None:
    add_flags(container, "gpu_ids", dashed=dashed)


def add_speed_flags(container) -> None:
    add_flags(container, *SPEED)


def add_checkpoint_flags(container, name_container: Optional[object] = None) -> None:
    """--name (in ``name_container`` when given, e.g. a mutually exclusive group), --checkpoints_dir, --which_epoch."""
    add_flags(name_container if name_container is not None else container, "name")
    add_flags(container, "checkpoints_dir", "which_epoch")


def add_size_flags(container, fine: bool = True) -> None:
    """--loadSize/--load_size, and --fineSize/--fine_size unless fine is False."""
    add_flags(container, "loadSize", *(("fineSize",) if fine else ()))


def add_loader_flags(container, dashed: bool = False) -> None:
    add_flags(container, "batch_size", "num_threads", dashed=dashed)
