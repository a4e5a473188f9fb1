"""Image-quality metrics of colorization results, and top-k hits of classification scores.

Conventions:
  * RGB tensors are N x 3 x H x W in [0, 1];
  * uint8 images are N x H x W x 3 numpy arrays made with util.image.to_uint8 (clipped and
    TRUNCATED, as the original's tensor2im), i.e. exactly what the result pages save as PNG;
  * Lab arrays are N x H x W x 3 float64 in Lab units (L in [0, 100], a and b roughly in
    [-110, 110]), as skimage.color returns them.
Every image metric returns one float64 value per image (a length-N array or tensor).
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from util.color import hsv_saturation

#: Largest ab error threshold (Lab units) of the AuC curve, as Zhang et al. ECCV 2016.
AUC_MAX_THRESHOLD = 150

#: SSIM window side (pixels): skimage's default uniform 7 x 7 window.
SSIM_WIN_SIZE = 7


def _check_uint8_images(*images: np.ndarray) -> None:
    for image in images:
        if image.dtype != np.uint8 or image.ndim != 4 or image.shape[-1] != 3:
            raise ValueError(f"expected N x H x W x 3 uint8 images, got {image.dtype} {image.shape}")
    if len({image.shape for image in images}) > 1:
        raise ValueError(f"image shapes differ: {[image.shape for image in images]}")


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


def mean_hsv_saturation_uint8(images: np.ndarray) -> np.ndarray:
    """Mean HSV saturation (max - min) / max per image of N x H x W x 3 uint8 images, in [0, 1].

    Black pixels count as saturation 0 (as skimage.color.rgb2hsv). Same as mean_hsv_saturation
    on images / 255.
    """
    _check_uint8_images(images)
    rgb = torch.from_numpy(images.astype(np.float64)).permute(0, 3, 1, 2) / 255.0
    return mean_hsv_saturation(rgb).numpy()


def ssim_uint8(real: np.ndarray, fake: np.ndarray, win_size: int = SSIM_WIN_SIZE) -> np.ndarray:
    """Structural similarity per image of N x H x W x 3 uint8 images, in [-1, 1] (1: identical).

    skimage.metrics.structural_similarity with data_range=255 and channel_axis=-1: the mean over
    the three RGB channels of the mean SSIM map, with skimage's defaults (uniform win_size x
    win_size window, 7 by default; K1 = 0.01, K2 = 0.03; sample covariance). Images must be at
    least win_size pixels on each side.
    """
    from skimage.metrics import structural_similarity

    _check_uint8_images(real, fake)
    return np.array([structural_similarity(r, f, win_size=win_size, data_range=255, channel_axis=-1)
                     for r, f in zip(real, fake)], dtype=np.float64)


def colorfulness_uint8(images: np.ndarray) -> np.ndarray:
    """Colourfulness M of Hasler and Suesstrunk (2003) per image of N x H x W x 3 uint8 images.

    With R, G, B the uint8 values (0..255) as floats and the SIGNED opponent channels
    rg = R - G and yb = (R + G) / 2 - B (some popular implementations take their absolute values;
    the paper does not):
        M = sqrt(std(rg)^2 + std(yb)^2) + 0.3 * sqrt(mean(rg)^2 + mean(yb)^2),
    with means and population standard deviations (ddof = 0) over the pixels of each image.
    0 for a gray image; the paper calls about 33 "moderately" and 59 "quite" colourful.
    """
    _check_uint8_images(images)
    rgb = images.astype(np.float64).reshape(images.shape[0], -1, 3)
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg = red - green
    yb = 0.5 * (red + green) - blue
    spread = np.sqrt(rg.std(axis=1) ** 2 + yb.std(axis=1) ** 2)
    offset = np.sqrt(rg.mean(axis=1) ** 2 + yb.mean(axis=1) ** 2)
    return spread + 0.3 * offset


def uint8_to_lab(images: np.ndarray) -> np.ndarray:
    """N x H x W x 3 uint8 sRGB -> N x H x W x 3 float64 Lab (D65, 2 degrees; skimage.color.rgb2lab)."""
    from skimage.color import rgb2lab

    _check_uint8_images(images)
    return rgb2lab(images.astype(np.float64) / 255.0, channel_axis=-1)


def ab_error_auc(ab_pred: np.ndarray, ab_true: np.ndarray, max_threshold: int = AUC_MAX_THRESHOLD) -> np.ndarray:
    """Area under the cumulative ab-error curve (Zhang, Isola and Efros, ECCV 2016), per image, in [0, 1].

    ab_pred, ab_true: N x H x W x 2 in Lab units (for example the last two channels of
    uint8_to_lab). Per pixel e = ||ab_pred - ab_true||_2; the curve is
    acc(t) = fraction of the image's pixels with e <= t, for the integer thresholds
    t = 0, 1, ..., max_threshold; AuC = mean of acc over those max_threshold + 1 thresholds, so a
    perfect prediction gives 1 and a constant error e gives (max_threshold - ceil(e) + 1) /
    (max_threshold + 1) (121/151 for e = 30). Computed in closed form: a pixel is counted at
    max_threshold + 1 - ceil(e) thresholds (clipped to [0, max_threshold + 1]).
    """
    ab_pred = np.asarray(ab_pred, dtype=np.float64)
    ab_true = np.asarray(ab_true, dtype=np.float64)
    if ab_pred.shape != ab_true.shape or ab_pred.ndim != 4 or ab_pred.shape[-1] != 2:
        raise ValueError(f"expected two N x H x W x 2 ab arrays, got {ab_pred.shape} and {ab_true.shape}")
    error = np.sqrt(((ab_pred - ab_true) ** 2).sum(axis=-1)).reshape(ab_pred.shape[0], -1)
    n_thresholds = max_threshold + 1
    counted = np.clip(n_thresholds - np.ceil(error), 0, n_thresholds)
    return counted.mean(axis=1) / n_thresholds


def mean_ciede2000(lab_real: np.ndarray, lab_fake: np.ndarray) -> np.ndarray:
    """Mean CIEDE2000 colour difference per image (skimage.color.deltaE_ciede2000, kL = kC = kH = 1).

    lab_real, lab_fake: N x H x W x 3 float Lab (see uint8_to_lab). 0 for identical images; about
    2.3 is a just-noticeable difference.
    """
    from skimage.color import deltaE_ciede2000

    if lab_real.shape != lab_fake.shape or lab_real.ndim != 4 or lab_real.shape[-1] != 3:
        raise ValueError(f"expected two N x H x W x 3 Lab arrays, got {lab_real.shape} and {lab_fake.shape}")
    delta = deltaE_ciede2000(lab_real, lab_fake, channel_axis=-1)  # N x H x W
    return delta.reshape(delta.shape[0], -1).mean(axis=1)


def prediction_entropy(probs: Tensor, eps: float = 1e-10) -> Tensor:
    """Mean entropy (nats) per image of a predicted colour distribution.

    probs: N x Q x h x w probabilities over the Q = 529 ab bins (softmax of the class logits).
    Per pixel -sum_q p log(p + eps), the model's G_entr formula; then the mean over pixels.
    Returns N values in [0, ln Q] (ln 529 = 6.27 for a uniform prediction).
    """
    entropy = -(probs * torch.log(probs + eps)).sum(dim=1)
    return entropy.flatten(1).mean(dim=1)


def mean_and_se(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and standard error of the mean of per-image values: std (ddof = 1) / sqrt(n).

    The SE is 0 for a single value. Any infinite value makes the mean infinite and the SE nan.
    (The original test.py divided the population std, ddof = 0, by sqrt(how_many).)
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no values")
    mean = float(values.mean())
    if not np.isfinite(values).all():
        return mean, math.nan
    se = float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else 0.0
    return mean, se


def topk_correct(scores: Tensor, labels: Tensor, ks: Sequence[int] = (1, 5)) -> Tensor:
    """Number of samples whose label is among their top-k scores, for each k (k capped at C).

    scores: N x C, labels: N class indices. Returns len(ks) int64 counts on the scores' device
    (no host sync: ``.tolist()`` them, or accumulate them on the device). Ties are broken as
    torch.topk breaks them.
    """
    k_max = min(max(ks), scores.shape[1])
    hit = scores.topk(k_max, dim=1).indices.eq(labels.unsqueeze(1))
    return torch.stack([hit[:, :min(k, scores.shape[1])].any(dim=1).sum() for k in ks])
