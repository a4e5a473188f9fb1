"""Image-quality metrics of colorization results."""
from __future__ import annotations

import torch
from torch import Tensor

from util.color import hsv_saturation


def mean_hsv_saturation(rgb: Tensor) -> Tensor:
    """Mean HSV saturation per image of RGB N x 3 x H x W (clipped to [0, 1]); returns N values in [0, 1]."""
    return hsv_saturation(rgb).flatten(1).mean(dim=1)
