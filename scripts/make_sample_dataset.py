"""Build a small colour dataset from the photos that scikit-image ships (no download needed).

    python scripts/make_sample_dataset.py --out_path ./quickstart_data --size 96 --per_image 40

Layout (what train.py, test.py and make_ilsvrc_dataset.py use):
    <out>/train/<photo>/<photo>_NNN.png   random crops of the training photos (ImageFolder layout)
    <out>/train_small/<photo>/...         the first 3 training photos only (phase 1 of the recipe)
    <out>/val/<photo>_NNN.png             crops of two held-out photos, flat
Crops are random squares covering 30-100% of the shorter side, resized to --size, drawn from a
seeded generator, so the dataset is the same on every machine. Existing files are overwritten.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

import numpy as np
from PIL import Image

# Real colour photographs bundled with scikit-image (loaded without network access).
TRAIN_PHOTOS = ("astronaut", "rocket", "immunohistochemistry", "hubble_deep_field", "retina", "motorcycle_left")
VAL_PHOTOS = ("chelsea", "coffee")
SMALL_PHOTOS = TRAIN_PHOTOS[:3]


def load_photo(name: str) -> np.ndarray:
    """H x W x 3 uint8 photo from skimage.data."""
    import skimage.data

    if name == "motorcycle_left":
        return skimage.data.stereo_motorcycle()[0]
    return getattr(skimage.data, name)()[..., :3]


def random_crops(photo: np.ndarray, count: int, size: int, rng: np.random.Generator) -> list:
    """``count`` random square crops (30-100% of the shorter side), resized to size x size."""
    h, w = photo.shape[:2]
    crops = []
    for _ in range(count):
        side = int(rng.uniform(0.3, 1.0) * min(h, w))
        top = int(rng.integers(0, h - side + 1))
        left = int(rng.integers(0, w - side + 1))
        img = Image.fromarray(photo[top:top + side, left:left + side])
        crops.append(img.resize((size, size), Image.Resampling.BICUBIC))
    return crops


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out_path", default="./quickstart_data", help="output folder")
    parser.add_argument("--size", type=int, default=96, help="side of the saved crops (px)")
    parser.add_argument("--per_image", type=int, default=40, help="training crops per photo")
    parser.add_argument("--val_per_image", type=int, default=8, help="validation crops per held-out photo")
    parser.add_argument("--seed", type=int, default=0, help="crop positions")
    args = parser.parse_args(argv)
    if args.size < 8 or args.per_image < 1 or args.val_per_image < 1:
        parser.error("--size must be >= 8 and the crop counts >= 1")

    rng = np.random.default_rng(args.seed)
    counts = {"train": 0, "train_small": 0, "val": 0}
    for name in TRAIN_PHOTOS + VAL_PHOTOS:
        is_val = name in VAL_PHOTOS
        crops = random_crops(load_photo(name), args.val_per_image if is_val else args.per_image, args.size, rng)
        targets = ["val"] if is_val else ["train"] + (["train_small"] if name in SMALL_PHOTOS else [])
        for split in targets:
            folder = os.path.join(args.out_path, split) if is_val else os.path.join(args.out_path, split, name)
            os.makedirs(folder, exist_ok=True)
            for i, crop in enumerate(crops):
                crop.save(os.path.join(folder, f"{name}_{i:03d}.png"))
            counts[split] += len(crops)
    print(f"wrote {counts['train']} train ({len(TRAIN_PHOTOS)} classes), {counts['train_small']} train_small "
          f"({len(SMALL_PHOTOS)} classes) and {counts['val']} val images to {args.out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
