"""Colour conversion and ab quantisation, as in the original's util/util.py, and the Lab constants.

Every function works on NCHW torch tensors of any floating dtype on any device, and is
differentiable. RGB is sRGB in [0, 1] (what ``ToTensor`` gives); Lab is CIE L*a*b* (D65, 2 degree
observer) with L in [0, 100] and a, b roughly in [-110, 110]; "normalised" Lab, what the network
sees, is ``((L - L_CENT) / L_NORM, a / AB_NORM, b / AB_NORM)``. The constants are the original's
(they match ``skimage.color`` to ~1e-13 in float64); the piecewise functions use ``torch.where`` on
a clamped input, so the unused branch never puts NaN/inf into the gradient.
"""
from __future__ import annotations

import torch
from torch import Tensor

# Linear sRGB -> XYZ (rows X, Y, Z) and its inverse, with the original's digits.
_RGB_TO_XYZ = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_XYZ_TO_RGB = (
    (3.24048134, -1.53715152, -0.49853633),
    (-0.96925495, 1.87599, 0.04155593),
    (0.05564664, -0.20404134, 1.05731107),
)
_WHITE_D65 = (0.95047, 1.0, 1.08883)

# The network's Lab normalisation and ab quantisation (the original's option defaults, which the
# official weights were trained with): L_norm = (L - L_CENT) / L_NORM, ab_norm = ab / AB_NORM,
# and a 23 x 23 grid of ab bins of width AB_QUANT over [-AB_MAX, AB_MAX].
L_CENT, L_NORM, AB_NORM = 50.0, 100.0, 110.0
AB_MAX, AB_QUANT = 110.0, 10.0

#: Training images whose ab range (max - min, Lab units) is below this are dropped as grayscale
#: (the original's get_colorization_data default).
AB_THRESH = 5.0


def _mix3(x: Tensor, matrix) -> Tensor:
    """Apply a 3x3 colour matrix to the channel axis of an N x 3 x H x W tensor."""
    m = torch.tensor(matrix, dtype=x.dtype, device=x.device)
    return torch.einsum("ij,njhw->nihw", m, x)


def _white(x: Tensor) -> Tensor:
    return torch.tensor(_WHITE_D65, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)


