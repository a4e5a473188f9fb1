"""Evaluate a trained colorization model on a folder of images: an HTML page and metrics.json.

    python test.py --name siggraph_reg2 --dataroot ./dataset/ilsvrc2012/val --how_many 200

For each image (the first --how_many files of --dataroot, flat or nested, in sorted path order,
squashed to --loadSize x --loadSize) and each hint setting sample_p in (1, 1/8, 1/32) (geometric
hint counts with mean 0, 7 and 31, as the original test.py), the model runs in eval mode and this
writes to <results_dir>/<name>/<phase>_<which_epoch>/ (phase is 'val' unless --phase is given):

  index.html   one section per (image, setting), anchored ``%08d_%.3f`` with '.' -> 'p'
               (00000000_1p000, 00000000_0p125, 00000000_0p031): the visuals gray, hint, hint_ab,
               fake_entr, real, fake_reg, real_ab, fake_ab_reg, and that image's PSNR and SSIM;
  images/      <id>_<label>.png, the uint8 images the metrics are computed from;
  metrics.json per setting the mean and standard error of every metric and the per-image values;
               num_skipped and skipped (the unreadable files, relative to --dataroot);
  opt.txt      the options of the run;
  skipped_images.txt   only when files were skipped: their paths, one a line, sorted.

It prints "p=<p>: <mean PSNR>+/-<SE>" per setting, as the original.

Metrics, per image and setting, all comparing ``real`` with ``fake_reg`` (regression output):
  psnr          dB, the original's: uint8 images made by TRUNCATION (util.image.to_uint8), MSE
                over H x W x 3. Identical images give +inf, written as null in metrics.json.
  ssim          skimage structural_similarity on the uint8 RGB images (7 x 7 uniform window,
                data_range 255, mean over channels).
  colorfulness  Hasler & Suesstrunk (2003) of fake_reg, signed opponent channels, uint8 scale.
  saturation    mean HSV saturation of fake_reg, in [0, 1].
  colorfulness_real, saturation_real   the same for real (what a perfect model would score).
  auc           area under the cumulative ab-error curve, thresholds 0..150 (Zhang et al. ECCV16),
                in [0, 1]: ab from skimage rgb2lab of the uint8 images.
  ciede2000     mean CIEDE2000 difference (skimage) between the Lab of the two uint8 images.
  entropy       mean entropy (nats) of the predicted 529-bin distribution of THIS image (the
                original read a smoothed running value instead, in its test.py).
``real`` is lab2rgb(L, ground-truth ab), i.e. the input after the Lab round trip, as in the
original, not the raw RGB file. Every metric except entropy is thus a function of the two saved
PNGs <id>_real.png and <id>_fake_reg.png. Means and standard errors are over the images:
SE = std (ddof = 1) / sqrt(n), 0 for one image (the original used ddof = 0 and divided by
--how_many even when fewer images existed).

Determinism: hints for image i come from a torch.Generator on the device seeded from
(--seed, i) (numpy SeedSequence); its stream is consumed setting by setting (p = 1 draws no hints,
so that setting does not depend on the seed). An image's hints therefore depend neither on
--how_many nor on --batch_size, and two runs with the same options write identical files on the
same device (the CPU and CUDA generators give different streams). --batch_size > 1 only batches
the forward pass (eval-mode batch norm, so each image's output is independent of its batch up to
floating-point summation order).

Differences from the original: unreadable files (see data.datasets.load_rgb) are skipped with one
warning each and counted at the end; grayscale images are evaluated; if the folder holds fewer
than --how_many images, all of them are used and the statistics are over those (the original left
zero rows that dragged the mean down); any device, not only CUDA.

Exit status: 0; 2 for a missing folder or an unloadable checkpoint, or when no selected image can
be read; 1 when a result file cannot be written (the files of an earlier run stay whole: every
write is atomic). Errors are one line on stderr.
"""
from __future__ import annotations

import json
import math
import os
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from data.datasets import ImageFolderDataset, IndexedSubset, SkipLog, collate_skip_bad, eval_subset
from data.transforms import eval_transform
from models import create_model
from options.test_options import TestOptions
from util import metrics
from util.checkpoint import CheckpointError
from util.fileio import atomic_write_text
from util.hints import ColorizationBatch, cat_batches, get_colorization_data
from util.html import HTML
from util.image import save_image, to_uint8
from util.runtime import resolve_device, save_options, seed_everything

