"""Training throughput of the SIGGRAPH17 model: images/s and peak memory, fp32 eager vs the speed flags.

    python benchmarks/bench_train.py --device cuda --batch_size 64 --size 176 --steps 20
    python benchmarks/bench_train.py --device cpu --batch_size 8 --size 48 --steps 5 --configs fp32 amp

A step is what train.py does per batch after loading (uint8 -> Lab and hints, then the real model's
optimize_parameters: forward, backward, the non-finite guard, the Adam step), for each configuration
of train.py's speed flags (--configs), each in a fresh process unless --in_process. Prints one JSON
line per configuration, then a summary line of ratios to fp32 (else to the first configuration).
How achieved_tflops, mfu and peak_mem_gib are counted: run_config; measured figures: docs/speed.md.
"""
from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
from typing import List, Optional, Sequence

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import (TRAIN_STEP_FORWARDS, benchmark_parser, device_info, emit,  # noqa: E402
                               forward_flops, ratio, significant, timed)
from models import create_model  # noqa: E402
from options.train_options import TrainOptions  # noqa: E402
from util.color import AB_THRESH  # noqa: E402
from util.hints import get_colorization_data  # noqa: E402

#: Configuration name -> train.py flags.
CONFIGS = {
    "fp32": [],
    "amp": ["--amp"],
    "channels_last": ["--channels_last"],
    "amp+channels_last": ["--amp", "--channels_last"],
    "compile": ["--compile"],
    "amp+channels_last+compile": ["--amp", "--channels_last", "--compile"],
}


