"""Training/evaluation batches: Lab split, grayscale filter and random colour hints.

The vectorised, device-side equivalent of the original's util/util.py get_colorization_data and
add_color_patches_rand_gt: no Python loop over images or points, and randomness from a
``torch.Generator``, so a run is reproducible from its seed. Hints are made in two steps: their
geometry (:func:`sample_hint_geometry`, independent of the images), then the painting
(:func:`paint_hints`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from util.color import AB_NORM, AB_THRESH, L_CENT, L_NORM, rgb2lab_norm

#: Default candidate patch sizes of the original (``--sample_Ps 1 2 ... 9``).
DEFAULT_SAMPLE_PS = (1, 2, 3, 4, 5, 6, 7, 8, 9)


@dataclass
class ColorizationBatch:
    """One batch as the model consumes it (all N x C x H x W on the batch's device).

    Attributes:
        A: normalised lightness (L - l_cent) / l_norm, N x 1 x H x W.
        B: normalised ground-truth ab, ab / ab_norm, N x 2 x H x W.
        hint_B: normalised hint ab, 0 where there is no hint, N x 2 x H x W.
        mask_B: hint mask minus mask_cent (what the network is fed), N x 1 x H x W.
        keep: bool index (length of the *input* batch) of the images kept by the grayscale filter,
            so labels can be filtered alongside.
    """

    A: Tensor
    B: Tensor
    hint_B: Tensor
    mask_B: Tensor
    keep: Tensor


def cat_batches(batches: Sequence[ColorizationBatch]) -> ColorizationBatch:
    """Concatenate colorization batches along the image axis (``keep`` too)."""
    if len(batches) == 1:
        return batches[0]
    fields = ("A", "B", "hint_B", "mask_B", "keep")
    return ColorizationBatch(*(torch.cat([getattr(b, f) for b in batches]) for f in fields))


def colorful_mask(ab: Tensor, ab_thresh: float, ab_norm: float = AB_NORM) -> Tensor:
    """Which images are colourful enough to train on (the original's grayscale filter).

    ab: normalised ab, N x 2 x H x W. An image is kept when the sum over the two channels of
    (max - min) over the image reaches ab_thresh / ab_norm (5 / 110 by default in training).
    Returns a bool tensor of length N; all True when ab_thresh <= 0.
    """
    if ab_thresh <= 0:
        return torch.ones(ab.shape[0], dtype=torch.bool, device=ab.device)
    flat = ab.flatten(2)
    spread = (flat.amax(dim=2) - flat.amin(dim=2)).abs().sum(dim=1)
    return spread >= ab_thresh / ab_norm


def sample_hint_counts(
    n: int, p: float, generator: Optional[torch.Generator] = None, device: Union[str, torch.device] = "cpu"
) -> Tensor:
    """Draw N geometric hint counts, P(K = k) = p (1 - p)^k (mean (1 - p) / p; p = 1 gives none), as
    int64 on ``device``.

    Inverse-CDF sampling: K = floor(log(U) / log(1 - p)) with U uniform in (0, 1].
    """
    if not 0.0 < p <= 1.0:
        raise ValueError(f"sample_p must be in (0, 1], got {p}")
    if p == 1.0:
        return torch.zeros(n, dtype=torch.long, device=device)
    u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
    u = 1.0 - u  # (0, 1]: log stays finite
    return torch.floor(torch.log(u) / torch.log1p(torch.tensor(-p, dtype=torch.float64, device=device))).long()


@dataclass
class HintGeometry:
    """Where the hints of a batch go, drawn before any image is looked at (int64 tensors).

    Attributes:
        counts: hints per image, length T.
        patch: patch side of hint k of image t, T x K (K = max count; entries k >= counts[t] unused).
        top, left: top-left corner (row, column) of each patch, T x K.
    """

    counts: Tensor
    patch: Tensor
    top: Tensor
    left: Tensor

    def rows(self, index: Tensor) -> "HintGeometry":
        """The geometry of images ``index`` (int64 or bool index into the T rows)."""
        return HintGeometry(self.counts[index], self.patch[index], self.top[index], self.left[index])


def sample_hint_geometry(
    total: int,
    height: int,
    width: int,
    p: float = 0.125,
    num_points: Optional[Union[int, Tensor]] = None,
    sample_Ps: Sequence[int] = DEFAULT_SAMPLE_PS,
    samp: str = "normal",
    generator: Optional[torch.Generator] = None,
    device: Union[str, torch.device] = "cpu",
) -> HintGeometry:
    """Draw hint counts, patch sizes and positions for ``total`` images of height x width pixels.

    The draws depend only on (total, height, width, the options, the generator state), never on
    image content, so every process of a data-parallel run can draw the geometry of the whole
    global batch from the same generator and keep its own rows of it. num_points: an exact count
    for every image (int) or per image (int64 tensor of length ``total``); None draws geometric
    counts with parameter p (:func:`sample_hint_counts`).

    Each hint is a P x P patch, P uniform over ``sample_Ps``, with its top-left corner (h, w) at
    h = floor(clip(N((H-P+1)/2, (H-P+1)/4), 0, H-P)), likewise w, for ``samp='normal'`` (the
    original's), or h uniform over 0..H-P for ``samp='uniform'``.
    """
    sizes = torch.as_tensor(list(sample_Ps), dtype=torch.long, device=device)
    if sizes.numel() == 0 or int(sizes.min()) < 1 or int(sizes.max()) > min(height, width):
        raise ValueError(f"sample_Ps must be in 1..{min(height, width)} for {height}x{width} images, got {list(sample_Ps)}")
    if samp not in ("normal", "uniform"):
        raise ValueError(f"samp must be 'normal' or 'uniform', got {samp!r}")
    if num_points is None:
        counts = sample_hint_counts(total, p, generator, device)
    else:
        counts = torch.as_tensor(num_points, dtype=torch.long, device=device).expand(total).clone()
    k_max = int(counts.max()) if total else 0
    if k_max == 0:
        empty = torch.zeros(total, 0, dtype=torch.long, device=device)
        return HintGeometry(counts, empty, empty, empty)
    patch = sizes[torch.randint(len(sample_Ps), (total, k_max), generator=generator, device=device)]  # T x K
    span = (torch.tensor([height, width], device=device) - patch.unsqueeze(-1) + 1).to(torch.float64)  # T x K x 2
    if samp == "normal":
        z = torch.randn(total, k_max, 2, generator=generator, device=device, dtype=torch.float64)
        pos = (span / 2 + z * span / 4).clamp(min=torch.zeros_like(span), max=span - 1)
    else:
        pos = torch.rand(total, k_max, 2, generator=generator, device=device, dtype=torch.float64) * span
    pos = pos.floor().long().minimum(span.long() - 1)  # T x K x 2, top-left (h, w)
    return HintGeometry(counts, patch, pos[..., 0], pos[..., 1])


def paint_hints(ab: Tensor, geometry: HintGeometry, sample_Ps: Sequence[int] = DEFAULT_SAMPLE_PS,
                use_avg: bool = True) -> tuple[Tensor, Tensor]:
    """Paint the hint patches of ``geometry`` (one row per image of ``ab``) from ground-truth ab.

    ab: normalised ab, N x 2 x H x W. Returns (hint_ab, mask) as :func:`add_color_patches`. Where
    patches overlap, the later one wins, as in the original's sequential painting.
    The work is proportional to the patch pixels (N x K x P x P), not to the image: each patch's
    mean is a sum over its own gathered pixels, and each pixel is written by its winning patch.
    """
    n, _, height, width = ab.shape
    device = ab.device
    counts, patch, top, left = geometry.counts, geometry.patch, geometry.top, geometry.left
    k_max = int(counts.max()) if n else 0
    if k_max == 0:
        return torch.zeros_like(ab), torch.zeros(n, 1, height, width, dtype=ab.dtype, device=device)
    hw = height * width
    patch, top, left = patch[:, :k_max], top[:, :k_max], left[:, :k_max]
    valid = torch.arange(k_max, device=device).unsqueeze(0) < counts.unsqueeze(1)  # N x K

    # Every (image, hint, dy, dx) of a P_max x P_max footprint; `inside` marks the patch's own pixels.
    p_max = int(max(sample_Ps))
    offs = torch.arange(p_max, device=device)
    dy, dx = offs.view(1, 1, p_max, 1), offs.view(1, 1, 1, p_max)
    inside = (dy < patch[..., None, None]) & (dx < patch[..., None, None]) & valid[..., None, None]
    rows = (top[..., None, None] + dy).clamp_max(height - 1)
    cols = (left[..., None, None] + dx).clamp_max(width - 1)
    pixel = (rows * width + cols).reshape(n, -1)  # N x KPP, flat pixel index
    hint_id = torch.where(inside, torch.arange(k_max, device=device).view(1, k_max, 1, 1), -1).reshape(n, -1)

    # Which hint paints each pixel: the highest-numbered patch covering it ("later wins", as the
    # original's sequential painting). Entries that do not win write to a spare slot past the image.
    winner = torch.full((n, hw), -1, dtype=torch.long, device=device)
    winner.scatter_reduce_(1, pixel, hint_id, reduce="amax")
    wins = (hint_id >= 0) & (winner.gather(1, pixel) == hint_id)
    target = torch.where(wins, pixel, hw)

    values = ab.flatten(2).gather(2, pixel.unsqueeze(1).expand(n, 2, -1))  # N x 2 x KPP
    if use_avg:
        sums = torch.where(inside.reshape(n, 1, -1), values, 0).view(n, 2, k_max, p_max * p_max).sum(-1)
        colour = sums / (patch * patch).unsqueeze(1).to(ab.dtype)  # N x 2 x K patch means
        values = colour.gather(2, hint_id.clamp_min(0).unsqueeze(1).expand(n, 2, -1))
    hint_ab = torch.zeros(n, 2, hw + 1, dtype=ab.dtype, device=device)
    hint_ab.scatter_(2, target.unsqueeze(1).expand(n, 2, -1), values)
    mask = torch.zeros(n, hw + 1, dtype=ab.dtype, device=device)
    mask.scatter_(1, target, 1.0)
    return hint_ab[:, :, :hw].reshape(n, 2, height, width), mask[:, :hw].reshape(n, 1, height, width)


def add_color_patches(
    ab: Tensor,
    p: float = 0.125,
    num_points: Optional[Union[int, Tensor]] = None,
    sample_Ps: Sequence[int] = DEFAULT_SAMPLE_PS,
    samp: str = "normal",
    use_avg: bool = True,
    generator: Optional[torch.Generator] = None,
) -> tuple[Tensor, Tensor]:
    """Sample random hint patches from ground-truth ab.

    Args:
        ab: normalised ground-truth ab, N x 2 x H x W.
        p: geometric parameter of the hint count (used when ``num_points`` is None).
        num_points: exact number of hints, an int for every image or an int64 tensor of length N.
        sample_Ps: candidate square patch sizes, drawn uniformly; each must be <= min(H, W).
        samp: 'normal' (the original's centred placement) or 'uniform'.
        use_avg: fill a patch with its mean ground-truth ab (True, the original's default) or
            copy the ground-truth pixels (False).
        generator: torch.Generator on ``ab.device`` (None: the global RNG).

    Returns:
        (hint_ab, mask): N x 2 x H x W normalised hint ab (0 outside hints) and the uncentred
        N x 1 x H x W mask in {0, 1}, both of ab's dtype.
    """
    n, _, height, width = ab.shape
    geometry = sample_hint_geometry(n, height, width, p, num_points, sample_Ps, samp, generator, ab.device)
    return paint_hints(ab, geometry, sample_Ps, use_avg)


def get_colorization_data(
    rgb: Tensor,
    *,
    ab_thresh: float = AB_THRESH,
    p: float = 0.125,
    num_points: Optional[Union[int, Tensor]] = None,
    sample_Ps: Sequence[int] = DEFAULT_SAMPLE_PS,
    samp: str = "normal",
    l_cent: float = L_CENT,
    l_norm: float = L_NORM,
    ab_norm: float = AB_NORM,
    mask_cent: float = 0.5,
    generator: Optional[torch.Generator] = None,
    rows: Optional[Tensor] = None,
    total: Optional[int] = None,
) -> Optional[ColorizationBatch]:
    """Build a colorization batch from RGB images on their device.

    Args:
        rgb: sRGB, N x 3 x H x W: floats in [0, 1], or uint8 straight from the loaders (faster;
            see util.color.rgb2lab_norm).
        ab_thresh: grayscale filter threshold in Lab units (5 in training, 0 disables it).
        p, num_points, sample_Ps, samp: hint sampling, see :func:`add_color_patches`; a
            per-image num_points tensor has one entry per geometry row (length ``total``).
        l_cent, l_norm, ab_norm: Lab normalisation.
        mask_cent: subtracted from the {0, 1} mask fed to the network (0.5 default; 0 for the
            original caffe weights).
        generator: torch.Generator on rgb's device for the hints.
        rows, total: the hint geometry is drawn for ``total`` images (default N) and image i gets
            row ``rows[i]`` (default i). Data-parallel training passes each process's rows of the
            global batch, so that the processes together get the hints of one process holding the
            whole batch. The geometry is drawn before the grayscale filter, so the generator
            advances by the same amount whatever is dropped.

    Returns:
        A :class:`ColorizationBatch` of the kept images, or None when the filter drops all.
    """
    n, _, height, width = rgb.shape
    total = n if total is None else total
    rows = torch.arange(n, device=rgb.device) if rows is None else rows.to(rgb.device)
    geometry = sample_hint_geometry(total, height, width, p, num_points, sample_Ps, samp, generator, rgb.device)
    if n == 0:
        return None
    lab = rgb2lab_norm(rgb, l_cent, l_norm, ab_norm)
    keep = colorful_mask(lab[:, 1:], ab_thresh, ab_norm)
    if not bool(keep.any()):
        return None
    if not bool(keep.all()):
        lab, rows = lab[keep], rows[keep]
    ab = lab[:, 1:]
    hint_ab, mask = paint_hints(ab, geometry.rows(rows), sample_Ps, use_avg=True)
    return ColorizationBatch(A=lab[:, :1], B=ab, hint_B=hint_ab, mask_B=mask - mask_cent, keep=keep)