#: Hint settings of the original test.py: geometric hint counts with mean 0, 7 and 31.
SAMPLE_PS = (1.0, 0.125, 0.03125)
#: Visuals on the page, in the original's order.
VISUALS = ("gray", "hint", "hint_ab", "fake_entr", "real", "fake_reg", "real_ab", "fake_ab_reg")
#: Keys of the per-image metrics, in the order they are written, with their meaning.
METRICS = {
    "psnr": "dB, uint8 (truncated) real vs fake_reg, as the original; null = identical images (+inf)",
    "ssim": f"skimage SSIM, uint8 RGB, {metrics.SSIM_WIN_SIZE}x{metrics.SSIM_WIN_SIZE} uniform window, "
            "data_range 255",
    "colorfulness": "Hasler & Suesstrunk 2003 of fake_reg, signed opponent channels, uint8 scale",
    "saturation": "mean HSV saturation of fake_reg, [0, 1]",
    "colorfulness_real": "Hasler & Suesstrunk 2003 of real",
    "saturation_real": "mean HSV saturation of real, [0, 1]",
    "auc": f"area under the cumulative ab-error curve, thresholds 0..{metrics.AUC_MAX_THRESHOLD} "
           "(ECCV16), [0, 1]",
    "ciede2000": "mean CIEDE2000 difference real vs fake_reg",
    "entropy": "mean entropy of the predicted 529-bin distribution, nats",
}


def image_id(index: int, sample_p: float) -> str:
    """The original's anchor and file prefix of (image, setting): ``%08d_%.3f`` with '.' -> 'p'."""
    return ("%08d_%.3f" % (index, sample_p)).replace(".", "p")


def hint_generator(seed: int, index: int, device: torch.device) -> torch.Generator:
    """The hint RNG of image ``index``: a generator on ``device`` seeded from (seed, index)."""
    state = np.random.SeedSequence([seed % 2**64, index]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state))


def hinted_batch(rgb: torch.Tensor, sample_p: float, generators: Sequence[torch.Generator], opt) -> ColorizationBatch:
    """get_colorization_data (no grayscale filter) image by image, each with its own generator, stacked."""
    parts = [get_colorization_data(rgb[i:i + 1], ab_thresh=0.0, p=sample_p, sample_Ps=opt.sample_Ps,
                                   l_cent=opt.l_cent, l_norm=opt.l_norm, ab_norm=opt.ab_norm,
                                   mask_cent=opt.mask_cent, generator=g)
             for i, g in enumerate(generators)]
    return cat_batches(parts)


def image_metrics(real: np.ndarray, fake: np.ndarray, entropy: torch.Tensor) -> List[Dict[str, float]]:
    """Every metric of METRICS per image: real, fake N x H x W x 3 uint8; entropy N values (nats)."""
    lab_real, lab_fake = metrics.uint8_to_lab(real), metrics.uint8_to_lab(fake)
    columns = {
        "psnr": metrics.psnr_uint8(real, fake),
        "ssim": metrics.ssim_uint8(real, fake),
        "colorfulness": metrics.colorfulness_uint8(fake),
        "saturation": metrics.mean_hsv_saturation_uint8(fake),
        "colorfulness_real": metrics.colorfulness_uint8(real),
        "saturation_real": metrics.mean_hsv_saturation_uint8(real),
        "auc": metrics.ab_error_auc(lab_fake[..., 1:], lab_real[..., 1:]),
        "ciede2000": metrics.mean_ciede2000(lab_real, lab_fake),
        "entropy": entropy.double().cpu().numpy(),
    }
    return [{key: float(columns[key][i]) for key in METRICS} for i in range(real.shape[0])]


def json_number(value: float) -> Optional[float]:
    """A float for strict JSON: non-finite values (an infinite PSNR, its nan SE) become null."""
    return value if math.isfinite(value) else None


