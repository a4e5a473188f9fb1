"""The intrinsic evaluation of test.py: each image at three hint settings, its visuals and metrics.

Hints for image i come from a generator seeded from (seed, i), so an image's results depend
neither on how many images are evaluated nor on the batch size. The metrics compare ``real``
(lab2rgb of the input's L and ground-truth ab) with ``fake_reg`` (the regression output), both as
uint8 images made by truncation (util.image.to_uint8), as the original's test.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np
import torch

from data.datasets import SkipLog
from util import metrics
from util.hints import ColorizationBatch, cat_batches, get_colorization_data
from util.image import to_uint8

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
#: The no-colour baseline: the 'gray' visual (the input's L with ab = 0, the photo left gray),
#: scored against ``real`` by the same code and uint8 rounding as fake_reg. It does not depend on
#: the hints, so it is computed once per image and repeated in every setting.
BASELINE_KEY = "gray_baseline"
BASELINE_LABEL = "no colour (gray, ab = 0)"
#: The metrics of METRICS that score the colorization (the others describe real or the network).
BASELINE_METRICS = ("psnr", "ssim", "colorfulness", "saturation", "auc", "ciede2000")


@dataclass
class ImageResult:
    """One image at one hint setting: ``visuals`` maps each of VISUALS to an H x W x 3 uint8 image,
    ``values`` each key of METRICS to a float (psnr +inf for identical images), ``baseline`` each
    key of BASELINE_METRICS to the gray image's value."""
    index: int
    sample_p: float
    visuals: Dict[str, np.ndarray]
    values: Dict[str, float]
    baseline: Dict[str, float] = field(default_factory=dict)


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


def colorization_scores(real: np.ndarray, fake: np.ndarray) -> Dict[str, np.ndarray]:
    """The metrics of BASELINE_METRICS of ``fake`` (against ``real`` where they compare), N values
    each: real, fake N x H x W x 3 uint8. The one scoring code of the model and of the baseline."""
    lab_real, lab_fake = metrics.uint8_to_lab(real), metrics.uint8_to_lab(fake)
    return {
        "psnr": metrics.psnr_uint8(real, fake),
        "ssim": metrics.ssim_uint8(real, fake),
        "colorfulness": metrics.colorfulness_uint8(fake),
        "saturation": metrics.mean_hsv_saturation_uint8(fake),
        "auc": metrics.ab_error_auc(lab_fake[..., 1:], lab_real[..., 1:]),
        "ciede2000": metrics.mean_ciede2000(lab_real, lab_fake),
    }


def image_metrics(real: np.ndarray, fake: np.ndarray, entropy: torch.Tensor) -> List[Dict[str, float]]:
    """Every metric of METRICS per image: real, fake N x H x W x 3 uint8; entropy N values (nats)."""
    columns = {
        **colorization_scores(real, fake),
        "colorfulness_real": metrics.colorfulness_uint8(real),
        "saturation_real": metrics.mean_hsv_saturation_uint8(real),
        "entropy": entropy.double().cpu().numpy(),
    }
    return [{key: float(columns[key][i]) for key in METRICS} for i in range(real.shape[0])]


def baseline_metrics(real: np.ndarray, gray: np.ndarray) -> List[Dict[str, float]]:
    """The no-colour baseline per image: BASELINE_METRICS of ``gray`` (the input's L with ab = 0)
    against ``real``, both N x H x W x 3 uint8 as the page saves them."""
    columns = colorization_scores(real, gray)
    return [{key: float(columns[key][i]) for key in BASELINE_METRICS} for i in range(real.shape[0])]


def evaluate_batch(model, rgb: torch.Tensor, indices: Sequence[int], opt, device: torch.device) -> List[ImageResult]:
    """Every image of a batch at every setting of SAMPLE_PS, image-major (as the original's page).

    rgb: sRGB in [0, 1], N x 3 x H x W on ``device``; indices: the N dataset indices (they seed the
    hints with opt.seed); model: a Pix2PixModel in eval mode; opt: its Lab and hint options.
    """
    generators = [hint_generator(opt.seed, i, device) for i in indices]
    by_setting, baseline = {}, None
    for sample_p in SAMPLE_PS:  # each generator's stream is consumed setting by setting
        model.set_input(hinted_batch(rgb, sample_p, generators, opt))
        model.test(compute_losses=False)
        visuals = model.get_current_visuals()
        uint8 = {label: to_uint8(visuals[label]) for label in VISUALS}
        entropy = metrics.prediction_entropy(model.fake_B_distr)
        by_setting[sample_p] = (uint8, image_metrics(uint8["real"], uint8["fake_reg"], entropy))
        baseline = baseline or baseline_metrics(uint8["real"], uint8["gray"])  # the same in every setting
    return [ImageResult(index, p, {label: image[j] for label, image in by_setting[p][0].items()}, by_setting[p][1][j],
                        baseline[j])
            for j, index in enumerate(indices) for p in SAMPLE_PS]


def evaluate_images(model, loader: Iterable, opt, device: torch.device, skip_log: SkipLog) -> Iterator[ImageResult]:
    """evaluate_batch over the batches of ``loader`` (data.datasets.IndexedSubset batches collated
    by collate_skip_bad: uint8 images, dataset indices, unreadable files), which go to ``skip_log``."""
    for images, indices, bad_files in loader:
        skip_log.add(bad_files)
        if images.shape[0] == 0:
            continue
        rgb = images.to(device).float().div_(255.0)
        yield from evaluate_batch(model, rgb, indices.tolist(), opt, device)


def json_number(value: float) -> Optional[float]:
    """A float for strict JSON: non-finite values (an infinite PSNR, its nan SE) become null."""
    return value if math.isfinite(value) else None


def mean_and_se_entry(values: Sequence[float]) -> dict:
    """{"mean", "se"} of per-image values for strict JSON (non-finite -> null)."""
    mean, se = metrics.mean_and_se(values)
    return {"mean": json_number(mean), "se": json_number(se)}


def json_row(row: dict) -> dict:
    """A per-image row for strict JSON: its floats, also those of nested dicts, through json_number."""
    return {k: json_number(v) if isinstance(v, float) else json_row(v) if isinstance(v, dict) else v
            for k, v in row.items()}


def summarise(sample_p: float, rows: List[dict]) -> dict:
    """One entry of metrics.json 'settings': mean and SE of each metric over the images, the same
    of the no-colour baseline (BASELINE_KEY, when the rows hold it), and the images."""
    entry = {"sample_p": sample_p, "num_images": len(rows)}
    for key in METRICS:
        entry[key] = mean_and_se_entry([row[key] for row in rows])
    if rows and BASELINE_KEY in rows[0]:
        entry[BASELINE_KEY] = {"label": BASELINE_LABEL, **{
            key: mean_and_se_entry([row[BASELINE_KEY][key] for row in rows]) for key in BASELINE_METRICS}}
    entry["images"] = [json_row(row) for row in rows]
    return entry
