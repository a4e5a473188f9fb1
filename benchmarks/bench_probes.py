"""Wall time of the linear-probe protocols on the same small data: fork vs corrected (cached features).

    python benchmarks/bench_probes.py --epochs 5                       # CPU, 64 px, ~2 min on 2 cores
    python benchmarks/bench_probes.py --epochs 5 --size 176 --per_class 64 --gpu_ids 0

Generates the 4-class layout dataset of tests/test_linear_classifiers.py and a randomly initialised
generator, then times train_linear_classifiers.main() end to end (model loading, data, backbone,
heads, checkpoints, logs and the plot; not the interpreter start):

  corrected_cold  --epochs N, empty feature cache (one backbone pass, then N cheap head epochs)
  corrected_warm  --epochs N, and 1, with the cache filled (no backbone)
  fork            --epochs N, and 1 (the backbone runs over train and val every epoch)

Measured: the N-epoch wall times and their ratio. Derived: per-epoch cost = (T(N) - T(1)) / (N - 1),
fixed cost = T(1) - per-epoch, feature extraction = corrected_cold(N) - corrected_warm(N). The
200-epoch numbers are extrapolated from those (fixed + 200 x per-epoch) unless --epochs 200, in
which case the 200-epoch times are measured as well. Prints one JSON object. Not a test.
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

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import train_linear_classifiers as tlc  # noqa: E402
from tests.test_linear_classifiers import make_layout_dataset, save_random_generator  # noqa: E402


def timed_run(args) -> float:
    """Seconds of one train_linear_classifiers.main(args), its console output discarded."""
    sink = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        rc = tlc.main(args)
    elapsed = time.perf_counter() - start
    if rc != 0:
        raise SystemExit(f"bench_probes: a probe run failed:\n{sink.getvalue()[-2000:]}")
    return elapsed


def per_epoch_and_fixed(t_n: float, t_1: float, n: int):
    per_epoch = (t_n - t_1) / (n - 1)
    return per_epoch, t_1 - per_epoch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5, help="N, at least 2")
    parser.add_argument("--size", type=int, default=64, help="image and crop size (the fork needs >= 64)")
    parser.add_argument("--per_class", type=int, default=16, help="training images per class (validation: half)")
    parser.add_argument("--batch_size", type=int, default=25, help="backbone batch (the fork's 25)")
    parser.add_argument("--gpu_ids", default="-1", help="-1: CPU; 0: the first GPU")
    parser.add_argument("--num_threads", type=int, default=0, help="DataLoader workers")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2")

    with tempfile.TemporaryDirectory() as tmp:
        make_layout_dataset(os.path.join(tmp, "data"), per_class_train=args.per_class,
                            per_class_val=max(1, args.per_class // 2), size=args.size)
        save_random_generator(os.path.join(tmp, "ckpt"), "rand")

        def probe_args(out, protocol, epochs, cache="cache"):
            return ["--name", "rand", "--checkpoints_dir", os.path.join(tmp, "ckpt"),
                    "--dataroot", os.path.join(tmp, "data", "train"),
                    "--dataroot_validation", os.path.join(tmp, "data", "val"),
                    "--linear_checkpoints", os.path.join(tmp, out), "--cache_dir", os.path.join(tmp, cache),
                    "--gpu_ids", args.gpu_ids, "--loadSize", str(args.size), "--fineSize", str(args.size),
                    "--batch_size", str(args.batch_size), "--num_threads", str(args.num_threads),
                    "--protocol", protocol, "--niter", str(epochs)]

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
