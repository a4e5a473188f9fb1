"""test_sweep.py throughput: the 26 hint levels of an image as one batch vs one level at a time.

    python benchmarks/bench_sweep.py                                  # 256 px, 4 images, CUDA if present
    python benchmarks/bench_sweep.py --device cpu --size 64 --batches 3

Both modes do test_sweep.py's work per image (26 hinted copies, the generator, uint8 PSNRs) with
the real model on random images: ``batched`` runs 26 x --batch_size rows per forward pass, as
test_sweep.py does, ``one_level`` one row. Both draw the same hints, so psnr_max_abs_diff_db only
shows summation order; batching_ratio is one_level's time / batched's; images/s counts source
images. Prints one JSON line; measured figures: docs/speed.md.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import tempfile
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import benchmark_parser, compare, device_info, emit, paired_seconds  # noqa: E402
from evaluation.sweep import PAPER_SAMPLE_PS, SWEEP_NUM_POINTS, batch_psnr, cap_psnr, sweep_hints  # noqa: E402
from models import create_model  # noqa: E402
from models.networks import define_G  # noqa: E402
from options.test_options import TestOptions  # noqa: E402
from util.checkpoint import save_network  # noqa: E402
from util.hints import ColorizationBatch, cat_batches  # noqa: E402

SPEED_FLAGS = ("amp", "channels_last", "compile")


def level(batch: ColorizationBatch, i: int) -> ColorizationBatch:
    """Row i of a batch, as a batch of one."""
    return ColorizationBatch(*(getattr(batch, f.name)[i:i + 1] for f in dataclasses.fields(batch)))


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (test_sweep's --loadSize)")
    parser.add_argument("--batch_size", type=int, default=1, help="images per timed call (batched: per forward pass)")
    parser.add_argument("--batches", type=int, default=4, help="timed calls per mode")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per mode first (they hold torch.compile's compilation)")
    for flag in SPEED_FLAGS:
        parser.add_argument(f"--{flag}", action="store_true", help=f"the model's --{flag} (both modes)")
    args = parser.parse_args(argv)
    if args.batches < 1 or args.batch_size < 1 or args.warmup < 0:
        parser.error("--batches and --batch_size must be at least 1, --warmup at least 0")
    if args.size < 16 or args.size % 8:
        parser.error(f"--size must be a multiple of 8 and at least 16 (got {args.size})")
    return args


def build_model(args: argparse.Namespace):
    """(opt, model): a seeded random-init generator (speed does not depend on the weights) saved and
    loaded back by models.create_model with test_sweep's hint patches and the benchmark's size,
    batch size and speed flags."""
    flags = [f"--{flag}" for flag in SPEED_FLAGS if getattr(args, flag)]
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        torch.manual_seed(0)
        save_network(define_G(), os.path.join(tmp, "bench", "latest_net_G.pth"))
        opt = TestOptions().parse(["--name", "bench", "--checkpoints_dir", tmp, "--gpu_ids", "-1",
                                   "--sample_Ps", *map(str, PAPER_SAMPLE_PS), "--loadSize", str(args.size),
                                   "--batch_size", str(args.batch_size), *flags])
        return opt, create_model(opt, args.device)


def hinted(opt, images: torch.Tensor, generator: torch.Generator, index: int) -> ColorizationBatch:
    """The 26 hinted copies of images[index] (uint8 3 x H x W), hints from ``generator``."""
    rgb = images[index:index + 1].float().div_(255.0)
    return sweep_hints(rgb, SWEEP_NUM_POINTS, sample_Ps=opt.sample_Ps, mask_cent=opt.mask_cent, generator=generator)


def batched(model, images: torch.Tensor, generator: torch.Generator, indices: range) -> List[float]:
    """PSNRs (dB) of the images ``indices``, all their copies in one forward pass."""
    return batch_psnr(model, cat_batches([hinted(model.opt, images, generator, i) for i in indices])).tolist()


def one_level(model, images: torch.Tensor, generator: torch.Generator, indices: range) -> List[float]:
    """The same PSNRs as batched, one copy per forward pass."""
    out = []
    for i in indices:
        batch = hinted(model.opt, images, generator, i)
        out.extend(float(batch_psnr(model, level(batch, j))[0]) for j in range(batch.A.shape[0]))
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    device = args.device
    opt, model = build_model(args)
    total = (args.warmup + args.batches) * args.batch_size
    torch.manual_seed(1)
    images = torch.randint(0, 256, (total, 3, args.size, args.size), dtype=torch.uint8).to(device)

    # Each mode sweeps the same images in the same order from its own generator: the same hints.
    chunks = [range(start, start + args.batch_size) for start in range(0, total, args.batch_size)]
    psnrs = {"batched": [], "one_level": []}

    def next_chunk(mode: str, run) -> Callable[[], None]:
        todo = iter(chunks)
        generator = torch.Generator(device=device).manual_seed(0)
        return lambda: psnrs[mode].extend(run(model, images, generator, next(todo)))

    figures = compare("sweep_batched", "sweep_one_level", *paired_seconds(
        next_chunk("batched", batched), next_chunk("one_level", one_level), device, args.batches, args.warmup),
        args.batch_size)
    difference = np.abs(cap_psnr(psnrs["batched"]) - cap_psnr(psnrs["one_level"])).max()
    emit({**device_info(device), "size": args.size, "images": args.batches * args.batch_size,
          "batch_size": args.batch_size, "levels": len(SWEEP_NUM_POINTS),
          "rows_per_forward": len(SWEEP_NUM_POINTS) * args.batch_size, "amp": args.amp,
          "channels_last": args.channels_last, "compile": args.compile,
          "sweep_batched_img_s": figures["sweep_batched_img_s"],
          "sweep_one_level_img_s": figures["sweep_one_level_img_s"], "batching_ratio": figures["ratio"],
          "psnr_max_abs_diff_db": round(float(difference), 6)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
