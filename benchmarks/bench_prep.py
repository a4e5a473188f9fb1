"""Batch preparation: the vectorised util.hints against a per-image, per-point loop (images/s).

    python benchmarks/bench_prep.py                       # B=25, 176 px, the CUDA GPU if there is one
    python benchmarks/bench_prep.py --device cpu --repeats 5

Times what train.py does with a loaded batch (uint8 -> normalised Lab, grayscale filter, hints) in
two settings, ``train`` (--sample_p, patches 1..9, filter at 5) and ``sweep`` (exactly --num_points
hints, 6 x 6, no filter), against the original's algorithm written plainly
(``loop_colorization_data``). ``check`` holds the mean mask coverage of both, which must agree
within sampling noise. Prints one JSON line; the figures and measured values: docs/speed.md.
"""
from __future__ import annotations

import os
import statistics
import sys
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import benchmark_parser, compare, device_info, emit, paired_seconds  # noqa: E402
from util.color import rgb2lab_norm  # noqa: E402
from util.color import AB_THRESH  # noqa: E402
from util.hints import (DEFAULT_SAMPLE_PS, ColorizationBatch, colorful_mask, get_colorization_data,  # noqa: E402
                        paint_hints, sample_hint_geometry)

#: test_sweep.py's patch size.
SWEEP_SAMPLE_PS = (6,)


def loop_hints(ab: Tensor, rng: np.random.RandomState, p: float, num_points: Optional[int],
               sample_Ps: Sequence[int]) -> tuple[Tensor, Tensor]:
    """The original's hint sampling (its util/util.py add_color_patches_rand_gt), image by image and
    point by point, with numpy's RNG: before each point a Bernoulli(1 - p) draw decides whether
    another follows (or exactly num_points points), the patch size comes from sample_Ps, the
    top-left corner from a normal clipped to the image, and the patch is painted with its mean
    ground-truth ab, one slice assignment after the other.

    ab: normalised ground-truth ab, N x 2 x H x W. Returns (hint_ab N x 2 x H x W, mask N x 1 x H x W
    in {0, 1}), ab's dtype and device, like util.hints.add_color_patches.
    """
    n, _, height, width = ab.shape
    hint = torch.zeros_like(ab)
    mask = torch.zeros(n, 1, height, width, dtype=ab.dtype, device=ab.device)
    for i in range(n):
        drawn = 0
        while True:
            if num_points is None:
                if rng.rand() >= 1 - p:  # another point with probability 1 - p
                    break
            elif drawn == num_points:
                break
            size = int(rng.choice(sample_Ps))
            span_h, span_w = height - size + 1, width - size + 1
            top = int(np.clip(rng.normal(span_h / 2, span_h / 4), 0, height - size))
            left = int(np.clip(rng.normal(span_w / 2, span_w / 4), 0, width - size))
            patch = ab[i, :, top:top + size, left:left + size]
            hint[i, :, top:top + size, left:left + size] = patch.mean(dim=2, keepdim=True).mean(dim=1, keepdim=True)
            mask[i, :, top:top + size, left:left + size] = 1
            drawn += 1
    return hint, mask


def loop_colorization_data(rgb: Tensor, rng: np.random.RandomState, *, ab_thresh: float, p: float,
                           num_points: Optional[int], sample_Ps: Sequence[int],
                           mask_cent: float = 0.5) -> Optional[ColorizationBatch]:
    """The baseline batch: rgb (N x 3 x H x W in [0, 1]) -> a ColorizationBatch as
    util.hints.get_colorization_data gives (default Lab normalisation), or None if all are gray.

    It starts from float images, as the original did. The colour conversion and the grayscale filter
    are the same batched code as ours (the original's were batched too), so the two differ only in
    the hint sampling (:func:`loop_hints`)."""
    lab = rgb2lab_norm(rgb)
    keep = colorful_mask(lab[:, 1:], ab_thresh)
    if not bool(keep.any()):
        return None
    lab = lab[keep]
    hint, mask = loop_hints(lab[:, 1:], rng, p, num_points, sample_Ps)
    return ColorizationBatch(A=lab[:, :1], B=lab[:, 1:], hint_B=hint, mask_B=mask - mask_cent, keep=keep)


