#!/usr/bin/env python
"""Turn an MS-COCO 2017 download into the folder layouts of the colorization study.

    python make_coco_dataset.py --coco_root /data/coco2017 --out_path ./dataset/coco2017

Creates train/<class>/, val/, val_cls/<class>/ (symlinks into --coco_root) and manifest.csv, with
one class per image: the category with the largest total mask area. The input, the layout, the
class rule, the manifest and reruns: docs/datasets.md.
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from dataset_builders.coco import (BACKGROUND, CocoError, Instances, class_folder, crowd_only, label_images,
                                   load_instances)
from dataset_builders.linktree import LayoutError, Plan

PROG = "make_coco_dataset.py"
SPLITS = (("train", "train2017"), ("val", "val2017"))
MANIFEST_FIELDS = ("split", "image_id", "file_name", "category_id", "class_folder", "rule")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--coco_root", required=True, help="COCO 2017 root (train2017/, val2017/, annotations/)")
    parser.add_argument("--out_path", default="./dataset/coco2017", help="output folder (default: %(default)s)")
    parser.add_argument("--copy", action="store_true", help="copy the images instead of symlinking them")
    parser.add_argument("--include_crowd", action="store_true",
                        help="let crowd regions (iscrowd 1) vote for the class too")
    parser.add_argument("--drop_unlabeled", action="store_true",
                        help=f"leave out images without a counted annotation instead of putting them in {BACKGROUND}")
    return parser


def check_paths(args: argparse.Namespace) -> Tuple[str, str]:
    """(the real COCO root, the absolute output folder); LayoutError when either cannot be used."""
    root = os.path.realpath(args.coco_root)
    if not os.path.isdir(args.coco_root):
        raise LayoutError(f"COCO root not found: {args.coco_root}")
    out = os.path.abspath(args.out_path)
    if os.path.lexists(out) and not os.path.isdir(out):
        raise LayoutError(f"output path exists and is not a directory: {out}")
    real_out = os.path.realpath(out)
    if real_out == root or real_out.startswith(root + os.sep):
        raise LayoutError(f"output path {out} must not lie inside the COCO root {root}")
    return root, out


def load_splits(root: str) -> Dict[str, Instances]:
    """The annotations of each split; CocoError or LayoutError when a folder or file is missing or
    the splits list different categories."""
    instances = {}
    for split, folder in SPLITS:
        if not os.path.isdir(os.path.join(root, folder)):
            raise LayoutError(f"image folder not found: {os.path.join(root, folder)}")
        instances[split] = load_instances(os.path.join(root, "annotations", f"instances_{folder}.json"))
    if instances["train"].categories != instances["val"].categories:
        raise CocoError(f"{instances['train'].path} and {instances['val'].path} list different categories "
                        "(the class folders of train/ and val_cls/ must be the same)")
    return instances


def split_entries(inst: Instances, source_dir: str, args: argparse.Namespace, folders: Dict[int, str],
                  warn) -> List[Tuple[int, str, Optional[int], str, str]]:
    """The images of one split that go into the layout, by file name: (image id, file name,
    category id or None, class folder, manifest rule). Images missing from ``source_dir`` are left
    out with one warning."""
    on_disk = set(os.listdir(source_dir))
    labels = label_images(inst, include_crowd=args.include_crowd)
    crowd = crowd_only(inst)
    missing = [name for name in inst.images.values() if name not in on_disk]
    if missing:
        warn(f"warning: {len(missing)} of the {len(inst.images)} images listed in {os.path.basename(inst.path)} "
             f"are missing from {source_dir} (first: {sorted(missing)[0]}); they are left out")
    rule = "largest_area_with_crowd" if args.include_crowd else "largest_area"
    entries = []
    for image_id, name in sorted(inst.images.items(), key=lambda kv: kv[1]):
        cat = labels[image_id]
        if name not in on_disk or (cat is None and args.drop_unlabeled):
            continue
        cls = BACKGROUND if cat is None else folders[cat]
        why = rule if cat is not None else ("crowd_only" if image_id in crowd else "no_annotation")
        entries.append((image_id, name, cat, cls, why))
    return entries


def manifest_text(rows: Sequence[tuple]) -> str:
    """manifest.csv: MANIFEST_FIELDS, then one row per image."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(MANIFEST_FIELDS)
    writer.writerows(rows)
    return text.getvalue()


def make_plan(args: argparse.Namespace, warn=lambda m: print(m, file=sys.stderr)):
    """Validate the input and return (Plan, {split: {class folder: image count}}); raises
    CocoError or LayoutError (one line)."""
    root, out = check_paths(args)
    instances = load_splits(root)
    folders = {cat: class_folder(cat, name) for cat, name in instances["train"].categories.items()}
    classes = ([] if args.drop_unlabeled else [BACKGROUND]) + list(folders.values())
    plan = Plan(hint="was it made with other options, e.g. --include_crowd, --drop_unlabeled or --copy?")
    top = {"train": os.path.join(out, "train"), "val": os.path.join(out, "val"),
           "val_cls": os.path.join(out, "val_cls")}
    plan.dirs += [top["train"], top["val"], top["val_cls"]]
    plan.dirs += [os.path.join(top[t], c) for t in ("train", "val_cls") for c in classes]
    plan.owned += list(top.values()) + [os.path.join(top[t], c) for t in ("train", "val_cls") for c in classes]
    add = plan.copies.append if args.copy else plan.links.append
    rows, counts = [], {}
    for split, folder in SPLITS:
        source_dir = os.path.join(root, folder)
        counts[split] = dict.fromkeys(classes, 0)
        for image_id, name, cat, cls, why in split_entries(instances[split], source_dir, args, folders, warn):
            source = os.path.join(source_dir, name)
            if split == "train":
                add((os.path.join(top["train"], cls, name), source))
            else:
                add((os.path.join(top["val"], name), source))
                add((os.path.join(top["val_cls"], cls, name), source))
            counts[split][cls] += 1
            rows.append((split, image_id, name, "" if cat is None else cat, cls, why))
    plan.texts.append((os.path.join(out, "manifest.csv"), manifest_text(rows)))
    return plan, counts


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        plan, counts = make_plan(args)
        plan.check()
    except (CocoError, LayoutError, OSError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    try:
        plan.apply()
    except OSError as e:
        print(f"{PROG}: error: could not create {args.out_path}: {e}", file=sys.stderr)
        return 1
    out = os.path.abspath(args.out_path)
    print(f"COCO 2017 layout in {out} ({'copies' if args.copy else 'symlinks'}; one class per image by the "
          f"largest total mask area{', crowd regions included' if args.include_crowd else ' of non-crowd annotations'}):")
    for split, label in (("train", "train/<class>/"), ("val", "val/ and val_cls/<class>/")):
        used = sum(1 for n in counts[split].values() if n)
        background = counts[split].get(BACKGROUND)
        extra = f", {background} in {BACKGROUND}" if background is not None else ", unlabeled images left out"
        print(f"  {label:<26} {sum(counts[split].values())} images in {used} of {len(counts[split])} class folders{extra}")
    print(f"  entries: {plan.created} created, {plan.present} already present (manifest.csv included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