def rgb2xyz(rgb: Tensor) -> Tensor:
    """sRGB in [0, 1], N x 3 x H x W -> CIE XYZ (D65), same shape."""
    lin = torch.where(
        rgb > 0.04045,
        ((rgb.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4,
        rgb / 12.92,
    )
    return _mix3(lin, _RGB_TO_XYZ)


def xyz2lab(xyz: Tensor) -> Tensor:
    """CIE XYZ (D65), N x 3 x H x W -> Lab in Lab units (L in [0, 100])."""
    t = xyz / _white(xyz)
    f = torch.where(t > 0.008856, t.clamp_min(0.008856) ** (1.0 / 3.0), 7.787 * t + 16.0 / 116.0)
    fx, fy, fz = f[:, 0:1], f[:, 1:2], f[:, 2:3]
    return torch.cat((116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)), dim=1)


def lab2xyz(lab: Tensor) -> Tensor:
    """Lab in Lab units, N x 3 x H x W -> CIE XYZ (D65). Clamps f_z at 0, as the original."""
    L, a, b = lab[:, 0:1], lab[:, 1:2], lab[:, 2:3]
    fy = (L + 16.0) / 116.0
    fx = a / 500.0 + fy
    fz = (fy - b / 200.0).clamp_min(0.0)
    f = torch.cat((fx, fy, fz), dim=1)
    t = torch.where(f > 0.2068966, f**3, (f - 16.0 / 116.0) / 7.787)
    return t * _white(lab)


def xyz2rgb(xyz: Tensor) -> Tensor:
    """CIE XYZ (D65) -> sRGB. Clamped below at 0 (as the original) but NOT above 1."""
    lin = _mix3(xyz, _XYZ_TO_RGB).clamp_min(0.0)
    return torch.where(
        lin > 0.0031308,
        1.055 * lin.clamp_min(0.0031308) ** (1.0 / 2.4) - 0.055,
        12.92 * lin,
    )


def rgb2lab(rgb: Tensor) -> Tensor:
    """sRGB in [0, 1] -> Lab in Lab units. N x 3 x H x W both."""
    return xyz2lab(rgb2xyz(rgb))


def lab2rgb(lab: Tensor) -> Tensor:
    """Lab in Lab units -> sRGB, >= 0 but possibly above 1. N x 3 x H x W both."""
    return xyz2rgb(lab2xyz(lab))


def rgb2lab_norm(rgb: Tensor, l_cent: float = L_CENT, l_norm: float = L_NORM, ab_norm: float = AB_NORM) -> Tensor:
    """sRGB, N x 3 x H x W -> normalised Lab ``[(L - l_cent)/l_norm, a/ab_norm, b/ab_norm]``.

    rgb: floats in [0, 1], or uint8 in 0..255 (as the data loaders deliver it): then the sRGB
    curve is a 256-entry table and the result is float32, within 1e-6 of the float path and about
    twice as fast (it is most of the cost of building a training batch on the CPU). Not
    differentiable for uint8 input, which has no gradient anyway.
    """
    if rgb.dtype == torch.uint8:
        return _rgb8_to_lab_norm(rgb, l_cent, l_norm, ab_norm)
    lab = rgb2lab(rgb)
    return torch.cat(((lab[:, 0:1] - l_cent) / l_norm, lab[:, 1:] / ab_norm), dim=1)


_SRGB8_TO_LINEAR: dict = {}


def _rgb8_to_lab_norm(rgb8: Tensor, l_cent: float, l_norm: float, ab_norm: float) -> Tensor:
    """rgb2lab_norm of uint8 sRGB: the same formulas, with the sRGB curve looked up in a table
    (computed in float64), the white point folded into the colour matrix and in-place arithmetic."""
    device = rgb8.device
    if device not in _SRGB8_TO_LINEAR:
        v = torch.arange(256, dtype=torch.float64) / 255.0
        table = torch.where(v > 0.04045, ((v + 0.055) / 1.055) ** 2.4, v / 12.92)
        matrix = torch.tensor(_RGB_TO_XYZ, dtype=torch.float64) / torch.tensor(_WHITE_D65, dtype=torch.float64).view(3, 1)
        _SRGB8_TO_LINEAR[device] = (table.float().to(device), matrix.float().to(device))
    table, matrix = _SRGB8_TO_LINEAR[device]
    linear = table.index_select(0, rgb8.reshape(-1).int()).view(rgb8.shape)
    t = torch.einsum("ij,njhw->nihw", matrix, linear)  # XYZ / white
    f = torch.where(t > 0.008856, t.clamp_min(0.008856).pow_(1.0 / 3.0), t.mul(7.787).add_(16.0 / 116.0))
    fx, fy, fz = f[:, 0:1], f[:, 1:2], f[:, 2:3]
    return torch.cat(((fy * 116.0 - (16.0 + l_cent)).div_(l_norm), (fx - fy).mul_(500.0 / ab_norm),
                      (fy - fz).mul_(200.0 / ab_norm)), dim=1)


def lab_norm2rgb(lab_norm: Tensor, l_cent: float = L_CENT, l_norm: float = L_NORM, ab_norm: float = AB_NORM) -> Tensor:
    """Normalised Lab, N x 3 x H x W -> sRGB (>= 0, not clipped above)."""
    lab = torch.cat((lab_norm[:, 0:1] * l_norm + l_cent, lab_norm[:, 1:] * ab_norm), dim=1)
    return lab2rgb(lab)


def num_ab_bins(ab_max: float = AB_MAX, ab_quant: float = AB_QUANT) -> int:
    """Bins per ab axis: 2 * ab_max / ab_quant + 1 (23 by default, so 529 classes)."""
    return int(round(2.0 * ab_max / ab_quant)) + 1


def encode_ab_ind(ab_norm_t: Tensor, ab_norm: float = AB_NORM, ab_max: float = AB_MAX, ab_quant: float = AB_QUANT) -> Tensor:
    """Quantise normalised ab, N x 2 x H x W, to class indices N x 1 x H x W (int64).

    bin = round((ab * ab_norm + ab_max) / ab_quant) per channel (halves to even, as torch.round),
    q = bin_a * A + bin_b with A = 23 bins per axis. Values outside the grid are clamped to it.
    """
    n_bins = num_ab_bins(ab_max, ab_quant)
    bins = torch.round((ab_norm_t * ab_norm + ab_max) / ab_quant).clamp_(0, n_bins - 1).long()
    return bins[:, 0:1] * n_bins + bins[:, 1:2]


def decode_ind_ab(q: Tensor, ab_norm: float = AB_NORM, ab_max: float = AB_MAX, ab_quant: float = AB_QUANT) -> Tensor:
    """Class indices N x 1 x H x W -> normalised ab N x 2 x H x W of the bin centres.

    Uses floor division (a = q // 23, b = q % 23); the original's true division on modern torch
    is a bug (in its util/util.py decode_ind_ab) that this fixes.
    """
    n_bins = num_ab_bins(ab_max, ab_quant)
    q = q.long()
    a = torch.div(q, n_bins, rounding_mode="floor")
    b = q - a * n_bins
    ab = torch.cat((a, b), dim=1).to(torch.get_default_dtype())
    return (ab * ab_quant - ab_max) / ab_norm


def decode_max_ab(scores: Tensor, ab_norm: float = AB_NORM, ab_max: float = AB_MAX, ab_quant: float = AB_QUANT) -> Tensor:
    """Logits or probabilities N x 529 x h x w -> normalised ab of the argmax bin, N x 2 x h x w."""
    q = scores.argmax(dim=1, keepdim=True)
    return decode_ind_ab(q, ab_norm, ab_max, ab_quant).to(scores.dtype)


def decode_mean(probs: Tensor, ab_norm: float = AB_NORM, ab_max: float = AB_MAX, ab_quant: float = AB_QUANT) -> Tensor:
    """Probabilities N x 529 x h x w -> expected normalised ab, N x 2 x h x w.

    The 529 channels are read as a 23 (a) x 23 (b) grid, q = a * 23 + b; E[a] uses the marginal
    over b and vice versa. Bin centres are -110, -100, ..., 110.
    """
    n_bins = num_ab_bins(ab_max, ab_quant)
    n, _, h, w = probs.shape
    grid = probs.view(n, n_bins, n_bins, h, w)
    centres = (torch.arange(n_bins, device=probs.device, dtype=probs.dtype) * ab_quant - ab_max).view(1, n_bins, 1, 1)
    mean_a = (grid.sum(dim=2) * centres).sum(dim=1, keepdim=True)
    mean_b = (grid.sum(dim=1) * centres).sum(dim=1, keepdim=True)
    return torch.cat((mean_a, mean_b), dim=1) / ab_norm


def hsv_saturation(rgb: Tensor, eps: float = 1e-6) -> Tensor:
    """HSV saturation (max - min) / max of RGB N x 3 x H x W, values clipped to [0, 1] first.

    Returns N x 1 x H x W in [0, 1]; 0 for black. Differentiable (through the max/min channels).
    """
    rgb = rgb.clamp(0.0, 1.0)
    cmax = rgb.amax(dim=1, keepdim=True)
    cmin = rgb.amin(dim=1, keepdim=True)
    return (cmax - cmin) / cmax.clamp_min(eps)
