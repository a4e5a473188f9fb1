#!/usr/bin/env python
"""Build the ILSVRC2012 folder layout of colorization training and testing, as symlinks into --in_path.

    python make_ilsvrc_dataset.py --in_path /path/to/ILSVRC2012 --out_path ./dataset/ilsvrc2012

The layout (train_small/, train/, val/imgs/, test/imgs/), reruns, and the differences from the
original's make_ilsvrc_dataset.py: docs/datasets.md and docs/original.md.
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from dataset_builders.linktree import LayoutError as DatasetError  # one-line errors, exit status 2
from dataset_builders.linktree import Plan

PROG = "make_ilsvrc_dataset.py"
DEFAULT_IN_PATH = "/data/big/dataset/ILSVRC2012"
DEFAULT_OUT_PATH = "./dataset/ilsvrc2012/"
NUM_VAL_IMAGES = 50000
NUM_VAL_SPLIT = 1000  # the first 1000 ILSVRC2012 validation images form the val split
NUM_TRAIN_SMALL = 10  # number of classes in train_small
TEST_INDS_PATH = Path(__file__).resolve().parent / "resources" / "ilsvrclin12_val_inds.npy"

EXIT_USAGE = 2  # bad input or something in the way; nothing modified
EXIT_FAILED = 1  # an OS error while creating links


NUM_CLASSES_HINT = "was it made with a different --num_classes?"


def val_name(index):
    """File name of the 0-based ILSVRC2012 validation image ``index``."""
    return "ILSVRC2012_val_%08d.JPEG" % (index + 1)


def list_classes(train_dir):
    """Sorted names of the class sub-folders of ``train_dir`` (hidden entries are ignored)."""
    with os.scandir(train_dir) as entries:
        return sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())


def load_test_indices(path=TEST_INDS_PATH):
    if not path.is_file():
        raise DatasetError("test split index file not found: %s" % path)
    try:
        inds = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DatasetError("could not read %s: %s" % (path, exc)) from None
    if inds.ndim != 1 or inds.dtype.kind not in "iu" or inds.size == 0:
        raise DatasetError(
            "%s: expected a 1-D integer array, got %s %s" % (path, inds.dtype, inds.shape)
        )
    if inds.min() < 0 or inds.max() >= NUM_VAL_IMAGES:
        raise DatasetError("%s: indices must lie in 0..%d" % (path, NUM_VAL_IMAGES - 1))
    return [int(i) for i in inds]


def check_images_present(val_dir, names, what):
    present = set(os.listdir(val_dir))
    missing = [n for n in names if n not in present]
    if missing:
        raise DatasetError(
            "%d of the %d %s images are missing from %s (first missing: %s)"
            % (len(missing), len(names), what, val_dir, missing[0])
        )


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Create symlinks for the ILSVRC2012 colorization train/val/test splits.",
    )
    parser.add_argument(
        "--in_path",
        default=DEFAULT_IN_PATH,
        help="ILSVRC2012 root holding train/<wnid>/*.JPEG and val/*.JPEG (default: %(default)s)",
    )
    parser.add_argument(
        "--out_path",
        default=DEFAULT_OUT_PATH,
        help="where to create the symlink layout (default: %(default)s)",
    )
    parser.add_argument(
        "--num_classes",
        type=int,
        default=None,
        help="use only the first N classes in sorted order (100: ImageNet-100); default: all",
    )
    return parser


def output_folder(out_path, in_path):
    """The absolute output folder as a Path; DatasetError if it is a file or lies inside ``in_path``."""
    out_path = Path(os.path.abspath(out_path))
    if os.path.lexists(out_path) and not out_path.is_dir():
        raise DatasetError("output path exists and is not a directory: %s" % out_path)
    real_out = out_path.resolve()
    if real_out == in_path or in_path in real_out.parents:
        raise DatasetError(
            "output path %s must not lie inside the input folder %s" % (out_path, in_path)
        )
    return out_path


def make_plan(args):
    """Validate the input and return the Plan plus summary figures; raises DatasetError."""
    if not os.path.isdir(args.in_path):
        raise DatasetError("input folder not found: %s" % args.in_path)
    in_path = Path(args.in_path).resolve()
    train_dir = in_path / "train"
    val_dir = in_path / "val"
    if not train_dir.is_dir():
        raise DatasetError("training folder not found: %s" % train_dir)
    classes = list_classes(train_dir)
    if not classes:
        raise DatasetError("no class sub-folders in %s" % train_dir)
    if not val_dir.is_dir():
        raise DatasetError("validation folder not found: %s" % val_dir)

    n = args.num_classes
    if n is not None and not 1 <= n <= len(classes):
        raise DatasetError(
            "--num_classes must be between 1 and %d (the number of classes in %s), got %d"
            % (len(classes), train_dir, n)
        )
    selected = classes if n is None else classes[:n]

    val_names = [val_name(i) for i in range(NUM_VAL_SPLIT)]
    test_names = [val_name(i) for i in load_test_indices()]
    check_images_present(val_dir, val_names, "validation-split")
    check_images_present(val_dir, test_names, "test-split (%s)" % TEST_INDS_PATH.name)

    out_path = output_folder(args.out_path, in_path)
    plan = Plan()
    small = selected[:NUM_TRAIN_SMALL]
    plan.link_dirs.append((str(out_path / "train_small"), {c: str(train_dir / c) for c in small}, NUM_CLASSES_HINT))
    if n is None:
        plan.links.append((str(out_path / "train"), str(train_dir), "was it made with --num_classes?"))
    else:
        plan.link_dirs.append((str(out_path / "train"), {c: str(train_dir / c) for c in selected}, NUM_CLASSES_HINT))
    for split, names in (("val", val_names), ("test", test_names)):
        imgs = out_path / split / "imgs"
        plan.dirs += [str(out_path / split), str(imgs)]
        plan.links += [(str(imgs / name), str(val_dir / name)) for name in names]

    summary = {
        "out_path": out_path,
        "num_classes": len(selected),
        "all_classes": n is None,
        "train_small": len(small),
        "val": len(val_names),
        "test": len(test_names),
    }
    return plan, summary


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        plan, summary = make_plan(args)
        plan.check()
    except (DatasetError, OSError) as exc:
        print("%s: error: %s" % (PROG, exc), file=sys.stderr)
        return EXIT_USAGE
    try:
        plan.apply()
    except OSError as exc:
        print(
            "%s: error: could not create links in %s: %s" % (PROG, summary["out_path"], exc),
            file=sys.stderr,
        )
        return EXIT_FAILED

    how = "all classes, train -> %s" % os.path.join(os.path.realpath(args.in_path), "train")
    if not summary["all_classes"]:
        how = "first %d in sorted order" % summary["num_classes"]
    print("ILSVRC2012 layout in %s:" % summary["out_path"])
    print("  train:       %d classes (%s)" % (summary["num_classes"], how))
    print("  train_small: %d classes" % summary["train_small"])
    print("  val/imgs:    %d images" % summary["val"])
    print("  test/imgs:   %d images" % summary["test"])
    print("  links: %d created, %d already present" % (plan.created, plan.present))
    return 0


if __name__ == "__main__":
    sys.exit(main())
