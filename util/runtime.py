"""Run-time plumbing shared by the scripts: device choice, seeding, option logging."""
from __future__ import annotations

import argparse
import os
import random
import sys
from typing import List, Optional

import numpy as np
import torch

from util.fileio import atomic_write_text


def resolve_device(gpu_ids: Optional[str]) -> torch.device:
    """Turn --gpu_ids into a device.

    None (the default): cuda:0 when CUDA is available, else the CPU with a one-line notice.
    '-1': the CPU. 'K': cuda:K, which must exist (one-line error otherwise). One GPU per process:
    several ids are refused, since multi-GPU training goes through torchrun.
    """
    if gpu_ids is None:
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        print("notice: no CUDA device found, running on the CPU (pass --gpu_ids -1 to silence this)", file=sys.stderr)
        return torch.device("cpu")
    ids = _gpu_ids(gpu_ids)
    if not ids:
        return torch.device("cpu")
    if len(ids) > 1:
        raise SystemExit(f"error: --gpu_ids {gpu_ids}: one GPU per process; launch with torchrun for several GPUs")
    if not torch.cuda.is_available() or ids[0] >= torch.cuda.device_count():
        raise SystemExit(f"error: --gpu_ids {gpu_ids}: no such CUDA device (use --gpu_ids -1 for the CPU)")
    torch.cuda.set_device(ids[0])
    return torch.device("cuda", ids[0])


def _gpu_ids(gpu_ids: str) -> List[int]:
    """The GPU indices of a --gpu_ids value ('0', '0,1', '-1', ...); negative ones mean the CPU."""
    return [i for i in (int(x) for x in str(gpu_ids).split(",") if x.strip() != "") if i >= 0]


def wants_cuda(gpu_ids: Optional[str]) -> bool:
    """Does --gpu_ids ask for a GPU (default: yes when CUDA is available)?"""
    if gpu_ids is None:
        return torch.cuda.is_available()
    return bool(_gpu_ids(gpu_ids))


def first_line(e: BaseException, hide: Optional[str] = None, sentence: bool = False) -> str:
    """``Type: first line of the message`` (``Type`` alone when it is empty), for one-line reports
    of exceptions whose messages run to several lines (torch, PIL, inductor).

    hide: a path to replace by 'file' (PIL repeats the file name the caller already shows);
    sentence: keep only the first sentence of that line.
    """
    text = str(e).strip()
    line = text.splitlines()[0] if text else ""
    if hide:
        line = line.replace(repr(hide), "file").replace(hide, "file")
    if sentence:
        line = line.split(". ")[0]
    return f"{type(e).__name__}: {line}" if line else type(e).__name__


def make_deterministic() -> None:
    """Deterministic algorithms only (an op without one raises), no cuDNN autotuning.

    Bit-identical results then depend only on the inputs, the seeds and the thread count.
    CUBLAS_WORKSPACE_CONFIG must be set before CUDA starts, so call this first.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def format_options(opt: argparse.Namespace, parser: Optional[argparse.ArgumentParser] = None) -> str:
    """The original's option listing: one 'name: value' line each, '[default: x]' where it differs."""
    lines = ["----------------- Options ---------------"]
    for key, value in sorted(vars(opt).items()):
        default = parser.get_default(key) if parser is not None else None
        note = f"\t[default: {default}]" if parser is not None and value != default and default is not None else ""
        lines.append(f"{key:>25}: {str(value):<30}{note}")
    lines.append("----------------- End -------------------")
    return "\n".join(lines)


def save_options(opt: argparse.Namespace, parser: Optional[argparse.ArgumentParser], folder: str,
                 filename: str = "opt.txt") -> str:
    """Write the option listing to <folder>/<filename> (atomically) and return its text."""
    text = format_options(opt, parser)
    atomic_write_text(os.path.join(folder, filename), text + "\n")
    return text
