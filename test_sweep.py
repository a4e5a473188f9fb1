"""PSNR against the number of colour hints, plotted against the SIGGRAPH17 curve (paper Figure 6).

    python test_sweep.py --name siggraph_reg2 --dataroot ./dataset/ilsvrc2012/test/

The original's test_sweep.py protocol, with the engine in evaluation/sweep.py. The protocol, the
outputs and the exit statuses: docs/evaluation.md.
"""
from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from data.datasets import ImageFolderDataset, IndexedSubset, SkipLog, collate_skip_bad, eval_subset
from data.transforms import eval_transform
from models import create_model
from options.test_options import TestOptions
from util.checkpoint import CheckpointError
from util.fileio import check_writable
from util.runtime import resolve_device, seed_everything
from evaluation.sweep import (BASELINE_LABEL, PSNR_CAP_DB, SWEEP_NUM_POINTS, baseline_note, cap_psnr, plot_sweep,
                              run_sweep, summarize, write_csv, write_json, write_sweep_page)


class SweepOptions(TestOptions):
    """TestOptions with the sweep's defaults: 1000 test images at 256 x 256, 6 x 6 hint patches."""

    def initialize(self, parser):
        parser = super().initialize(parser)
        parser.set_defaults(phase="test", how_many=1000, loadSize=256, sample_Ps=[6])
        return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    opt = SweepOptions().parse(argv)
    device = resolve_device(opt.gpu_ids)
    seed_everything(opt.seed)
    dataroot = opt.dataroot or os.path.join("./dataset/ilsvrc2012", opt.phase)
    out_dir = os.path.join(opt.results_dir, opt.name, f"sweep_{opt.which_epoch}")

    try:
        dataset = ImageFolderDataset(dataroot, eval_transform(opt.loadSize), require_classes=False)
        model = create_model(opt, device)  # loads <checkpoints_dir>/<name>/<which_epoch>_net_G.pth
    except (FileNotFoundError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    indices = eval_subset(len(dataset), opt.how_many, seed=opt.seed)
    if len(dataset) < opt.how_many:
        print(f"note: {dataroot} holds {len(dataset)} images, fewer than --how_many {opt.how_many}; using all of them")
    print(f"sweeping {len(indices)} of {len(dataset)} images in {dataroot} at {len(SWEEP_NUM_POINTS)} hint counts")
    loader = DataLoader(IndexedSubset(dataset, indices), batch_size=opt.batch_size, shuffle=False,
                        num_workers=opt.num_threads, collate_fn=collate_skip_bad,
                        pin_memory=device.type == "cuda")
    generator = torch.Generator(device=device).manual_seed(opt.seed)
    skip_log = SkipLog()
    try:
        check_writable(out_dir)  # now, not after a sweep of hours
        bar = tqdm(total=len(indices), desc="sweep", unit="img", dynamic_ncols=True, file=sys.stdout)
        done, raw, raw_gray = run_sweep(model, loader, device, opt, generator, skip_log, progress=bar.update)
        bar.close()
        if not done:
            skip_log.report(out_dir)
            print(f"error: none of the {len(indices)} chosen images in {dataroot} could be read", file=sys.stderr)
            return 2
        write_results(opt, dataset, dataroot, model, device, indices, done, raw, raw_gray, out_dir)
    except OSError as e:  # a read-only or full results folder: earlier files stay whole (atomic writes)
        print(f"error: cannot write the results in {out_dir}: {e}", file=sys.stderr)
        return 1
    skip_log.report(out_dir)
    return 0


def write_results(opt, dataset, dataroot: str, model, device: torch.device, indices, done, raw: np.ndarray,
                  raw_gray: np.ndarray, out_dir: str) -> None:
    """sweep.csv, sweep.json, sweep.png and index.html in out_dir, and the printed summary.
    raw: images x 26 PSNRs (dB, uncapped) of the dataset indices ``done``; raw_gray: their
    no-colour baseline's PSNRs (dB, uncapped). Raises OSError."""
    psnrs, gray_psnrs = cap_psnr(raw), cap_psnr(raw_gray)
    capped = int((raw > PSNR_CAP_DB).sum())  # +inf included
    mean, se = summarize(psnrs)
    gray = tuple(float(v[0]) for v in summarize(gray_psnrs[:, None]))
    write_csv(os.path.join(out_dir, "sweep.csv"), SWEEP_NUM_POINTS, mean, se, baseline=gray)
    relpath = lambda i: os.path.relpath(dataset.samples[i][0], dataroot)  # noqa: E731
    evaluated = set(done)
    record = {
        "name": opt.name, "which_epoch": opt.which_epoch,
        "checkpoint": model.checkpoint_path(opt.which_epoch), "dataroot": dataroot,
        "how_many": opt.how_many, "num_images": len(done), "loadSize": opt.loadSize, "mask_cent": opt.mask_cent,
        "sample_Ps": opt.sample_Ps, "seed": opt.seed, "device": device.type,
        "psnr_cap_db": PSNR_CAP_DB, "num_capped": capped,
        "se": "std(ddof=1) / sqrt(num_images), 0 for one image",
        "num_points": SWEEP_NUM_POINTS,
        "psnr_mean": mean.tolist(), "psnr_se": se.tolist(),
        "paths": [relpath(i) for i in done],
        "skipped": [relpath(i) for i in indices if i not in evaluated],
        "psnr": psnrs.tolist(),
        "gray_baseline": BASELINE_LABEL + ": the input's L with ab = 0, the same PSNR (capped as psnr)",
        "gray_psnr_mean": gray[0], "gray_psnr_se": gray[1], "gray_psnr": gray_psnrs.tolist(),
    }
    write_json(os.path.join(out_dir, "sweep.json"), record)
    sizes = sorted(set(opt.sample_Ps))
    patch = f"{sizes[0]}x{sizes[0]}" if len(sizes) == 1 else "PxP, P in " + ",".join(map(str, sizes))
    plot_sweep([(opt.name, SWEEP_NUM_POINTS, mean, se)], os.path.join(out_dir, "sweep.png"),
               title=f"{opt.name} ({opt.which_epoch}): {len(done)} images at {opt.loadSize} px",
               xlabel=f"Number of hints ({patch} patches)", baselines=[(BASELINE_LABEL, gray[0])])
    notes = [f"{len(done)} images from {dataroot} (seed {opt.seed}), {opt.loadSize} x {opt.loadSize}, "
             f"hint patches {patch}, mask_cent {opt.mask_cent}. Mean ± standard error; PSNR capped at "
             f"{PSNR_CAP_DB:g} dB ({capped} value(s) capped).", baseline_note(opt.name, SWEEP_NUM_POINTS, mean, gray)]
    write_sweep_page(out_dir, f"Experiment = {opt.name}, Sweep, Epoch = {opt.which_epoch}", opt.name,
                     SWEEP_NUM_POINTS, mean, se, notes=notes)
    print(f"{BASELINE_LABEL}: {gray[0]:.2f} dB")
    print("mean PSNR [dB] at " + ", ".join(f"{n}: {m:.2f}" for n, m in zip(SWEEP_NUM_POINTS, mean)))
    print(f"results in {out_dir}")


if __name__ == "__main__":
    sys.exit(main())
