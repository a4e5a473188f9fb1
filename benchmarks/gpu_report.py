"""The closing summary of benchmarks/gpu_check.sh, from the JSON lines its stages left in a folder.

    python benchmarks/gpu_report.py gpu_check_out

Reads prep.jsonl (bench_prep.py), train.jsonl (bench_train.py) and sweep.jsonl (bench_sweep.py)
where they exist; a stage that failed or timed out is reported as missing, and whatever its
configurations finished before it stopped is still shown. Prints a short table and writes
<folder>/summary.json: images/s, achieved TFLOP/s, MFU and peak memory per training configuration,
the fp32 -> amp+channels_last+compile ratio, the batch-preparation and sweep ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import ratio  # noqa: E402

COMBO = "amp+channels_last+compile"


def read_lines(path: str) -> List[dict]:
    """The JSON objects of a .jsonl file (other lines are skipped); [] if it does not exist."""
    if not os.path.isfile(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut by a timeout
                    pass
    return out


def percent(x: Optional[float]) -> str:
    return f"{100 * x:.1f}%" if x is not None else "n/a"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="gpu_check.sh's $OUT")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.folder):
        parser.error(f"{args.folder}: no such folder")

    prep = (read_lines(os.path.join(args.folder, "prep.jsonl")) or [None])[0]
    train = [r for r in read_lines(os.path.join(args.folder, "train.jsonl")) if "config" in r]
    sweep = (read_lines(os.path.join(args.folder, "sweep.jsonl")) or [None])[0]
    ok = {r["config"]: r for r in train if "error" not in r}
    first = prep or sweep or next(iter(ok.values()), None)
    summary = {"device": first["name"] if first else None, "torch": first["torch"] if first else None}
    print(f"device: {summary['device']}, torch {summary['torch']}")

    if prep:
        summary["prep"] = {k: prep[k] for k in ("batch_size", "size", "train_prep_img_s", "train_prep_loop_img_s",
                                                "train_ratio", "sweep_prep_img_s", "sweep_prep_loop_img_s",
                                                "sweep_ratio")}
        print(f"batch prep, {prep['batch_size']} x {prep['size']} px: p=1/8 {prep['train_prep_img_s']} img/s "
              f"(x{prep['train_ratio']} the per-point loop), {prep['num_points']} hints {prep['sweep_prep_img_s']} "
              f"img/s (x{prep['sweep_ratio']})")
    else:
        print("batch prep: no result (see prep.err)")

    if train:
        print(f"training, {train[0].get('batch_size')} x {train[0].get('size')} px:")
        print(f"  {'configuration':<27} {'img/s':>9} {'TFLOP/s':>9} {'MFU':>7} {'peak GiB':>9} {'warmup s':>9}")
        for r in train:
            if "error" in r:
                print(f"  {r['config']:<27} failed: {r['error']}")
                continue
            print(f"  {r['config']:<27} {r['train_img_s']:>9} {r['achieved_tflops']:>9} {percent(r['mfu']):>7} "
                  f"{str(r['peak_mem_gib']):>9} {r['warmup_s']:>9}")
        summary["train"] = {c: {k: r.get(k) for k in ("train_img_s", "achieved_tflops", "mfu", "peak_mem_gib",
                                                      "warmup_s", "compiled")} for c, r in ok.items()}
        summary["train_failed"] = {r["config"]: r["error"] for r in train if "error" in r}
    else:
        print("training: no result (see train.err)")
    fp32, combo = ok.get("fp32"), ok.get(COMBO)
    summary["fp32_to_combo_ratio"] = ratio(combo["train_img_s"], fp32["train_img_s"]) if fp32 and combo else None
    print(f"fp32 -> {COMBO}: x{summary['fp32_to_combo_ratio']}")

    if sweep:
        summary["sweep"] = {k: sweep[k] for k in ("size", "rows_per_forward", "sweep_batched_img_s",
                                                  "sweep_one_level_img_s", "batching_ratio", "psnr_max_abs_diff_db")}
        print(f"sweep, {sweep['size']} px: batched {sweep['sweep_batched_img_s']} img/s, one level at a time "
              f"{sweep['sweep_one_level_img_s']} img/s: x{sweep['batching_ratio']} "
              f"(PSNRs agree to {sweep['psnr_max_abs_diff_db']} dB)")
    else:
        print("sweep: no result (see sweep.err)")
    with open(os.path.join(args.folder, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
