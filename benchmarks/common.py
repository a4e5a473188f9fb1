"""What the benchmarks share: the --device argument, synchronised timing, FLOP counts, JSON lines.

Figures only: nothing here asserts a speed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Callable, List, Optional, Tuple

import torch

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


def paired_seconds(fn_a: Callable[[], object], fn_b: Callable[[], object], device: torch.device, repeats: int,
                   warmup: int) -> Tuple[List[float], List[float]]:
    """Seconds of ``repeats`` calls of fn_a and of fn_b, timed alternately (a, b, a, b, ...) after
    ``warmup`` untimed pairs, so that a change in the machine's load hits both alike."""
    for _ in range(warmup):
        fn_a()
        fn_b()
    a, b = [], []
    for _ in range(repeats):
        a.append(timed(fn_a, device))
        b.append(timed(fn_b, device))
    return a, b


def compare(name_a: str, name_b: str, a: List[float], b: List[float], items: int) -> dict:
    """Figures of two paired timings (seconds per call, ``items`` images per call): images/s of each
    from the median call, and ``ratio`` = the median over the pairs of b's time / a's time (how
    many times faster a is)."""
    return {f"{name_a}_img_s": significant(items / statistics.median(a)),
            f"{name_b}_img_s": significant(items / statistics.median(b)),
            "ratio": significant(statistics.median(tb / ta for ta, tb in zip(a, b)))}


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