def summarise(sample_p: float, rows: List[dict]) -> dict:
    """One entry of metrics.json 'settings': mean and SE of each metric over the images, and the images."""
    entry = {"sample_p": sample_p, "num_images": len(rows)}
    for key in METRICS:
        mean, se = metrics.mean_and_se([row[key] for row in rows])
        entry[key] = {"mean": json_number(mean), "se": json_number(se)}
    entry["images"] = [{k: (json_number(v) if isinstance(v, float) else v) for k, v in row.items()} for row in rows]
    return entry


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
    for images, batch_indices, bad_files in tqdm(loader, desc="test", unit="batch", dynamic_ncols=True,
                                                 file=sys.stdout):
        skip_log.add(bad_files)
        if images.shape[0] == 0:
            continue
        rgb = images.to(device).float().div_(255.0)
        batch_indices = batch_indices.tolist()
        paths = [os.path.relpath(dataset.samples[i][0], dataroot).replace(os.sep, "/") for i in batch_indices]
        generators = [hint_generator(opt.seed, i, device) for i in batch_indices]
        results = {}  # sample_p -> (uint8 visuals, per-image metrics)
        for sample_p in SAMPLE_PS:
            model.set_input(hinted_batch(rgb, sample_p, generators, opt))
            model.test(compute_losses=False)
            visuals = model.get_current_visuals()
            uint8 = {label: to_uint8(visuals[label]) for label in VISUALS}
            entropy = metrics.prediction_entropy(model.fake_B_distr)
            results[sample_p] = (uint8, image_metrics(uint8["real"], uint8["fake_reg"], entropy))
        for j, (index, path) in enumerate(zip(batch_indices, paths)):  # the page is image-major
            for sample_p in SAMPLE_PS:
                uint8, values = results[sample_p]
                anchor = image_id(index, sample_p)
                names = [f"{anchor}_{label}.png" for label in VISUALS]
                for label, name in zip(VISUALS, names):
                    save_image(uint8[label][j], os.path.join(webpage.get_image_dir(), name))
                webpage.add_header(f"{anchor}: {path}", anchor=anchor)
                webpage.add_images(names, list(VISUALS), names, width=opt.display_winsize)
                webpage.add_text(f"PSNR {values[j]['psnr']:.2f} dB, SSIM {values[j]['ssim']:.4f}")
                rows[sample_p].append({"path": path, "index": index, **values[j]})

    n_images = len(rows[SAMPLE_PS[0]])
    if n_images == 0:
        skip_log.report(web_dir)
        print(f"error: none of the {len(indices)} selected images in {dataroot} could be read", file=sys.stderr)
        return 2
    settings = [summarise(p, rows[p]) for p in SAMPLE_PS]
    report = {
        "name": opt.name, "which_epoch": opt.which_epoch, "dataroot": dataroot, "how_many": opt.how_many,
        "num_images": n_images, "num_skipped": len(skip_log),
        "skipped": [os.path.relpath(p, dataroot).replace(os.sep, "/") for p in skip_log.paths],
        "loadSize": opt.loadSize, "mask_cent": opt.mask_cent, "sample_Ps": list(opt.sample_Ps), "seed": opt.seed,
        "device": device.type, "metrics": METRICS,
        "settings": settings,
    }
    json_path = os.path.join(web_dir, "metrics.json")
    write_json(report, json_path)
    page_path = webpage.save()

    for p in SAMPLE_PS:  # the original's printout
        mean, se = metrics.mean_and_se([row["psnr"] for row in rows[p]])
        print("p=%.3f: %.2f+/-%.2f" % (p, mean, se))
    print(f"{'metric':<18}" + "".join(f"{'p=%g' % p:>22}" for p in SAMPLE_PS))
    for key in METRICS:  # mean +/- SE of every metric, one row each
        cells = []
        for entry in settings:
            mean, se = entry[key]["mean"], entry[key]["se"]
            cells.append(f"{'inf' if mean is None else f'{mean:.4f}'}+/-{'nan' if se is None else f'{se:.4f}'}")
        print(f"{key:<18}" + "".join(f"{c:>22}" for c in cells))
    print(f"evaluated {n_images} image(s); page: {page_path}; metrics: {json_path}")
    skip_log.report(web_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
