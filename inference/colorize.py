"""Colorize one photo with a trained SIGGRAPH17 generator, optionally guided by user colour hints.

The library behind ``colorize.py`` and ``app.py`` (docs/colorize.md, docs/app.md): :func:`colorize`
takes an RGB tensor and :class:`Hint` objects (from :func:`parse_hint` or :func:`load_hints_json`);
:func:`suggest_colors` gives the most probable colours of the network's 529-bin distribution at a
point; :class:`Colorizer` holds a loaded generator with the settings of a run and does both for a
PIL image within a memory budget (:func:`check_budget`).
"""
from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from util.color import AB_NORM, L_CENT, L_NORM, decode_ind_ab, lab2rgb, lab_norm2rgb, rgb2lab, rgb2lab_norm
from util.image import to_uint8
from util.perf import FirstCallFallback, call_with_flags, maybe_compile

_COLOR_RE = re.compile(r"#([0-9a-fA-F]{6})")


#: Default cap (px) on the network input's longer side when resizing (load_size > 0): a 3 x 2000
#: strip at load_size 256 would otherwise run at 256 x 170,664 (about 100 GB of activations).
MAX_SIDE = 2048
#: Working memory of one colorization, measured as the growth of the peak resident set of a CPU
#: process (fp32, torch 2.14, 1 thread): about 2,170 bytes per network pixel (the generator's
#: activations; 512 x 512 -> 1024 x 512 added 594 MB) and about 100 bytes per input pixel (the
#: full-resolution Lab conversions and the upsampled ab; 2048^2 -> 4096 x 2048 added 382 MB);
#: rounded up, so the estimate errs on the safe side.
NET_BYTES_PER_PIXEL = 2400
IMAGE_BYTES_PER_PIXEL = 128
#: Default memory budget of one colorization (GB, 1e9 bytes).
MAX_MEMORY_GB = 4.0


class HintError(ValueError):
    """A hint that cannot be parsed or does not fit the image (the message is one line)."""


class BudgetError(ValueError):
    """An image whose colorization would need more memory than the budget (the message is one line)."""


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