class Coverage:
    """The mean fraction of pixels under a hint, over the batches made."""

    def __init__(self):
        self.fractions: List[float] = []

    def add(self, batch: Optional[ColorizationBatch], mask_cent: float = 0.5) -> None:
        if batch is not None:
            self.fractions.append(float((batch.mask_B + mask_cent).mean()))

    def mean(self) -> Optional[float]:
        return round(statistics.fmean(self.fractions), 4) if self.fractions else None


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--batch_size", type=int, default=25, help="images per batch")
    parser.add_argument("--size", type=int, default=176, help="image side in pixels (>= 9)")
    parser.add_argument("--sample_p", type=float, default=0.125, help="train setting: geometric parameter p")
    parser.add_argument("--num_points", type=int, default=500, help="sweep setting: hints per image")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per measurement (the median is kept)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before them")
    parser.add_argument("--seed", type=int, default=0, help="images and both RNGs")
    args = parser.parse_args(argv)
    for flag in ("batch_size", "repeats", "num_points"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    if args.size < max(DEFAULT_SAMPLE_PS):
        parser.error(f"--size must be at least {max(DEFAULT_SAMPLE_PS)} (the largest hint patch)")
    if not 0 < args.sample_p <= 1:
        parser.error(f"--sample_p must be in (0, 1] (got {args.sample_p})")
    device = args.device

    torch.manual_seed(args.seed)
    images = torch.randint(0, 256, (args.batch_size, 3, args.size, args.size), dtype=torch.uint8).to(device)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    rng = np.random.RandomState(args.seed)
    settings = {
        "train": dict(ab_thresh=AB_THRESH, p=args.sample_p, num_points=None, sample_Ps=DEFAULT_SAMPLE_PS),
        "sweep": dict(ab_thresh=0.0, p=1.0, num_points=args.num_points, sample_Ps=SWEEP_SAMPLE_PS),
    }
    lab = rgb2lab_norm(images.float() / 255)
    result = {**device_info(device), "batch_size": args.batch_size, "size": args.size, "sample_p": args.sample_p,
              "num_points": args.num_points, "repeats": args.repeats}
    check = {}

    def measure(ours, loop) -> dict:
        return compare("ours", "loop", *paired_seconds(ours, loop, device, args.repeats, args.warmup),
                       args.batch_size)

    ab = lab[:, 1:]
    for name, s in settings.items():
        ours, loop = Coverage(), Coverage()
        prep = measure(lambda: ours.add(get_colorization_data(  # uint8 in, as train.py does
                           images, ab_thresh=s["ab_thresh"], p=s["p"], num_points=s["num_points"],
                           sample_Ps=s["sample_Ps"], generator=gen)),
                       lambda: loop.add(loop_colorization_data(images.float() / 255, rng, **s)))
        hints = measure(lambda: paint_hints(ab, sample_hint_geometry(
                            args.batch_size, args.size, args.size, s["p"], s["num_points"], s["sample_Ps"],
                            generator=gen, device=device), s["sample_Ps"]),
                        lambda: loop_hints(ab, rng, s["p"], s["num_points"], s["sample_Ps"]))
        result.update({f"{name}_prep_img_s": prep["ours_img_s"], f"{name}_prep_loop_img_s": prep["loop_img_s"],
                       f"{name}_ratio": prep["ratio"], f"{name}_hints_img_s": hints["ours_img_s"],
                       f"{name}_hints_loop_img_s": hints["loop_img_s"], f"{name}_hints_ratio": hints["ratio"]})
        check[f"{name}_mask_fraction"] = {"vectorised": ours.mean(), "loop": loop.mean()}
    result["check"] = check
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
