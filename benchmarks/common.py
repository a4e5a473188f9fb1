"""What the benchmarks share: the --device argument, synchronised timing, FLOP counts, JSON lines.

Figures only: nothing here asserts a speed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Callable, List, Optional

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Forward FLOPs of the generator per 176 x 176 image, counting a multiply-add as 2 FLOPs.
FWD_FLOPS_176 = 71.6e9
#: A training step (forward, then gradients w.r.t. activations and weights) is about 3 forwards.
TRAIN_STEP_FORWARDS = 3


def forward_flops(size: int) -> float:
    """Forward FLOPs per size x size image: FWD_FLOPS_176 scaled by the pixel count (all convolutions)."""
    return FWD_FLOPS_176 * (size / 176) ** 2


def device_arg(text: str) -> torch.device:
    """argparse type for --device: 'cpu', 'cuda', 'cuda:1', ...; an unusable one is a one-line error."""
    try:
        device = torch.device(text)
    except RuntimeError as e:
        raise argparse.ArgumentTypeError(str(e).splitlines()[0]) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text}: CUDA is not available on this machine")
    if device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"{text}: only cpu and cuda devices are benchmarked")
    return device


def benchmark_parser(doc: str) -> argparse.ArgumentParser:
    """A parser whose --help shows ``doc`` as written, with the benchmarks' common --device."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", type=device_arg, default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu, cuda or cuda:N")
    return parser


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that wall time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds of one fn() call, synchronised on both sides."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def median_seconds(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> float:
    """Median seconds of ``repeats`` calls of fn() after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times: List[float] = [timed(fn, device) for _ in range(repeats)]
    return statistics.median(times)


def device_info(device: torch.device) -> dict:
    """Where the figures come from. On the CPU also the 1-minute load average: other processes on
    the machine take cores from the benchmark, and this says how busy it was."""
    info = {"device": str(device),
            "name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "threads": torch.get_num_threads()}
    if device.type == "cpu" and hasattr(os, "getloadavg"):
        info["load_avg_1min"] = round(os.getloadavg()[0], 2)
    return info


def ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    """numerator / denominator to 4 significant digits, None when either is missing or the
    denominator is 0."""
    if numerator is None or not denominator:
        return None
    return significant(numerator / denominator)


def significant(x: float, digits: int = 4) -> float:
    """x rounded to ``digits`` significant digits (figures of any magnitude stay readable)."""
    return float(f"{x:.{digits}g}")


def emit(record: dict) -> None:
    """Print one JSON line on stdout (flushed: a caller may read lines as they come)."""
    print(json.dumps(record), flush=True)
