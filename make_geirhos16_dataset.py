#!/usr/bin/env python
"""Build the 16-class training data of the shape-bias measurement, as symlinks into ILSVRC2012.

    python make_geirhos16_dataset.py --in_path /path/to/ILSVRC2012 --val_by_class /path/to/val_by_class \
        --out_path ./dataset/geirhos16

<out_path>/train/<category>/<image> and <out_path>/val/<category>/<image> for the 16 categories of
Geirhos et al. (airplane ... truck), from the ILSVRC2012 classes that resources/geirhos_16class_wnids.json
assigns to each, at most --per_category (--val_per_category) images per category, spread evenly
over its classes. Idempotent like make_ilsvrc_dataset.py: a rerun with the same arguments changes
nothing, anything in the way is a one-line error before anything is modified, and nothing is
ever written into the source. docs/shape_bias.md.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from dataset_builders.geirhos16 import load_category_wnids, make_plan
from dataset_builders.linktree import LayoutError

PROG = "make_geirhos16_dataset.py"
EXIT_USAGE = 2  # bad input or something in the way; nothing modified
EXIT_FAILED = 1  # an OS error while creating links


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--in_path", required=True, help="ILSVRC2012 root holding train/<wnid>/*.JPEG")
    parser.add_argument("--val_by_class", required=True,
                        help="the ILSVRC2012 validation images sorted into <wnid>/ folders")
    parser.add_argument("--out_path", default="./dataset/geirhos16", help="where to create the layout "
                        "(default: %(default)s)")
    parser.add_argument("--per_category", type=int, default=1300,
                        help="at most this many training images per category (default: %(default)s, "
                             "one ILSVRC2012 class's worth: knife has a single class)")
    parser.add_argument("--val_per_category", type=int, default=50,
                        help="at most this many validation images per category (default: %(default)s, "
                             "one ILSVRC2012 class's worth)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag in ("per_category", "val_per_category"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1")
    try:
        plan, summary = make_plan(os.path.join(args.in_path, "train"), args.val_by_class, args.out_path,
                                  args.per_category, args.val_per_category, load_category_wnids())
        plan.check()
    except (LayoutError, OSError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        plan.apply()
    except OSError as e:
        print(f"{PROG}: error: could not create links in {summary['out']}: {e}", file=sys.stderr)
        return EXIT_FAILED
    print(f"16-class layout in {summary['out']} (category: classes found, train / val images):")
    for category, c in summary["categories"].items():
        print(f"  {category:9s} {len(c['train_wnids']):3d} classes  {c['train']:6d} / {c['val']:4d}")
    print(f"  links: {plan.created} created, {plan.present} already present")
    return 0


if __name__ == "__main__":
    sys.exit(main())
