"""Evaluate a trained colorization model on a folder of images: an HTML page and metrics.json.

    python test.py --name siggraph_reg2 --dataroot ./dataset/ilsvrc2012/val --how_many 200

The original's protocol (its test.py): each image colorized in eval mode with no hints and with
random hints at p = 1/8 and 1/32; the metrics compare ``real`` with ``fake_reg``
(evaluation/intrinsic.py, util/metrics.py). The protocol, the outputs, the metrics and the exit
statuses: docs/evaluation.md.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Dict, List, Optional, Sequence

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from data.datasets import ImageFolderDataset, IndexedSubset, SkipLog, collate_skip_bad, eval_subset
from data.transforms import eval_transform
from evaluation.intrinsic import (BASELINE_KEY, BASELINE_LABEL, BASELINE_METRICS, METRICS, SAMPLE_PS, VISUALS,
                                  ImageResult, evaluate_images, image_id, summarise)
from models import create_model
from options.test_options import TestOptions
from util import metrics
from util.checkpoint import CheckpointError
from util.fileio import atomic_write_text
from util.html import HTML
from util.image import save_image
from util.runtime import resolve_device, save_options, seed_everything


def write_json(obj, path: str) -> None:
    """Write strict JSON (no NaN/Infinity) atomically."""
    atomic_write_text(path, json.dumps(obj, indent=1, allow_nan=False) + "\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    options = TestOptions()
    opt = options.parse(argv)
    device = resolve_device(opt.gpu_ids)
    seed_everything(opt.seed)
    dataroot = opt.dataroot or os.path.join("./dataset/ilsvrc2012", opt.phase)

    try:
        dataset = ImageFolderDataset(dataroot, eval_transform(opt.loadSize), require_classes=False)
        model = create_model(opt, device)
    except (FileNotFoundError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    web_dir = os.path.join(opt.results_dir, opt.name, f"{opt.phase}_{opt.which_epoch}")
    try:
        return evaluate(opt, options.parser, dataset, dataroot, model, device, web_dir)
    except OSError as e:  # a read-only or full results folder: the previous files stay whole (atomic writes)
        print(f"error: cannot write the results in {web_dir}: {e}", file=sys.stderr)
        return 1


def evaluate(opt, parser, dataset: ImageFolderDataset, dataroot: str, model, device: torch.device,
             web_dir: str) -> int:
    """Evaluate the selected images, write the page, metrics.json and opt.txt to web_dir, print
    the summary. Returns the exit status (2 when no image could be read); raises OSError when a
    file cannot be written."""
    indices = eval_subset(len(dataset), opt.how_many)
    if len(indices) < opt.how_many:
        print(f"note: --how_many {opt.how_many} but {dataroot} holds {len(dataset)} images; evaluating all of them")
    loader = DataLoader(IndexedSubset(dataset, indices), batch_size=opt.batch_size, shuffle=False,
                        num_workers=opt.num_threads, collate_fn=collate_skip_bad)

    webpage = HTML(web_dir, f"Experiment = {opt.name}, Phase = {opt.phase}, Epoch = {opt.which_epoch}")
    save_options(opt, parser, web_dir)
    rows: Dict[float, List[dict]] = {p: [] for p in SAMPLE_PS}
    skip_log = SkipLog()
    bar = tqdm(loader, desc="test", unit="batch", dynamic_ncols=True, file=sys.stdout)
    for result in evaluate_images(model, bar, opt, device, skip_log):
        path = os.path.relpath(dataset.samples[result.index][0], dataroot).replace(os.sep, "/")
        add_section(webpage, result, path, opt.display_winsize)
        rows[result.sample_p].append({"path": path, "index": result.index, **result.values,
                                      BASELINE_KEY: result.baseline})

    if not rows[SAMPLE_PS[0]]:
        skip_log.report(web_dir)
        print(f"error: none of the {len(indices)} selected images in {dataroot} could be read", file=sys.stderr)
        return 2
    settings = [summarise(p, rows[p]) for p in SAMPLE_PS]
    json_path = os.path.join(web_dir, "metrics.json")
    write_json(metrics_record(opt, dataroot, device, skip_log, settings), json_path)
    add_baseline_summary(webpage, settings)
    page_path = webpage.save()
    print_summary(settings, rows)
    print(f"evaluated {len(rows[SAMPLE_PS[0]])} image(s); page: {page_path}; metrics: {json_path}")
    skip_log.report(web_dir)
    return 0


def add_section(webpage: HTML, result: ImageResult, path: str, width: int) -> None:
    """Save the visuals of one (image, setting) to images/ and add its anchored section to the page."""
    anchor = image_id(result.index, result.sample_p)
    names = [f"{anchor}_{label}.png" for label in VISUALS]
    for label, name in zip(VISUALS, names):
        save_image(result.visuals[label], os.path.join(webpage.get_image_dir(), name))
    webpage.add_header(f"{anchor}: {path}", anchor=anchor)
    webpage.add_images(names, list(VISUALS), names, width=width)
    gray = result.baseline
    webpage.add_text(f"PSNR {result.values['psnr']:.2f} dB, SSIM {result.values['ssim']:.4f} "
                     f"({BASELINE_LABEL}: PSNR {gray['psnr']:.2f} dB, SSIM {gray['ssim']:.4f})")


def add_baseline_summary(webpage: HTML, settings: List[dict]) -> None:
    """Put at the top of the page a table of the model's mean PSNR, SSIM and CIEDE2000 per setting
    next to the no-colour baseline's, on the same images by the same metric code."""
    from dominate.tags import div, h3, p, table, td, th, tr

    keys = ("psnr", "ssim", "ciede2000")
    cell = lambda stat: "inf" if stat["mean"] is None else f"{stat['mean']:.3f} ± {stat['se'] or 0:.3f}"  # noqa: E731
    rows = [tr(th("sample_p"), th("colorized by"), *[th(k) for k in keys])]
    for entry in settings:
        for who, stats in (("the model (fake_reg)", entry), (BASELINE_LABEL, entry[BASELINE_KEY])):
            rows.append(tr(td(f"{entry['sample_p']:g}"), td(who), *[td(cell(stats[k])) for k in keys]))
    summary = div(h3(f"Mean ± SE over {settings[0]['num_images']} image(s): the model against the no-colour "
                     "baseline (the 'gray' visual, scored like fake_reg)"),
                  table(*rows, border=1, style="border-collapse: collapse;", cellpadding=4), p())
    webpage.doc.body.children.insert(0, summary)
    summary.parent = webpage.doc.body


