"""Colorize one photo with a trained SIGGRAPH17 generator, optionally guided by user colour hints.

The library behind ``colorize.py`` (docs/colorize.md): :func:`colorize` takes an RGB tensor and
:class:`Hint` objects (from :func:`parse_hint` or :func:`load_hints_json`); tests and a future app
call it directly.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from util.color import AB_NORM, L_CENT, L_NORM, lab_norm2rgb, rgb2lab, rgb2lab_norm

_COLOR_RE = re.compile(r"#([0-9a-fA-F]{6})")


class HintError(ValueError):
    """A hint that cannot be parsed or does not fit the image (the message is one line)."""


@dataclass(frozen=True)
class Hint:
    """One user colour hint.

    Attributes:
        x: column of the hint's centre in INPUT-image pixels, 0-based (0 <= x < width).
        y: row of the hint's centre in INPUT-image pixels, 0-based (0 <= y < height).
        rgb: the colour, 8-bit sRGB. Only its Lab ab is used: the output keeps the photo's L.
        size: side of the square patch in NETWORK pixels (default 1). The model was trained with
            1..9 px patches at 176 px, so sizes in that range are what it knows. The patch is
            centred on the mapped point (one extra row/column below/right for an even size) and
            shifted inside the image where it would stick out.
        source: how the user gave it, for error messages (e.g. "--hint 10,20,#ff0000").
    """

    x: int
    y: int
    rgb: Tuple[int, int, int]
    size: int = 1
    source: str = field(default="hint", compare=False)


def parse_color(text: str) -> Tuple[int, int, int]:
    """'#rrggbb' (hex, either case) -> (r, g, b) in 0..255; HintError otherwise."""
    match = _COLOR_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise HintError(f"colour {text!r} is not of the form #rrggbb")
    value = match.group(1)
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def _make_hint(x, y, color, size, source: str) -> Hint:
    for name, value in (("x", x), ("y", y), ("size", size)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise HintError(f"{source}: {name} must be an integer, got {value!r}")
    if x < 0 or y < 0:
        raise HintError(f"{source}: x and y must be >= 0 (0-based pixel coordinates), got ({x}, {y})")
    if size < 1:
        raise HintError(f"{source}: size must be >= 1, got {size}")
    try:
        rgb = parse_color(color)
    except HintError as e:
        raise HintError(f"{source}: {e}") from None
    return Hint(x, y, rgb, size, source)


def parse_hint(text: str) -> Hint:
    """Parse ``X,Y,#rrggbb[,SIZE]`` (the ``--hint`` syntax). See :class:`Hint` for the units."""
    source = f"--hint {text}"
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (3, 4):
        raise HintError(f"{source}: expected X,Y,#rrggbb or X,Y,#rrggbb,SIZE")
    numbers = []
    for name, part in zip(("X", "Y", "SIZE"), parts[:2] + parts[3:]):
        try:
            numbers.append(int(part))
        except ValueError:
            raise HintError(f"{source}: {name} must be an integer, got {part!r}") from None
    x, y = numbers[:2]
    size = numbers[2] if len(numbers) == 3 else 1
    return _make_hint(x, y, parts[2], size, source)


def hints_from_json(obj, name: str = "JSON") -> List[Hint]:
    """Hints from a decoded JSON value: a list of ``{"x", "y", "color"[, "size"]}`` objects, or an
    object ``{"hints": [...]}`` holding such a list. Unknown keys are refused (they are typos)."""
    if isinstance(obj, dict):
        if set(obj) != {"hints"}:
            raise HintError(f"{name}: expected a list of hints or {{\"hints\": [...]}}, got keys {sorted(obj)}")
        obj = obj["hints"]
    if not isinstance(obj, list):
        raise HintError(f"{name}: expected a list of hints, got {type(obj).__name__}")
    hints = []
    for i, item in enumerate(obj):
        source = f"{name} hint {i}"
        if not isinstance(item, dict):
            raise HintError(f"{source}: expected an object {{\"x\", \"y\", \"color\"[, \"size\"]}}, got {item!r}")
        missing = [k for k in ("x", "y", "color") if k not in item]
        unknown = sorted(set(item) - {"x", "y", "color", "size"})
        if missing or unknown:
            what = "; ".join(s for s in (missing and f"missing {', '.join(missing)}",
                                         unknown and f"unknown key(s) {', '.join(unknown)}") if s)
            raise HintError(f"{source}: {what} (keys are x, y, color and optional size)")
        hints.append(_make_hint(item["x"], item["y"], item["color"], item.get("size", 1), source))
    return hints


