"""Image-quality metrics of colorization results.

Conventions: RGB tensors are N x 3 x H x W in [0, 1]; uint8 images are N x H x W x 3 arrays made
with util.image.to_uint8 (truncation, as the original). Functions return one value per image.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from util.color import hsv_saturation


def psnr_uint8(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    """The original's PSNR: 20 log10(255 / sqrt(MSE)) over all H x W x 3 uint8 values, per image.

    real, fake: N x H x W x 3 uint8 (see util.image.to_uint8). Identical images give inf.
    """
    diff = real.astype(np.float64) - fake.astype(np.float64)
    mse = (diff ** 2).reshape(diff.shape[0], -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return 20.0 * np.log10(255.0 / np.sqrt(mse))


def mean_hsv_saturation(rgb: Tensor) -> Tensor:
    """Mean HSV saturation per image of RGB N x 3 x H x W (clipped to [0, 1]); returns N values in [0, 1]."""
    return hsv_saturation(rgb).flatten(1).mean(dim=1)
