"""Image-folder datasets that skip unreadable files instead of crashing, and the skip report.

:func:`load_rgb` reads an image file the same way for every script and raises
UnreadableImageError for a file it cannot read; a dataset returns a :class:`SkippedImage` record
for it, :func:`collate_skip_bad` passes the records on with the batch (across DataLoader worker
processes) and the script's :class:`SkipLog` reports them. Folder layouts: docs/datasets.md.
"""
from __future__ import annotations

import os
import re
import sys
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

from util.fileio import atomic_write_text
from util.runtime import first_line

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
#: The list of unreadable files a script writes at the end of its run (SkipLog.report).
SKIPPED_LIST_NAME = "skipped_images.txt"
#: Modes with an alpha channel (others may carry a palette or colour-key transparency in info).
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
#: Grayscale modes deeper than 8 bits.
_DEEP_GRAY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class UnreadableImageError(Exception):
    """An image file that cannot be decoded. ``str()`` is ``<path>: <reason>``, one line."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def _to_rgb(img: Image.Image) -> Image.Image:
    """A decoded PIL image (any mode) as 8-bit RGB; see load_rgb for the rules."""
    if img.mode in _DEEP_GRAY_MODES:
        # 16-bit (or 16-bit data in 32-bit 'I') grayscale: v / 256, so 0..65535 -> 0..255; PIL's
        # own conversion would clip everything above 255 to white.
        img = img.point(lambda v: v / 256).convert("L")
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        # Composite on white, what a viewer shows: the colours stored under transparent pixels are
        # arbitrary (often black), and dropping alpha would show them. Converting a palette image
        # with transparency to RGBA first is also what PIL asks for (its UserWarning otherwise).
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return img.convert("RGB")  # RGB, L, 1, P, CMYK, YCbCr, ...


def _reason(e: BaseException, path: str) -> str:
    """A one-line reason for a failed decode, without the path PIL sometimes repeats."""
    if isinstance(e, UnidentifiedImageError):
        return "not an image file PIL can identify"
    if isinstance(e, (Image.DecompressionBombWarning, Image.DecompressionBombError)):
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        return (f"possible decompression bomb, not decoded: {pixels.group(1) if pixels else 'too many'} pixels, "
                f"more than PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}")
    return first_line(e, hide=path)


def load_rgb(path: str) -> Image.Image:
    """Open an image file as an 8-bit RGB PIL image, the same way in every script.

    * EXIF orientation is honoured (a phone photo stored sideways comes out upright: its size is
      the displayed one, e.g. a 48 x 32 JPEG with Orientation 6 loads as 32 x 48).
    * 16-bit grayscale (PNG 'I;16', TIFF) is scaled to 8 bits (v / 256), not clipped.
    * Transparency (RGBA, LA, PA, a palette or colour-key tRNS, GIF) is composited on white.
    * CMYK, palette, 1-bit and grayscale images get PIL's conversion to RGB (gray: R = G = B).
    * Multi-frame files (animated GIF, multi-page TIFF): the first frame.
    * Any size is accepted (a 1 x 1 image too; the transforms upsample small images).

    Raises UnreadableImageError (path and a one-line reason) for an empty file, a file PIL cannot
    identify (e.g. text named .jpg), a truncated or corrupt file, and a file of more than
    ``PIL.Image.MAX_IMAGE_PIXELS`` pixels (89.5 M by default: a possible decompression bomb,
    refused before it is decoded), or a file that cannot be opened at all. PIL's other warnings
    while decoding (EXIF, palette transparency) are silenced: the image is converted whatever they
    say, and a run over millions of files must print one line per bad file and nothing else.
    """
    try:
        if os.path.getsize(path) == 0:
            raise UnreadableImageError(path, "empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                return _to_rgb(ImageOps.exif_transpose(img))
    except UnreadableImageError:
        raise
    except Exception as e:  # PIL raises many types (OSError, ValueError, SyntaxError, ...)
        raise UnreadableImageError(path, _reason(e, path)) from None


@dataclass(frozen=True)
class SkippedImage:
    """What a dataset returns instead of (image, label) for a file load_rgb cannot read."""

    path: str
    reason: str


class SkipLog:
    """The unreadable image files of one run of a script (all epochs, splits and workers).

    :meth:`add` prints ``warning: skipping unreadable image <path>: <reason>`` on stderr the
    first time it sees a file, so there is one warning per bad file per run whatever the number
    of epochs or DataLoader workers. :meth:`report`, at the end of the run, writes the sorted list.
    """

    def __init__(self):
        self.reasons: Dict[str, str] = {}

    def add(self, records: Iterable[SkippedImage]) -> int:
        """Note a batch's skipped files; returns how many records there were (for per-epoch counts)."""
        count = 0
        for record in records:
            count += 1
            if record.path not in self.reasons:
                self.reasons[record.path] = record.reason
                print(f"warning: skipping unreadable image {record.path}: {record.reason}", file=sys.stderr)
        return count

    def __len__(self) -> int:
        return len(self.reasons)

    @property
    def paths(self) -> List[str]:
        """The distinct skipped files, sorted."""
        return sorted(self.reasons)

    def report(self, folder: str) -> Optional[str]:
        """End of run: with N > 0 skipped files, write them (one path a line, sorted) to
        <folder>/skipped_images.txt atomically, print ``skipped N unreadable image file(s); listed in
        <that file>`` and return its path. With none, print nothing and remove a list left there by
        an earlier run (it would describe files this run did not skip). If the list cannot be
        written, a one-line warning and the count line without it: the run's results stand."""
        path = os.path.join(folder, SKIPPED_LIST_NAME)
        try:
            if not self.reasons:
                if os.path.isfile(path):
                    os.remove(path)
                return None
            atomic_write_text(path, "".join(p + "\n" for p in self.paths))
        except OSError as e:
            print(f"warning: cannot write or remove {path}: {e}", file=sys.stderr)
            if self.reasons:
                print(f"skipped {len(self)} unreadable image file(s) (see the warnings above)")
            return None
        print(f"skipped {len(self)} unreadable image file(s); listed in {path}")
        return path


