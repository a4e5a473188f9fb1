"""Image-folder datasets that skip unreadable files instead of crashing.

Layouts:
  * training: ImageFolder layout, ``root/<class>/<image>`` (class labels are returned but the
    colorization losses do not use them);
  * evaluation: flat ``root/<image>`` or nested ``root/<any>/<image>`` (labels are -1 when flat).
Files are found recursively, sorted, and filtered by extension.
"""
from __future__ import annotations

import os
import sys
import warnings
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset, Sampler

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")


class UnreadableImageError(Exception):
    """An image file that cannot be decoded (message names the file and the reason)."""


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def load_rgb(path: str) -> Image.Image:
    """Open an image as 8-bit RGB, honouring its EXIF orientation.

    Raises UnreadableImageError for anything PIL cannot decode (truncated, empty, not an image,
    a decompression bomb).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                img = ImageOps.exif_transpose(img)
                if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                    # 16/32-bit grayscale: rescale to 8 bits instead of PIL's clipping conversion.
                    img = img.point(lambda v: v / 256).convert("L")
                if img.mode in ("P", "PA", "LA", "RGBA") and ("transparency" in img.info or "A" in img.mode):
                    img = img.convert("RGBA")
                return img.convert("RGB")
    except Exception as e:  # PIL raises many types (OSError, ValueError, SyntaxError, ...)
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UnreadableImageError(f"{path}: {reason}") from None


def find_images(root: str) -> List[str]:
    """All image files below root (recursively, following symlinks), sorted by path."""
    found = []
    for folder, _dirs, files in os.walk(root, followlinks=True):
        found.extend(os.path.join(folder, f) for f in files if is_image_file(f))
    return sorted(found)


class ImageFolderDataset(Dataset):
    """Images under ``root`` as (uint8 tensor 3 x H x W, label) pairs, or None for a bad file.

    Args:
        root: the folder.
        transform: PIL image -> uint8 tensor (see data.transforms).
        require_classes: True for the training layout: root must hold class sub-folders, and
            labels are the sorted class index. False: any layout; label = index of the top-level
            sub-folder, -1 for images directly in root.
    """

    def __init__(self, root: str, transform: Callable, require_classes: bool = True):
        if not os.path.isdir(root):
            raise FileNotFoundError(f"dataset folder not found: {root}")
        self.root = root
        self.transform = transform
        self.classes = sorted(d.name for d in os.scandir(root) if d.is_dir())
        if require_classes and not self.classes:
            raise FileNotFoundError(f"{root}: no class sub-folders (expected <root>/<class>/<image>)")
        class_index = {c: i for i, c in enumerate(self.classes)}
        self.samples: List[Tuple[str, int]] = []
        for path in find_images(root):
            top = os.path.relpath(path, root).split(os.sep)[0]
            label = class_index.get(top, -1)
            if require_classes and label < 0:
                continue  # stray file directly in root: not part of the ImageFolder layout
            self.samples.append((path, label))
        if not self.samples:
            raise FileNotFoundError(f"{root}: no images found (extensions: {', '.join(IMG_EXTENSIONS)})")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        try:
            img = load_rgb(path)
        except UnreadableImageError as e:
            print(f"warning: skipping unreadable image {e}", file=sys.stderr)
            return None
        return self.transform(img), label


def collate_skip_bad(batch: Sequence):
    """Collate (image, label) pairs, dropping the None entries of unreadable files.

    Returns (images uint8 N x 3 x H x W, labels int64 N, number skipped). N may be 0.
    """
    good = [b for b in batch if b is not None]
    skipped = len(batch) - len(good)
    if not good:
        return torch.empty(0, 3, 0, 0, dtype=torch.uint8), torch.empty(0, dtype=torch.long), skipped
    images = torch.stack([b[0] for b in good])
    labels = torch.tensor([b[1] for b in good], dtype=torch.long)
    return images, labels, skipped


class IndexedSubset(Dataset):
    """``dataset[indices[i]]`` with the label replaced by the dataset index (None stays None), so
    evaluation scripts know which file each loaded image came from."""

    def __init__(self, dataset: ImageFolderDataset, indices: Sequence[int]):
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        item = self.dataset[self.indices[i]]
        return None if item is None else (item[0], self.indices[i])


class RandomSubsetSampler(Sampler[int]):
    """A fresh random subset of ``num_samples`` indices (without replacement) every epoch.

    With num_samples None or >= the dataset size this is a plain shuffle. Reproducible: epoch e
    uses the permutation drawn from ``seed + e`` (call set_epoch before iterating).
    """

    def __init__(self, data_len: int, num_samples: Optional[int] = None, seed: int = 0):
        self.data_len = data_len
        self.num_samples = data_len if num_samples is None else min(num_samples, data_len)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.data_len, generator=g)[: self.num_samples].tolist())

    def __len__(self) -> int:
        return self.num_samples


def eval_subset(num_images: int, how_many: int, seed: int | None = None) -> List[int]:
    """Indices of the images to evaluate, in ascending order.

    seed None: the first ``how_many`` (the original test.py, which does not shuffle); otherwise a
    random subset drawn from ``seed`` (the original test_sweep.py shuffled without a seed; fixing
    it makes runs comparable).
    """
    how_many = min(how_many, num_images)
    if seed is None:
        return list(range(how_many))
    g = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(num_images, generator=g)[:how_many].tolist())