def metrics_record(opt, dataroot: str, device: torch.device, skip_log: SkipLog, settings: List[dict]) -> dict:
    """The content of metrics.json: the run's settings, the skipped files and ``settings`` (summarise's entries)."""
    return {
        "name": opt.name, "which_epoch": opt.which_epoch, "dataroot": dataroot, "how_many": opt.how_many,
        "num_images": settings[0]["num_images"], "num_skipped": len(skip_log),
        "skipped": [os.path.relpath(p, dataroot).replace(os.sep, "/") for p in skip_log.paths],
        "loadSize": opt.loadSize, "mask_cent": opt.mask_cent, "sample_Ps": list(opt.sample_Ps), "seed": opt.seed,
        "device": device.type, "metrics": METRICS,
        "baseline": {"key": BASELINE_KEY, "label": BASELINE_LABEL, "metrics": list(BASELINE_METRICS),
                     "what": "the 'gray' visual (the input's L with ab = 0) scored against real by the same "
                             "metric code and uint8 rounding as fake_reg; it does not depend on the hints"},
        "settings": settings,
    }


def print_summary(settings: List[dict], rows: Dict[float, List[dict]]) -> None:
    """The original's "p=<p>: <mean PSNR>+/-<SE>" lines, then mean +/- SE of every metric, one row each."""
    for p in SAMPLE_PS:
        mean, se = metrics.mean_and_se([row["psnr"] for row in rows[p]])
        print("p=%.3f: %.2f+/-%.2f" % (p, mean, se))
    gray = settings[0][BASELINE_KEY]["psnr"]
    if gray["mean"] is not None:
        print(f"{BASELINE_LABEL}: %.2f+/-%.2f" % (gray["mean"], gray["se"] or 0.0))
    print(f"{'metric':<18}" + "".join(f"{'p=%g' % p:>22}" for p in SAMPLE_PS))
    for key in METRICS:
        cells = []
        for entry in settings:
            mean, se = entry[key]["mean"], entry[key]["se"]
            cells.append(f"{'inf' if mean is None else f'{mean:.4f}'}+/-{'nan' if se is None else f'{se:.4f}'}")
        print(f"{key:<18}" + "".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":
    sys.exit(main())