def rss_bytes() -> Optional[int]:
    """The resident set of this process now (Linux /proc), or None where unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_bytes() -> int:
    """The largest resident set this process has had (getrusage; KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def run_config(args, config: str, measure_rss: bool) -> dict:
    """Build the model of ``config``, run --warmup then --steps training steps; its JSON record.

    achieved_tflops counts a step as TRAIN_STEP_FORWARDS forwards of forward_flops(size); mfu divides
    it by --peak_tflops (configurations with --amp) or --peak_tflops_fp32 (the others), None when
    that peak is not given. peak_mem_gib: on CUDA, torch.cuda.max_memory_allocated over the warmup
    and timed steps (weights, gradients, Adam state, activations); on the CPU, the peak resident set
    of the process minus its resident set just before the model was built, only with
    ``measure_rss`` (the process's peak is its own, so it must run this configuration alone), else None.
    """
    device = args.device
    opt = TrainOptions().parse(["--gpu_ids", "-1", "--sample_p", str(args.sample_p), "--batch_size",
                                str(args.batch_size), "--fineSize", str(args.size), "--loadSize", str(args.size),
                                *CONFIGS[config]])
    gen = torch.Generator(device=device).manual_seed(0)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (args.batch_size, 3, args.size, args.size), dtype=torch.uint8).to(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = rss_bytes() if measure_rss else None
    with contextlib.redirect_stdout(sys.stderr):  # the model's notices; stdout is for the JSON lines
        model = create_model(opt, device)
    skipped = 0

    def step() -> None:
        nonlocal skipped
        rgb = images.float().div_(255.0)
        batch = get_colorization_data(rgb, ab_thresh=AB_THRESH, p=opt.sample_p, sample_Ps=opt.sample_Ps,
                                      l_cent=opt.l_cent, l_norm=opt.l_norm, ab_norm=opt.ab_norm,
                                      mask_cent=opt.mask_cent, generator=gen)
        model.set_input(batch)
        skipped += not model.optimize_parameters()

    warmup_s = sum(timed(step, device) for _ in range(args.warmup))
    elapsed = sum(timed(step, device) for _ in range(args.steps))
    img_s = args.batch_size * args.steps / elapsed
    tflops = TRAIN_STEP_FORWARDS * forward_flops(args.size) * img_s / 1e12
    peak = args.peak_tflops if opt.amp else args.peak_tflops_fp32
    record = {"config": config, **device_info(device), "batch_size": args.batch_size, "size": args.size,
              "steps": args.steps, "warmup": args.warmup, "amp": opt.amp, "channels_last": opt.channels_last,
              "compile": opt.compile, "compiled": hasattr(model.netG, "_orig_mod"),
              "train_img_s": significant(img_s), "step_ms": significant(1000 * elapsed / args.steps),
              "warmup_s": round(warmup_s, 2), "achieved_tflops": significant(tflops),
              "mfu": significant(tflops / peak) if peak else None, "skipped_steps": skipped}
    if device.type == "cuda":
        record["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
        record["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        record["cudnn_tf32"] = torch.backends.cudnn.allow_tf32
    else:
        record["peak_mem_gib"] = (round((peak_rss_bytes() - rss_before) / 2**30, 3)
                                  if rss_before is not None else None)
    return record


def run_isolated(args, config: str) -> dict:
    """run_config in a fresh interpreter: this script with the same settings, --in_process and one
    configuration, so that one configuration's memory and compile caches cannot flatter the next.
    Its stderr passes through; a failure becomes {"config", "error"}."""
    cmd = [sys.executable, os.path.abspath(__file__), "--in_process", "--configs", config, "--device", str(args.device),
           "--batch_size", str(args.batch_size), "--size", str(args.size), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--sample_p", str(args.sample_p)]
    for flag in ("peak_tflops", "peak_tflops_fp32"):
        if getattr(args, flag) is not None:
            cmd += [f"--{flag}", str(getattr(args, flag))]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=args.config_timeout_s)
    except subprocess.TimeoutExpired:
        return {"config": config, "error": f"stopped after --config_timeout_s {args.config_timeout_s:g} s"}
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"config"')]
    if proc.returncode != 0 or not records:
        return {"config": config, "error": f"exit status {proc.returncode} (its stderr is above)"}
    return records[0]


def summary(records: List[dict]) -> dict:
    """Ratios of every configuration to fp32 (or to the first one)."""
    ok = [r for r in records if "error" not in r]
    base = next((r for r in ok if r["config"] == "fp32"), ok[0] if ok else None)
    out = {"summary": True, "baseline": base["config"] if base else None,
           "train_img_s": {r["config"]: r["train_img_s"] for r in ok},
           "speedup": {r["config"]: ratio(r["train_img_s"], base["train_img_s"]) for r in ok} if base else {},
           "peak_mem_ratio": {r["config"]: ratio(r["peak_mem_gib"], base["peak_mem_gib"]) for r in ok} if base else {},
           "failed": [r["config"] for r in records if "error" in r]}
    if base:
        out["not_slower_than_baseline"] = [c for c, s in out["speedup"].items() if s is not None and s >= 1.0]
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--batch_size", type=int, default=25)
    parser.add_argument("--size", type=int, default=176, help="crop size in pixels (a multiple of 8)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (after --warmup)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (they hold compilation)")
    parser.add_argument("--sample_p", type=float, default=0.125, help="hint parameter of the batches (phase 3-4)")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS),
                        help="configurations to run, in this order")
    parser.add_argument("--peak_tflops", type=float, default=None,
                        help="dense peak TFLOP/s of the device in the --amp dtype (bf16/fp16), for mfu")
    parser.add_argument("--peak_tflops_fp32", type=float, default=None,
                        help="dense peak TFLOP/s for the fp32 configurations (TF32 where cuDNN uses it), for mfu")
    parser.add_argument("--in_process", action="store_true",
                        help="run every configuration in this process (CPU peak memory then only for one)")
    parser.add_argument("--config_timeout_s", type=float, default=None,
                        help="stop a configuration's process after this many seconds and go on with the next "
                             "(not with --in_process)")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.steps < 1 or args.warmup < 0:
        parser.error("--batch_size and --steps must be at least 1, --warmup at least 0")
    if args.size < 16 or args.size % 8:
        parser.error(f"--size must be a multiple of 8 and at least 16 (got {args.size})")
    for flag in ("peak_tflops", "peak_tflops_fp32", "config_timeout_s"):
        if getattr(args, flag) is not None and getattr(args, flag) <= 0:
            parser.error(f"--{flag} must be positive")
    if args.in_process and args.config_timeout_s is not None:
        parser.error("--config_timeout_s needs a process per configuration (drop --in_process)")

    records = []
    for config in args.configs:
        if args.in_process:
            record = run_config(args, config, measure_rss=len(args.configs) == 1)
        else:
            record = run_isolated(args, config)
        emit(record)
        records.append(record)
    emit(summary(records))
    return 1 if any("error" in r for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