def network_size(height: int, width: int, load_size: int, max_side: Optional[int] = None) -> Tuple[int, int]:
    """The network's H x W for an H x W input (both multiples of 8).

    load_size > 0: shorter side load_size, longer side scaled by the aspect ratio, each rounded
    to the nearest multiple of 8 (at least 8). Then, if ``max_side`` is given and the longer side
    exceeds it, the longer side becomes max_side (rounded down to a multiple of 8, at least 8) and
    the shorter one is scaled with it (nearest multiple of 8, at least 8): the aspect ratio is
    kept as far as the cap allows. load_size 0: H and W rounded UP to multiples of 8 (the image is
    padded, see :func:`colorize`); max_side does not apply (the memory budget does, see
    :func:`check_budget`).
    """
    if load_size < 0:
        raise ValueError(f"load_size must be >= 0, got {load_size}")
    if load_size == 0:
        return 8 * math.ceil(height / 8), 8 * math.ceil(width / 8)
    short_in, long_in = min(height, width), max(height, width)
    short = _round8(load_size)
    long = _round8(short * long_in / short_in)
    if max_side is not None and long > max_side:
        long = max(8, 8 * (max_side // 8))
        short = min(_round8(long * short_in / long_in), long)
    return (short, long) if height <= width else (long, short)


def estimate_bytes(image_hw: Tuple[int, int], net_hw: Tuple[int, int]) -> int:
    """Estimated working memory (bytes) of one colorization of an image_hw input run at net_hw
    (NET_BYTES_PER_PIXEL, IMAGE_BYTES_PER_PIXEL); the weights are not counted."""
    return NET_BYTES_PER_PIXEL * net_hw[0] * net_hw[1] + IMAGE_BYTES_PER_PIXEL * image_hw[0] * image_hw[1]


def check_budget(height: int, width: int, load_size: int, max_side: Optional[int], max_memory_gb: float) -> None:
    """BudgetError (one line saying what to change) if colorizing an H x W image with these
    settings would need more than max_memory_gb GB by :func:`estimate_bytes`."""
    net_h, net_w = network_size(height, width, load_size, max_side)
    need = estimate_bytes((height, width), (net_h, net_w))
    if need <= max_memory_gb * 1e9:
        return
    if net_h * net_w * NET_BYTES_PER_PIXEL <= need / 2:
        advice = "the image itself is too large: shrink it"
    elif load_size == 0:
        advice = "use a --load_size such as 256 instead of 0 (the native size)"
    else:
        advice = "use a smaller --load_size or --max_side"
    raise BudgetError(f"a {width}x{height} image at network {net_w}x{net_h} needs about {need / 1e9:.2g} GB, "
                      f"over the budget of {max_memory_gb:g} GB (--max_memory_gb); {advice}")


def hint_ab(rgb: Tuple[int, int, int], ab_norm: float = AB_NORM) -> Tuple[float, float]:
    """Normalised ab (a / ab_norm, b / ab_norm) of an 8-bit sRGB colour."""
    pixel = torch.tensor(rgb, dtype=torch.float64).view(1, 3, 1, 1) / 255.0
    lab = rgb2lab(pixel).flatten()
    return float(lab[1]) / ab_norm, float(lab[2]) / ab_norm


def network_pixel(x: int, y: int, image_hw: Tuple[int, int], content_hw: Tuple[int, int]) -> Tuple[int, int]:
    """(row, col) of the network pixel that contains the centre of input pixel (x, y):
    (floor((y + 0.5) * Hc / H), floor((x + 0.5) * Wc / W)); see :func:`paint_hints`."""
    (height, width), (content_h, content_w) = image_hw, content_hw
    return (min(int((y + 0.5) * content_h / height), content_h - 1),
            min(int((x + 0.5) * content_w / width), content_w - 1))


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
        row, col = network_pixel(hint.x, hint.y, image_hw, content_hw)
        size_h, size_w = min(hint.size, content_h), min(hint.size, content_w)
        top = min(max(row - (size_h - 1) // 2, 0), content_h - size_h)
        left = min(max(col - (size_w - 1) // 2, 0), content_w - size_w)
        a, b = hint_ab(hint.rgb, ab_norm)
        hint_B[:, 0, top:top + size_h, left:left + size_w] = a
        hint_B[:, 1, top:top + size_h, left:left + size_w] = b
        mask[:, :, top:top + size_h, left:left + size_w] = 1.0
    return hint_B, mask


@dataclass
class NetworkInputs:
    """What the generator is fed for one image (see :func:`network_inputs`)."""

    L: Tensor  #: 1 x 1 x H x W normalised lightness at full resolution
    net_L: Tensor  #: 1 x 1 x Hn x Wn normalised lightness at network resolution
    hint_B: Tensor  #: 1 x 2 x Hn x Wn normalised hint ab
    mask: Tensor  #: 1 x 1 x Hn x Wn hint mask minus mask_cent
    content_hw: Tuple[int, int]  #: the part of the network input that shows the image


def network_inputs(rgb: Tensor, hints: Sequence[Hint], load_size: int, mask_cent: float,
                   max_side: Optional[int] = None) -> NetworkInputs:
    """Steps 1-3 of :func:`colorize` (its docstring gives them) for one 1 x 3 x H x W sRGB image."""
    if rgb.dim() == 3:
        rgb = rgb.unsqueeze(0)
    if rgb.dim() != 4 or rgb.shape[:2] != (1, 3):
        raise ValueError(f"expected one RGB image 1 x 3 x H x W, got {tuple(rgb.shape)}")
    rgb = rgb.float()
    height, width = rgb.shape[2:]
    net_h, net_w = network_size(height, width, load_size, max_side)
    L = rgb2lab_norm(rgb, L_CENT, L_NORM, AB_NORM)[:, :1]
    if load_size == 0:
        content_hw = (height, width)
        net_L = F.pad(L, (0, net_w - width, 0, net_h - height), mode="replicate")
    else:
        content_hw = (net_h, net_w)
        small = F.interpolate(rgb, size=(net_h, net_w), mode="bilinear", align_corners=False, antialias=True)
        net_L = rgb2lab_norm(small.clamp(0.0, 1.0), L_CENT, L_NORM, AB_NORM)[:, :1]
    hint_B, mask = paint_hints(hints, (height, width), (net_h, net_w), content_hw, AB_NORM, rgb.device)
    return NetworkInputs(L, net_L, hint_B, mask - mask_cent, content_hw)


def run_network(net: nn.Module, inputs: NetworkInputs, amp: bool = False,
                channels_last: bool = False) -> Tuple[Tensor, Tensor]:
    """The generator on ``inputs`` (eval mode, under the speed flags of util/perf.py): float32
    (class logits 1 x 529 x Hn/4 x Wn/4, normalised ab 1 x 2 x Hn x Wn)."""
    net.eval()
    out_class, out_reg = call_with_flags(net, (inputs.net_L, inputs.hint_B, inputs.mask), inputs.L.device,
                                         amp, channels_last)
    return out_class.float(), out_reg.float()


@torch.inference_mode()
def colorize(net: nn.Module, rgb: Tensor, hints: Sequence[Hint] = (), load_size: int = 256,
             mask_cent: float = 0.5, max_side: Optional[int] = None, amp: bool = False,
             channels_last: bool = False) -> Tensor:
    """Colorize one image.

    Args:
        net: a SIGGRAPHGenerator (put in eval mode here) on the same device as ``rgb``.
        rgb: sRGB in [0, 1], 1 x 3 x H x W (or 3 x H x W), any H, W >= 1; only its L is used.
        hints: user hints in input pixel coordinates (:class:`Hint`).
        load_size: network size, see :func:`network_size`; 0 for native size.
        mask_cent: subtracted from the {0, 1} hint mask: 0.5 for our and the retrained models,
            0 for the official caffemodel weights.
        max_side: cap on the network's longer side (:func:`network_size`); None: no cap.
        amp, channels_last: the speed flags (util/perf.py); off, the computation is fp32 eager.
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
    inputs = network_inputs(rgb, hints, load_size, mask_cent, max_side)
    _, out_reg = run_network(net, inputs, amp, channels_last)
    height, width = inputs.L.shape[2:]
    if load_size == 0:
        ab = out_reg[:, :, :height, :width]
    else:
        ab = F.interpolate(out_reg, size=(height, width), mode="bilinear", align_corners=False)
    return lab_norm2rgb(torch.cat((inputs.L, ab), dim=1), L_CENT, L_NORM, AB_NORM).clamp(0.0, 1.0)


@torch.inference_mode()
def suggest_colors(net: nn.Module, rgb: Tensor, x: int, y: int, hints: Sequence[Hint] = (), k: int = 8,
                   load_size: int = 256, mask_cent: float = 0.5, max_side: Optional[int] = None,
                   amp: bool = False, channels_last: bool = False) -> Tuple[List[Tuple[int, int, int]], float]:
    """The k most probable colours at input pixel (x, y) given ``hints``, as ideepcolor suggests them.

    The generator's class head gives a distribution over the 529 ab bins (23 x 23, util.color) at
    a quarter of the network resolution; at the cell holding (x, y) (mapped as the hints are,
    :func:`network_pixel`) the k bins of highest softmax probability are taken, most probable
    first, and each bin centre's ab is joined with the pixel's own lightness and converted to 8-bit
    sRGB (clipped where the colour is out of gamut; util.image.to_uint8). Arguments as in
    :func:`colorize`. Returns ([(r, g, b), ...], the pixel's L in 0..100).
    """
    inputs = network_inputs(rgb, hints, load_size, mask_cent, max_side)
    height, width = inputs.L.shape[2:]
    if not (0 <= x < width and 0 <= y < height):
        raise HintError(f"({x}, {y}) is outside the {width}x{height} image (0 <= x < {width}, 0 <= y < {height})")
    out_class, _ = run_network(net, inputs, amp, channels_last)
    row, col = network_pixel(x, y, (height, width), inputs.content_hw)
    cell = out_class[0, :, min(row // 4, out_class.shape[2] - 1), min(col // 4, out_class.shape[3] - 1)]
    top = torch.softmax(cell, dim=0).topk(min(k, cell.numel())).indices
    ab = decode_ind_ab(top.view(-1, 1, 1, 1)).to(inputs.L.device) * AB_NORM  # k x 2 x 1 x 1, Lab units
    lightness = float(inputs.L[0, 0, y, x]) * L_NORM + L_CENT
    lab = torch.cat((torch.full_like(ab[:, :1], lightness), ab), dim=1)
    colors = to_uint8(lab2rgb(lab).clamp(0.0, 1.0))[:, 0, 0]
    return [tuple(int(v) for v in c) for c in colors], lightness


def pil_to_tensor(image: Image.Image, device: torch.device | str = "cpu") -> Tensor:
    """An 8-bit RGB PIL image -> 1 x 3 x H x W float sRGB in [0, 1] on ``device``."""
    array = np.asarray(image.convert("RGB")).copy()
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).to(device).float().div_(255.0)


def tensor_to_pil(rgb: Tensor) -> Image.Image:
    """1 x 3 x H x W sRGB in [0, 1] -> an 8-bit RGB PIL image (truncated, see util.image.to_uint8)."""
    return Image.fromarray(np.ascontiguousarray(to_uint8(rgb)[0]))


@dataclass
class Colorizer:
    """A loaded generator with the settings of a run (colorize.py's and app.py's flags): the one
    way both colorize a PIL image, so that the app's result equals colorize.py's byte for byte.

    Every call first checks the memory budget (:func:`check_budget`, BudgetError) and the hints
    (HintError). ``compiled``: torch.compile of ``net`` (util.perf.maybe_compile), or None; its
    first call falls back to ``net`` with a one-line warning if compiling fails.
    """

    net: nn.Module
    device: torch.device
    load_size: int = 256
    mask_cent: float = 0.5
    max_side: Optional[int] = MAX_SIDE
    max_memory_gb: float = MAX_MEMORY_GB
    amp: bool = False
    channels_last: bool = False
    compiled: Optional[nn.Module] = None

    def __post_init__(self):
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self._guard = FirstCallFallback(pending=self.compiled is not None)
        self.last_forward_ms = 0.0

    def eval(self) -> "Colorizer":
        """(So that this object can stand in for the network in :func:`run_network`.)"""
        self.net.eval()
        return self

    def __call__(self, *inputs: Tensor):
        """The compiled network on ``inputs`` (the eager one if compiling failed or is off).
        Sets ``last_forward_ms``, the wall time of this call (synchronised on CUDA)."""
        def call():
            return (self.compiled if self.compiled is not None else self.net)(*inputs)
        start = time.perf_counter()
        outputs = self._guard(call, self._use_eager)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.last_forward_ms = 1000 * (time.perf_counter() - start)
        return outputs

    @classmethod
    def create(cls, net: nn.Module, device: torch.device, compile: bool = False, **settings) -> "Colorizer":
        """A Colorizer for ``net``, torch.compile'd when ``compile`` and supported."""
        compiled = maybe_compile(net, device, compile)
        return cls(net, device, compiled=None if compiled is net else compiled, **settings)

    def _size(self, load_size: Optional[int]) -> int:
        return self.load_size if load_size is None else load_size

    def network_size(self, height: int, width: int, load_size: Optional[int] = None) -> Tuple[int, int]:
        """The network's (H, W) for an H x W image at load_size (None: the run's --load_size)."""
        return network_size(height, width, self._size(load_size), self.max_side)

    def check(self, height: int, width: int, load_size: Optional[int] = None) -> None:
        """BudgetError if an H x W image does not fit the memory budget (:func:`check_budget`)."""
        check_budget(height, width, self._size(load_size), self.max_side, self.max_memory_gb)

    def _run(self, fn, image: Image.Image, load_size: Optional[int], *args):
        size = self._size(load_size)
        self.check(image.height, image.width, size)
        rgb = pil_to_tensor(image, self.device)
        return fn(self, rgb, *args, load_size=size, mask_cent=self.mask_cent, max_side=self.max_side,
                  amp=self.amp, channels_last=self.channels_last)

    def _use_eager(self) -> None:
        self.compiled = None

    def colorize_image(self, image: Image.Image, hints: Sequence[Hint] = (),
                       load_size: Optional[int] = None) -> Image.Image:
        """The colorized 8-bit RGB image, of the input's size (:func:`colorize`)."""
        return tensor_to_pil(self._run(colorize, image, load_size, hints))

    def suggest(self, image: Image.Image, x: int, y: int, hints: Sequence[Hint] = (), k: int = 8,
                load_size: Optional[int] = None) -> Tuple[List[Tuple[int, int, int]], float]:
        """:func:`suggest_colors` for a PIL image."""
        return self._run(suggest_colors, image, load_size, x, y, hints, k)
