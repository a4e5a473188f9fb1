"""The 16 categories of Geirhos et al. (ICLR 2019) and the engine of make_geirhos16_dataset.py.

The categories' ILSVRC2012 WordNet IDs are data: resources/geirhos_16class_wnids.json, as
published by bethgelab/model-vs-human (resources/README.md). Some of its IDs are not ILSVRC2012
classes (the source says so): they match no folder and are skipped.

:func:`make_plan` lays out ``<out>/train/<category>/<file>`` and ``<out>/val/<category>/<file>``
as symlinks to the images of the category's classes, at most ``cap`` per category: the classes'
sorted files taken in turn (first file of every class, then the second, ...), so that a capped
category draws on all its classes evenly; the same inputs always give the same files.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Sequence, Tuple

from data.datasets import is_image_file
from dataset_builders.linktree import LayoutError, Plan

WNID_TABLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "resources",
                          "geirhos_16class_wnids.json")


def load_category_wnids(path: str = WNID_TABLE) -> Dict[str, List[str]]:
    """{category: [WordNet ID, ...]} of the table, categories in sorted order."""
    with open(path, encoding="utf-8") as f:
        table = json.load(f)["categories"]
    return {category: list(table[category]) for category in sorted(table)}


#: The 16 category names in sorted order (the class index order of an image folder of them).
CATEGORIES: Tuple[str, ...] = tuple(load_category_wnids())

HINT = "was it made with another --per_category, --val_per_category or source?"


def class_files(folder: str) -> List[str]:
    """Sorted names of the image files directly in ``folder`` (hidden ones ignored)."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if not e.name.startswith(".") and is_image_file(e.name)
                      and e.is_file())


def interleave(lists: Sequence[Sequence[str]], cap: int) -> List[str]:
    """At most ``cap`` items: the first of every list, then the second of every list, ..."""
    out: List[str] = []
    for i in range(max((len(items) for items in lists), default=0)):
        out.extend(items[i] for items in lists if i < len(items))
    return out[:cap]


def category_links(root: str, wnids: Sequence[str], cap: int) -> Tuple[Dict[str, str], List[str]]:
    """({file name: absolute source path}, the WordNet IDs found under ``root``) of one category."""
    found = [w for w in sorted(wnids) if os.path.isdir(os.path.join(root, w))]
    paths = interleave([[os.path.join(root, w, name) for name in class_files(os.path.join(root, w))] for w in found],
                       cap)
    links: Dict[str, str] = {}
    for path in paths:
        name = os.path.basename(path)
        if name in links:
            raise LayoutError(f"two images named {name} in one category ({links[name]} and {path})")
        links[name] = path
    return links, found


def check_output(out: str, sources: Sequence[str]) -> str:
    """The absolute output folder; LayoutError if it is a file or lies inside a source folder."""
    out = os.path.abspath(out)
    if os.path.lexists(out) and not os.path.isdir(out):
        raise LayoutError(f"output path exists and is not a directory: {out}")
    real_out = os.path.realpath(out)
    for source in sources:
        if real_out == source or real_out.startswith(source + os.sep):
            raise LayoutError(f"output path {out} must not lie inside the source folder {source}")
    return out


def make_plan(train_root: str, val_root: str, out: str, per_category: int, val_per_category: int,
              table: Dict[str, List[str]]) -> Tuple[Plan, dict]:
    """The Plan of the layout and its summary {"out", "categories": {category: {"wnids", "train",
    "val"}}}; LayoutError (nothing modified) for a missing folder or an empty category."""
    for what, root in (("training", train_root), ("validation", val_root)):
        if not os.path.isdir(root):
            raise LayoutError(f"{what} folder not found: {root}")
    train_root, val_root = os.path.realpath(train_root), os.path.realpath(val_root)
    out = check_output(out, [train_root, val_root])
    plan = Plan(HINT)
    plan.dirs += [out, os.path.join(out, "train"), os.path.join(out, "val")]
    plan.owned += [os.path.join(out, "train"), os.path.join(out, "val")]
    summary: dict = {"out": out, "per_category": per_category, "val_per_category": val_per_category,
                     "categories": {}}
    for category, wnids in table.items():
        counts = {}
        for split, root, cap in (("train", train_root, per_category), ("val", val_root, val_per_category)):
            links, found = category_links(root, wnids, cap)
            if not links:
                raise LayoutError(f"no {split} image of category {category} in {root} (none of its "
                                  f"{len(wnids)} WordNet IDs has a folder with images there)")
            plan.link_dirs.append((os.path.join(out, split, category), links, HINT))
            counts[split], counts[f"{split}_wnids"] = len(links), found
        summary["categories"][category] = counts
    plan.texts.append((os.path.join(out, "layout.json"), json.dumps(summary, indent=1, sort_keys=True) + "\n"))
    return plan, summary
