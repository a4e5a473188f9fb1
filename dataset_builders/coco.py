"""MS-COCO 2017 instance annotations -> one class per image (standard-library json, no pycocotools).

:func:`load_instances` reads and validates ``instances_{train,val}2017.json`` (only the fields
listed in ``_FIELDS``); :func:`label_images` labels each image with one category, by the rule that
docs/datasets.md states (largest total mask area); :func:`class_folder` names its folder.
"""
from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Optional

#: Class folder of images without a counted annotation; 0 is not a COCO category id.
BACKGROUND = "000_background"

_FIELDS = {  # required fields of each record and their JSON types
    "images": (("id", int), ("file_name", str)),
    "annotations": (("id", int), ("image_id", int), ("category_id", int), ("area", (int, float)),
                    ("iscrowd", int)),
    "categories": (("id", int), ("name", str)),
}


class CocoError(Exception):
    """A missing or malformed annotation file (the message is one line and names the file)."""


@dataclass
class Instances:
    """What the labelling needs from one annotation file."""
    path: str
    images: Dict[int, str]  # image id -> file name
    categories: Dict[int, str]  # category id -> name, ascending id
    annotations: List[dict]


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def load_instances(path: str) -> Instances:
    """Read and validate an instances JSON file; raises CocoError (one line) for a missing file,
    bad JSON, a missing or mistyped required field, duplicate ids, a file name with a folder in
    it, or an annotation that points at an unknown image or category."""
    data = _read_json(path)
    for key, fields in _FIELDS.items():
        _check_records(path, data, key, fields)
    images = _index_images(path, data["images"])
    categories = _index_categories(path, data["categories"])
    _check_annotations(path, data["annotations"], images, categories)
    return Instances(path, images, dict(sorted(categories.items())), data["annotations"])


def _read_json(path: str) -> dict:
    """The JSON object in ``path``; CocoError for a missing file, bad JSON or another top-level type."""
    if not os.path.isfile(path):
        raise CocoError(f"annotation file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f, parse_constant=_reject_constant)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CocoError(f"{path}: not a valid JSON file ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise CocoError(f"{path}: expected a JSON object with images, annotations and categories")
    return data


def _check_records(path: str, data: dict, key: str, fields) -> None:
    """data[key] is a list of objects, each with every (name, type) of ``fields``; else CocoError."""
    records = data.get(key)
    if not isinstance(records, list):
        raise CocoError(f"{path}: missing top-level list '{key}'")
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise CocoError(f"{path}: {key}[{i}] is not an object")
        for name, kind in fields:
            value = record.get(name)
            if value is None:
                raise CocoError(f"{path}: {key}[{i}] has no '{name}'")
            if isinstance(value, bool) or not isinstance(value, kind):
                raise CocoError(f"{path}: {key}[{i}].{name} has the wrong type ({value!r})")


def _index_images(path: str, records: List[dict]) -> Dict[int, str]:
    """image id -> file name; CocoError for a duplicate id or a name that is not a plain file name."""
    images: Dict[int, str] = {}
    for i, record in enumerate(records):
        name = record["file_name"]
        if record["id"] in images:
            raise CocoError(f"{path}: image id {record['id']} appears twice (images[{i}])")
        if not name or name in (".", "..") or "/" in name or os.sep in name:
            raise CocoError(f"{path}: images[{i}].file_name {name!r} is not a plain file name")
        images[record["id"]] = name
    return images


def _index_categories(path: str, records: List[dict]) -> Dict[int, str]:
    """category id -> name, in file order; CocoError for a duplicate, an id < 1, a name that cannot
    be a folder name, or no category at all."""
    categories: Dict[int, str] = {}
    for i, record in enumerate(records):
        name = record["name"]
        if record["id"] in categories:
            raise CocoError(f"{path}: category id {record['id']} appears twice (categories[{i}])")
        if record["id"] < 1 or not name.strip() or "/" in name or os.sep in name:
            raise CocoError(f"{path}: categories[{i}] (id {record['id']}, name {name!r}) needs an id >= 1 and a "
                            "name that can be a folder name")
        categories[record["id"]] = name
    if not categories:
        raise CocoError(f"{path}: no categories")
    return categories


def _check_annotations(path: str, annotations: List[dict], images: Dict[int, str],
                       categories: Dict[int, str]) -> None:
    """Every annotation names a known image and category, with iscrowd 0 or 1 and area >= 0."""
    for i, ann in enumerate(annotations):
        if ann["image_id"] not in images:
            raise CocoError(f"{path}: annotations[{i}] (id {ann['id']}) refers to image_id {ann['image_id']}, "
                            "which is not in images")
        if ann["category_id"] not in categories:
            raise CocoError(f"{path}: annotations[{i}] (id {ann['id']}) refers to category_id "
                            f"{ann['category_id']}, which is not in categories")
        if ann["iscrowd"] not in (0, 1) or ann["area"] < 0:
            raise CocoError(f"{path}: annotations[{i}] (id {ann['id']}) needs iscrowd 0 or 1 and area >= 0")


def class_folder(category_id: int, name: str) -> str:
    """Folder name of a category: zero-padded id and the name with underscores, e.g. ``018_dog``,
    ``010_traffic_light``, so that sorted folder names (ImageFolder's class order) follow the ids."""
    return f"{category_id:03d}_{name.strip().replace(' ', '_')}"


def label_images(instances: Instances, include_crowd: bool = False) -> Dict[int, Optional[int]]:
    """image id -> the category id with the largest total ``area`` (the segmentation mask's area in
    pixels, not the bbox's) over the image's annotations with iscrowd 0 (all of them with
    ``include_crowd``), a tie going to the lowest id; None when no annotation counts. Sums use
    math.fsum, so they do not depend on the order of the file."""
    areas: Dict[int, Dict[int, List[float]]] = defaultdict(lambda: defaultdict(list))
    for ann in instances.annotations:
        if include_crowd or ann["iscrowd"] == 0:
            areas[ann["image_id"]][ann["category_id"]].append(float(ann["area"]))
    labels: Dict[int, Optional[int]] = {}
    for image_id in instances.images:
        totals = {cat: math.fsum(values) for cat, values in areas.get(image_id, {}).items()}
        labels[image_id] = min(totals, key=lambda cat: (-totals[cat], cat)) if totals else None
    return labels


def crowd_only(instances: Instances) -> set:
    """Ids of the images whose every annotation is a crowd region (told apart in the manifest)."""
    kinds: Dict[int, set] = defaultdict(set)
    for ann in instances.annotations:
        kinds[ann["image_id"]].add(ann["iscrowd"])
    return {image_id for image_id, k in kinds.items() if k == {1}}
