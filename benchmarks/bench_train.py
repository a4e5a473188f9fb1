"""Training throughput of the SIGGRAPH17 model: images/s and peak memory of full training steps.

    python benchmarks/bench_train.py --device cuda --batch_size 64 --size 176 --steps 20

Each step is what train.py does per batch after loading: uint8 -> float on the device, Lab and
hints (util.hints), forward, all logged metrics, backward and the Adam step. Prints one JSON line.
Not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models.pix2pix_model import Pix2PixModel  # noqa: E402
from options.train_options import TrainOptions  # noqa: E402
from util.hints import get_colorization_data  # noqa: E402

#: Forward FLOPs per 176 x 176 image (2 per multiply-add), scaled by pixel count for other sizes.
FWD_FLOPS_176 = 71.6e9


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch_size", type=int, default=25)
    parser.add_argument("--size", type=int, default=176, help="crop size (multiple of 8)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (after --warmup)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--sample_p", type=float, default=0.125)
    args = parser.parse_args()
    device = torch.device(args.device)

    opt = TrainOptions().parse(["--gpu_ids", "-1", "--sample_p", str(args.sample_p)])
    model = Pix2PixModel(opt, device)
    model.train()
    gen = torch.Generator(device=device).manual_seed(0)
    images = torch.randint(0, 256, (args.batch_size, 3, args.size, args.size), dtype=torch.uint8, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step() -> None:
        batch = get_colorization_data(images.float() / 255, p=args.sample_p, generator=gen)
        model.set_input(batch)
        model.optimize_parameters()

    for _ in range(args.warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync(device)
    elapsed = time.perf_counter() - start
    img_s = args.batch_size * args.steps / elapsed
    flops = 3 * FWD_FLOPS_176 * (args.size / 176) ** 2 * img_s  # a training step is ~3x the forward
    result = {"device": str(device), "name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "batch_size": args.batch_size, "size": args.size, "train_img_s": round(img_s, 2),
              "achieved_tflops": round(flops / 1e12, 2), "torch": torch.__version__}
    if device.type == "cuda":
        result["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        result["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        result["cudnn_tf32"] = torch.backends.cudnn.allow_tf32
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
