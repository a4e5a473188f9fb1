"""Tensor <-> uint8 image conversion, as the original (truncation, not rounding)."""
from __future__ import annotations

import io
import os

import numpy as np
import torch
from PIL import Image

from util.fileio import atomic_write_bytes


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """RGB (or 1-channel) N x C x H x W in [0, 1] -> N x H x W x 3 uint8.

    Clips to [0, 1] and TRUNCATES x * 255 (0.999 -> 254, 1.2 -> 255, -0.1 -> 0, 0.5 -> 127), as
    the original's tensor2im; the PSNR of the evaluation scripts depends on it. One channel is
    tiled to three.
    """
    arr = images.detach().float().cpu().clamp(0.0, 1.0).numpy()
    if arr.shape[1] == 1:
        arr = np.repeat(arr, 3, axis=1)
    return (np.transpose(arr, (0, 2, 3, 1)) * 255.0).astype(np.uint8)


def tensor2im(image: torch.Tensor) -> np.ndarray:
    """The first image of N x C x H x W (or one C x H x W) as H x W x 3 uint8 (see to_uint8)."""
    return to_uint8(image[:1] if image.dim() == 4 else image.unsqueeze(0))[0]


def save_image(image: np.ndarray, path: str) -> None:
    """Save H x W x 3 uint8 as an image file (format from the extension), atomically."""
    save_pil_atomic(Image.fromarray(image), path)


def save_pil_atomic(image: Image.Image, path: str, durable: bool = True, **params) -> None:
    """``image.save(path, **params)`` (format from the extension), atomically: encoded in memory,
    then written to a temporary file beside ``path`` and renamed over it (util.checkpoint;
    durable=False skips the fsync, for datasets of many files)."""
    buffer = io.BytesIO()
    image.save(buffer, format=Image.registered_extensions().get(os.path.splitext(path)[1].lower()), **params)
    atomic_write_bytes(path, buffer.getvalue(), durable)
