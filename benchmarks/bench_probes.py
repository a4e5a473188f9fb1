"""Wall time of the linear-probe protocols on the same small data: fork vs corrected (cached features).

    python benchmarks/bench_probes.py --epochs 5                       # CPU, 64 px, ~2 min on 2 cores
    python benchmarks/bench_probes.py --epochs 5 --size 176 --per_class 64 --gpu_ids 0

Times one run of the engine (evaluation/probes.py) end to end for corrected_cold (empty feature
cache), corrected_warm (cache filled) and fork, at --epochs N and 1, and derives the per-epoch and
fixed costs and the 200-epoch figures (docs/speed.md). Prints one JSON object. Not a test.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from typing import Optional, Sequence

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from data.datasets import SkipLog  # noqa: E402
from evaluation.layout_dataset import make_layout_dataset, save_random_generator  # noqa: E402
from evaluation.probes import set_up, train_and_record  # noqa: E402
from models.probes import LAYERS  # noqa: E402


def probe_options(args, tmp: str, out: str, protocol: str, epochs: int, cache: str = "cache") -> argparse.Namespace:
    """The options of one run: train_linear_classifiers.py's defaults, the benchmark's sizes."""
    return argparse.Namespace(
        name="rand", checkpoints_dir=os.path.join(tmp, "ckpt"), which_epoch="latest",
        linear_checkpoints=os.path.join(tmp, out), dataroot=os.path.join(tmp, "data", "train"),
        dataroot_validation=os.path.join(tmp, "data", "val"), max_dataset_size=None,
        train_subset=None, val_subset=None, niter=epochs, mask_cent=0.5, gpu_ids=args.gpu_ids,
        batch_size=args.batch_size, protocol=protocol,
        layers=list(LAYERS), lr=1e-3, seed=0, loadSize=args.size, fineSize=args.size, train_augment=1,
        head_batch_size=256, no_cache=False, cache_dir=os.path.join(tmp, cache), cache_dtype="bfloat16",
        num_threads=args.num_threads, amp=False, channels_last=False, compile=False)


def probe_run(opt) -> None:
    """One run of the probes' engine, wired as train_linear_classifiers.py wires it."""
    device, train_set, val_set, checkpoint, trunk = set_up(opt)
    os.makedirs(opt.linear_checkpoints, exist_ok=True)
    train_and_record(opt, train_set, val_set, trunk, device, checkpoint, SkipLog())


def timed_run(opt) -> float:
    """Seconds of one probe_run(opt), its console output discarded."""
    sink = io.StringIO()
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            probe_run(opt)
    except Exception as e:
        raise SystemExit(f"bench_probes: a probe run failed: {e}\n{sink.getvalue()[-2000:]}") from None
    return time.perf_counter() - start


def per_epoch_and_fixed(t_n: float, t_1: float, n: int):
    per_epoch = (t_n - t_1) / (n - 1)
    return per_epoch, t_1 - per_epoch


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5, help="N, at least 2")
    parser.add_argument("--size", type=int, default=64, help="image and crop size (the fork needs >= 64)")
    parser.add_argument("--per_class", type=int, default=16, help="training images per class (validation: half)")
    parser.add_argument("--batch_size", type=int, default=25, help="backbone batch (the fork's 25)")
    parser.add_argument("--gpu_ids", default="-1", help="-1: CPU; 0: the first GPU")
    parser.add_argument("--num_threads", type=int, default=0, help="DataLoader workers")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2")

    with tempfile.TemporaryDirectory() as tmp:
        make_layout_dataset(os.path.join(tmp, "data"), per_class_train=args.per_class,
                            per_class_val=max(1, args.per_class // 2), size=args.size)
        save_random_generator(os.path.join(tmp, "ckpt"), "rand")

        def probe_args(out, protocol, epochs, cache="cache"):
            return probe_options(args, tmp, out, protocol, epochs, cache)
        n = args.epochs
        timed_run(probe_args("warmup", "corrected", 1, cache="warmup_cache"))  # imports, allocator, matplotlib
        t = {
            f"corrected_cold_{n}": timed_run(probe_args("corrected", "corrected", n)),
            f"corrected_warm_{n}": timed_run(probe_args("corrected", "corrected", n)),
            "corrected_warm_1": timed_run(probe_args("corrected", "corrected", 1)),
            "fork_1": timed_run(probe_args("fork", "fork", 1)),
            f"fork_{n}": timed_run(probe_args("fork", "fork", n)),
        }

    c_epoch, c_fixed = per_epoch_and_fixed(t[f"corrected_warm_{n}"], t["corrected_warm_1"], n)
    extraction = t[f"corrected_cold_{n}"] - t[f"corrected_warm_{n}"]
    f_epoch, f_fixed = per_epoch_and_fixed(t[f"fork_{n}"], t["fork_1"], n)
    corrected_200 = c_fixed + extraction + 200 * c_epoch
    fork_200 = f_fixed + 200 * f_epoch
    device = "cpu" if args.gpu_ids.strip() == "-1" else torch.cuda.get_device_name(int(args.gpu_ids))
    result = {
        "device": device, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "data": {"classes": 4, "train_images": 4 * args.per_class, "val_images": 4 * max(1, args.per_class // 2),
                 "size": args.size, "batch_size": args.batch_size},
        "measured_s": {k: round(v, 3) for k, v in t.items()},
        f"measured_ratio_{n}_epochs_fork_over_corrected_cold": round(t[f"fork_{n}"] / t[f"corrected_cold_{n}"], 2),
        "derived_s": {"corrected_per_epoch": round(c_epoch, 4), "corrected_fixed": round(c_fixed, 3),
                      "corrected_feature_extraction": round(extraction, 3), "fork_per_epoch": round(f_epoch, 4),
                      "fork_fixed": round(f_fixed, 3)},
        "extrapolated_200_epochs_s": {"corrected_cold": round(corrected_200, 2), "fork": round(fork_200, 2),
                                      "ratio_fork_over_corrected": round(fork_200 / corrected_200, 1)},
    }
    if n == 200:
        result["measured_ratio_200_epochs"] = result.pop(f"measured_ratio_{n}_epochs_fork_over_corrected_cold")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