def load_hints_json(path: str) -> List[Hint]:
    """Read hints from a JSON file (format of :func:`hints_from_json`); HintError on any problem."""
    try:
        with open(path) as f:
            obj = json.load(f)
    except FileNotFoundError:
        raise HintError(f"{path}: no such hints file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise HintError(f"{path}: cannot read hints file ({e})") from None
    except json.JSONDecodeError as e:
        raise HintError(f"{path}: not valid JSON ({e})") from None
    return hints_from_json(obj, path)


def _round8(value: float) -> int:
    """Nearest multiple of 8, at least 8."""
    return max(8, 8 * int(math.floor(value / 8.0 + 0.5)))


def network_size(height: int, width: int, load_size: int) -> Tuple[int, int]:
    """The network's H x W for an H x W input (both multiples of 8).

    load_size > 0: shorter side load_size, longer side scaled by the aspect ratio, each rounded
    to the nearest multiple of 8 (at least 8). load_size 0: H and W rounded UP to multiples of 8
    (the image is padded, see :func:`colorize`).
    """
    if load_size < 0:
        raise ValueError(f"load_size must be >= 0, got {load_size}")
    if load_size == 0:
        return 8 * math.ceil(height / 8), 8 * math.ceil(width / 8)
    short = _round8(load_size)
    if height <= width:
        return short, _round8(short * width / height)
    return _round8(short * height / width), short


def hint_ab(rgb: Tuple[int, int, int], ab_norm: float = AB_NORM) -> Tuple[float, float]:
    """Normalised ab (a / ab_norm, b / ab_norm) of an 8-bit sRGB colour."""
    pixel = torch.tensor(rgb, dtype=torch.float64).view(1, 3, 1, 1) / 255.0
    lab = rgb2lab(pixel).flatten()
    return float(lab[1]) / ab_norm, float(lab[2]) / ab_norm


def paint_hints(hints: Sequence[Hint], image_hw: Tuple[int, int], net_hw: Tuple[int, int],
                content_hw: Tuple[int, int], ab_norm: float = AB_NORM,
                device: torch.device | str = "cpu") -> Tuple[Tensor, Tensor]:
    """Hint channels at network resolution.

    Args:
        hints: in input-image pixel coordinates; each must lie inside the image (HintError).
        image_hw: the input image's (H, W).
        net_hw: the network input's (Hn, Wn).
        content_hw: the part of the network input, from its top-left corner, that shows the image
            (all of it when resized; the unpadded part with load_size 0).
    The centre (x, y) maps to (floor((x + 0.5) * Wc / W), floor((y + 0.5) * Hc / H)), the network
    pixel that contains the input pixel's centre. Later hints overwrite earlier ones where they
    overlap.

    Returns (hint_B, mask): 1 x 2 x Hn x Wn normalised ab (0 outside patches) and 1 x 1 x Hn x Wn
    mask in {0, 1} (NOT yet centred by mask_cent).
    """
    height, width = image_hw
    content_h, content_w = content_hw
    hint_B = torch.zeros(1, 2, *net_hw, device=device)
    mask = torch.zeros(1, 1, *net_hw, device=device)
    for hint in hints:
        if not (0 <= hint.x < width and 0 <= hint.y < height):
            raise HintError(f"{hint.source}: ({hint.x}, {hint.y}) is outside the {width}x{height} image "
                            f"(0 <= x < {width}, 0 <= y < {height})")
        row = min(int((hint.y + 0.5) * content_h / height), content_h - 1)
        col = min(int((hint.x + 0.5) * content_w / width), content_w - 1)
        size_h, size_w = min(hint.size, content_h), min(hint.size, content_w)
        top = min(max(row - (size_h - 1) // 2, 0), content_h - size_h)
        left = min(max(col - (size_w - 1) // 2, 0), content_w - size_w)
        a, b = hint_ab(hint.rgb, ab_norm)
        hint_B[:, 0, top:top + size_h, left:left + size_w] = a
        hint_B[:, 1, top:top + size_h, left:left + size_w] = b
        mask[:, :, top:top + size_h, left:left + size_w] = 1.0
    return hint_B, mask


@torch.inference_mode()
def colorize(net: nn.Module, rgb: Tensor, hints: Sequence[Hint] = (), load_size: int = 256,
             mask_cent: float = 0.5) -> Tensor:
    """Colorize one image.

    Args:
        net: a SIGGRAPHGenerator (put in eval mode here) on the same device as ``rgb``.
        rgb: sRGB in [0, 1], 1 x 3 x H x W (or 3 x H x W), any H, W >= 1; only its L is used.
        hints: user hints in input pixel coordinates (:class:`Hint`).
        load_size: network size, see :func:`network_size`; 0 for native size.
        mask_cent: subtracted from the {0, 1} hint mask: 0.5 for our and the retrained models,
            0 for the official caffemodel weights.
    Returns sRGB in [0, 1], 1 x 3 x H x W: the input's L with the predicted ab.

    Steps, all on rgb's device:

    1. L = rgb2lab_norm(rgb)[:, :1] at full resolution (a colour input simply loses its ab).
    2. The network input, with sides in multiples of 8 (the generator needs that): with
       load_size > 0 the RGB image is resized (bilinear, antialiased, like the evaluation
       transform) keeping its aspect ratio, and L is taken from it; photos are not squashed, unlike
       test.py, which mirrors the paper's benchmark. With load_size 0 the full-resolution L is
       padded at the bottom and right by replicating the last row/column, so no pixel is resampled.
    3. The hints are painted at network resolution (:func:`paint_hints`), and the network is fed
       ``mask - mask_cent``, as in training and the original's util/util.py add_color_patch.
    4. The generator's regression output (normalised ab) is cropped back (load_size 0) or upsampled
       bilinearly (align_corners=False) to H x W, joined with the full-resolution L, converted with
       lab_norm2rgb and clipped to [0, 1].

    Saved as uint8 (util.image.to_uint8, truncating), the result of a 256 x 256 input equals the
    ``fake_reg`` image test.py writes for it.
    """
    if rgb.dim() == 3:
        rgb = rgb.unsqueeze(0)
    if rgb.dim() != 4 or rgb.shape[:2] != (1, 3):
        raise ValueError(f"expected one RGB image 1 x 3 x H x W, got {tuple(rgb.shape)}")
    rgb = rgb.float()
    height, width = rgb.shape[2:]
    net_h, net_w = network_size(height, width, load_size)
    L = rgb2lab_norm(rgb, L_CENT, L_NORM, AB_NORM)[:, :1]
    if load_size == 0:
        content_hw = (height, width)
        net_L = F.pad(L, (0, net_w - width, 0, net_h - height), mode="replicate")
    else:
        content_hw = (net_h, net_w)
        small = F.interpolate(rgb, size=(net_h, net_w), mode="bilinear", align_corners=False, antialias=True)
        net_L = rgb2lab_norm(small.clamp(0.0, 1.0), L_CENT, L_NORM, AB_NORM)[:, :1]
    hint_B, mask = paint_hints(hints, (height, width), (net_h, net_w), content_hw, AB_NORM, rgb.device)

    net.eval()
    _, out_reg = net(net_L, hint_B, mask - mask_cent)
    if load_size == 0:
        ab = out_reg[:, :, :height, :width]
    else:
        ab = F.interpolate(out_reg, size=(height, width), mode="bilinear", align_corners=False)
    return lab_norm2rgb(torch.cat((L, ab), dim=1), L_CENT, L_NORM, AB_NORM).clamp(0.0, 1.0)