def find_images(root: str) -> List[str]:
    """All image files below root (recursively, following symlinks), sorted by path."""
    found = []
    for folder, _dirs, files in os.walk(root, followlinks=True):
        found.extend(os.path.join(folder, f) for f in files if is_image_file(f))
    return sorted(found)


class ImageFolderDataset(Dataset):
    """Images under ``root`` as (uint8 tensor 3 x H x W, label) pairs, or a SkippedImage record
    for a file load_rgb cannot read (no warning here: the script's SkipLog prints it once).

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
            return SkippedImage(path, e.reason)
        return self.transform(img), label


def collate_skip_bad(batch: Sequence) -> Tuple[torch.Tensor, torch.Tensor, List[SkippedImage]]:
    """Collate (image, label) pairs, setting aside the SkippedImage records of unreadable files.

    Returns (images uint8 N x 3 x H x W, labels int64 N, skipped: list of SkippedImage, in batch
    order). N may be 0 (then images is 0 x 3 x 0 x 0).
    """
    skipped = [b for b in batch if isinstance(b, SkippedImage)]
    good = [b for b in batch if not isinstance(b, SkippedImage)]
    if not good:
        return torch.empty(0, 3, 0, 0, dtype=torch.uint8), torch.empty(0, dtype=torch.long), skipped
    images = torch.stack([b[0] for b in good])
    labels = torch.tensor([b[1] for b in good], dtype=torch.long)
    return images, labels, skipped


class IndexedSubset(Dataset):
    """``dataset[indices[i]]`` with the label replaced by the dataset index (a SkippedImage stays
    as it is), so evaluation scripts know which file each loaded image came from."""

    def __init__(self, dataset: ImageFolderDataset, indices: Sequence[int]):
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        item = self.dataset[self.indices[i]]
        return item if isinstance(item, SkippedImage) else (item[0], self.indices[i])


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
