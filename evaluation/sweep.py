"""PSNR against the number of colour hints (the paper's Figure 6; the original's test_sweep.py).

The sweep colorizes each image at 26 hint counts (``SWEEP_NUM_POINTS``), each hint a P x P patch
(6 x 6 in the paper) filled with the patch-mean ground-truth ab, and records the PSNR of the
regression output against the ground truth: PSNR(to_uint8(lab2rgb(L, ab)), to_uint8(lab2rgb(L,
out_reg))), exactly the metric of test.py. The 26 copies of one image go through the network as
one batch.

Also here, because compare_models.py draws the same figure for several models: the SIGGRAPH17
reference curve shipped in resources/, the per-level summary (mean, standard error), the CSV
format and the plot.
"""
from __future__ import annotations

import csv
import io
import json
import os
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from data.datasets import SkipLog
from evaluation.intrinsic import BASELINE_LABEL
from util.fileio import atomic_savefig, atomic_write_text
from util.color import AB_NORM, L_CENT, L_NORM, lab_norm2rgb
from util.hints import ColorizationBatch, cat_batches, get_colorization_data
from util.image import to_uint8
from util.metrics import psnr_uint8

#: resources/psnrs_siggraph.npy: per-image PSNR (1000 x 26) of the original SIGGRAPH17 model.
REFERENCE_NPY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "resources",
                             "psnrs_siggraph.npy")
REFERENCE_LABEL = "SIGGRAPH17 (reference)"
#: sweep.csv's columns of the baseline, the same value on every row (it does not depend on the hints).
BASELINE_CSV_HEADER = ("gray_psnr_mean", "gray_psnr_se")
#: Where the 0-hint ("Auto") point is drawn on the log x axis.
AUTO_X = 0.4
#: PSNR values are clipped to at most this. Identical uint8 images (MSE 0) would give +inf; the
#: largest finite value is 20 log10(255 sqrt(3 H W)), 101.1 dB at 256 x 256, so the cap only
#: touches (near-)perfect reconstructions and keeps every mean, CSV, JSON and plot finite.
PSNR_CAP_DB = 100.0
CSV_HEADER = ("num_points", "psnr_mean", "psnr_se")
#: The paper's hint patch sizes (6 x 6), test_sweep.py's default --sample_Ps.
PAPER_SAMPLE_PS = (6,)
#: Colours of the plotted models: matplotlib's tab10 without red, which marks the reference.
CURVE_COLOURS = tuple(f"tab:{c}" for c in ("blue", "orange", "green", "purple", "brown", "pink", "gray", "olive",
                                             "cyan"))

Curve = Tuple[str, Sequence[int], Sequence[float], Sequence[float]]


def sweep_num_points() -> List[int]:
    """The 26 hint counts: round(10**x) for x = -0.1, 0.0, ..., 2.7, the first (x = -0.1, which
    rounds to 1) set to 0, then the unique values in ascending order.

    Gives 0, 1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 32, 40, 50, 63, 79, 100, 126, 158, 200, 251,
    316, 398, 501.
    """
    exponents = np.round(np.arange(-0.1, 2.7 + 1e-9, 0.1), 10)
    counts = np.round(10.0 ** exponents).astype(np.int64)
    counts[0] = 0
    return np.unique(counts).tolist()


SWEEP_NUM_POINTS: List[int] = sweep_num_points()


def cap_psnr(psnrs: np.ndarray, cap: float = PSNR_CAP_DB) -> np.ndarray:
    """Clip PSNR values (dB) to at most ``cap``, turning +inf (identical images) into ``cap``."""
    return np.minimum(np.asarray(psnrs, dtype=np.float64), cap)


def summarize(psnrs: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Per-level mean and standard error of an images x levels PSNR array (dB).

    SE = std(ddof=1) / sqrt(n) over the n images; 0 when n = 1.
    """
    psnrs = np.asarray(psnrs, dtype=np.float64)
    n = psnrs.shape[0]
    if n == 0:
        raise ValueError("no images to summarise")
    mean = psnrs.mean(axis=0)
    se = psnrs.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros_like(mean)
    return mean, se


def load_reference(path: str = REFERENCE_NPY) -> Tuple[List[int], np.ndarray, np.ndarray]:
    """The SIGGRAPH17 reference curve: (num_points, mean, se) over its 1000 images (dB)."""
    psnrs = np.load(path)
    if psnrs.shape != (psnrs.shape[0], len(SWEEP_NUM_POINTS)):
        raise ValueError(f"{path}: expected images x {len(SWEEP_NUM_POINTS)} PSNRs, got shape {psnrs.shape}")
    mean, se = summarize(psnrs)
    return list(SWEEP_NUM_POINTS), mean, se


def write_csv(path: str, num_points: Sequence[int], mean: Sequence[float], se: Sequence[float],
              baseline: Optional[Tuple[float, float]] = None) -> None:
    """sweep.csv: header ``num_points,psnr_mean,psnr_se``, one row per level, dB to 6 decimals
    (written atomically). baseline: the no-colour baseline's (mean, se) in dB, added as the
    columns BASELINE_CSV_HEADER, repeated on every row."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_HEADER + (BASELINE_CSV_HEADER if baseline else ()))
    extra = tuple(f"{float(v):.6f}" for v in baseline) if baseline else ()
    for n, m, s in zip(num_points, mean, se):
        writer.writerow((int(n), f"{float(m):.6f}", f"{float(s):.6f}") + extra)
    atomic_write_text(path, text.getvalue())


def read_csv(path: str) -> Tuple[List[int], np.ndarray, np.ndarray]:
    """Read a sweep.csv back as (num_points, mean, se)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return ([int(r["num_points"]) for r in rows], np.array([float(r["psnr_mean"]) for r in rows]),
            np.array([float(r["psnr_se"]) for r in rows]))


def read_csv_baseline(path: str) -> Optional[Tuple[float, float]]:
    """The no-colour baseline's (mean, se) in dB from a sweep.csv; None when it has no such columns
    (one written before the baseline existed, or the reference curve's)."""
    with open(path, newline="") as f:
        first = next(csv.DictReader(f), None)
    if not first or any(first.get(key) in (None, "") for key in BASELINE_CSV_HEADER):
        return None
    return float(first[BASELINE_CSV_HEADER[0]]), float(first[BASELINE_CSV_HEADER[1]])


def write_json(path: str, record: dict) -> None:
    """Write a sweep record as strict JSON (no NaN/Infinity): one top-level key per line, lists
    compact, and a list of lists (the per-image PSNRs) one row per line."""
    lines = []
    for key, value in record.items():
        if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
            rows = ",\n  ".join(json.dumps(v, allow_nan=False) for v in value)
            text = f"[\n  {rows}\n ]"
        else:
            text = json.dumps(value, allow_nan=False)
        lines.append(f" {json.dumps(key)}: {text}")
    atomic_write_text(path, "{\n" + ",\n".join(lines) + "\n}\n")


# -- the measurement ------------------------------------------------------------------------------
def sweep_hints(rgb: Tensor, num_points: Sequence[int], *, sample_Ps: Sequence[int], mask_cent: float,
                l_cent: float = L_CENT, l_norm: float = L_NORM, ab_norm: float = AB_NORM,
                generator: Optional[torch.Generator] = None) -> ColorizationBatch:
    """One image repeated once per hint count, with exactly num_points[i] random hints in copy i.

    rgb: sRGB in [0, 1], 1 x 3 x H x W (float, on the target device). Hints as in test_sweep of the
    original: no grayscale filter, normal placement, patch size uniform over sample_Ps, patch-mean
    colour. Returns a ColorizationBatch of len(num_points) images.
    """
    if rgb.dim() != 4 or rgb.shape[0] != 1:
        raise ValueError(f"expected one image, 1 x 3 x H x W, got {tuple(rgb.shape)}")
    counts = torch.as_tensor(list(num_points), dtype=torch.long, device=rgb.device)
    return get_colorization_data(rgb.expand(len(counts), -1, -1, -1), ab_thresh=0.0, num_points=counts,
                                 sample_Ps=sample_Ps, l_cent=l_cent, l_norm=l_norm, ab_norm=ab_norm,
                                 mask_cent=mask_cent, generator=generator)


@torch.no_grad()
def batch_psnr(model, batch: ColorizationBatch) -> np.ndarray:
    """PSNR (dB, uncapped) of the regression colorization of every image of ``batch``.

    model: a Pix2PixModel (its generator with the run's --amp/--channels_last/--compile, in
    whatever train/eval mode it is in, and its Lab options). Only the regression head is needed,
    so this runs the generator directly rather than model.forward(),
    which would also decode the 529-class distribution; the values equal test.py's
    psnr_uint8(to_uint8(visuals['real']), to_uint8(visuals['fake_reg'])). Returns N values.
    """
    _, ab_pred = model.call_guarded(lambda: model.run_generator(batch.A, batch.hint_B, batch.mask_B))
    return ab_psnr(batch.A, batch.B, ab_pred.float(), model.opt)


def ab_psnr(A: Tensor, B: Tensor, ab: Tensor, opt) -> np.ndarray:
    """PSNR (dB, uncapped) per image of lab2rgb(A, ab) against the ground truth lab2rgb(A, B), both
    as uint8 by util.image.to_uint8 (test.py's metric). A: N x 1 x H x W, B and ab: N x 2 x H x W,
    normalised by opt's l_cent, l_norm and ab_norm."""
    real = lab_norm2rgb(torch.cat((A, B), dim=1), opt.l_cent, opt.l_norm, opt.ab_norm)
    fake = lab_norm2rgb(torch.cat((A, ab), dim=1), opt.l_cent, opt.l_norm, opt.ab_norm)
    return psnr_uint8(to_uint8(real), to_uint8(fake))


def gray_psnr(A: Tensor, B: Tensor, opt) -> np.ndarray:
    """The no-colour baseline: PSNR (dB, uncapped) per image of the input's L with ab = 0, by
    ab_psnr (the model's metric). A: N x 1 x H x W, B: N x 2 x H x W, normalised."""
    return ab_psnr(A, B, torch.zeros_like(B), opt)


def run_sweep(model, loader: Iterable, device: torch.device, opt, generator: torch.Generator, skip_log: SkipLog,
              progress: Callable[[int], object] = lambda n: None) -> Tuple[List[int], np.ndarray, np.ndarray]:
    """Sweep every image of ``loader`` (data.datasets.IndexedSubset batches collated by
    collate_skip_bad: uint8 images, dataset indices, unreadable files, which go to ``skip_log``).

    Hints for all images come from ``generator``, drawn image by image; opt: the model's Lab and
    hint options. progress(n) is called with the number of files read or skipped after each batch.
    Returns (dataset indices evaluated, PSNR array images x 26 in dB, uncapped, and the no-colour
    baseline's PSNR per image, gray_psnr, uncapped).
    """
    done, rows, gray = [], [], []
    for images, indices, bad_files in loader:
        progress(skip_log.add(bad_files))
        if images.shape[0] == 0:
            continue
        rgb = images.to(device, non_blocking=True).float().div_(255.0)
        batch = cat_batches([sweep_hints(rgb[i:i + 1], SWEEP_NUM_POINTS, sample_Ps=opt.sample_Ps,
                                         mask_cent=opt.mask_cent, l_cent=opt.l_cent, l_norm=opt.l_norm,
                                         ab_norm=opt.ab_norm, generator=generator) for i in range(rgb.shape[0])])
        rows.append(batch_psnr(model, batch).reshape(rgb.shape[0], len(SWEEP_NUM_POINTS)))
        first = slice(None, None, len(SWEEP_NUM_POINTS))  # one copy of each image: the baseline needs no hints
        gray.append(gray_psnr(batch.A[first], batch.B[first], opt))
        done.extend(indices.tolist())
        progress(images.shape[0])
    psnrs = np.concatenate(rows) if rows else np.zeros((0, len(SWEEP_NUM_POINTS)))
    return done, psnrs, np.concatenate(gray) if gray else np.zeros(0)


# -- presentation ---------------------------------------------------------------------------------
def plot_sweep(curves: Sequence[Curve], path: str, *, reference: bool = True, title: Optional[str] = None,
               xlabel: str = "Number of hints", baselines: Sequence[Tuple[str, float]] = ()) -> str:
    """Draw PSNR against the number of hints for several models and save it as an image.

    curves: (label, num_points, mean, se) per model, dB. reference: add the SIGGRAPH17 curve
    (red). baselines: (label, dB) per no-colour baseline, each a dashed horizontal line in the
    legend. Each curve is its mean with markers and a shaded mean +- SE band; the x axis is
    logarithmic with the 0-hint point drawn at x = 0.4 and labelled 'Auto'. Returns ``path``.
    Uses matplotlib's object API (no pyplot state, no backend switch).
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    fig = Figure(figsize=(7, 5))
    ax = fig.subplots()
    series = [(REFERENCE_LABEL, *load_reference(), "tab:red")] if reference else []
    series += [(label, n, m, s, CURVE_COLOURS[i % len(CURVE_COLOURS)]) for i, (label, n, m, s) in enumerate(curves)]
    for label, num_points, mean, se, colour in series:
        x = np.where(np.asarray(num_points) == 0, AUTO_X, np.asarray(num_points, dtype=np.float64))
        mean, se = np.asarray(mean, dtype=np.float64), np.asarray(se, dtype=np.float64)
        ax.plot(x, mean, "-o", color=colour, markersize=3, linewidth=1.5, label=label)
        ax.fill_between(x, mean - se, mean + se, color=colour, alpha=0.2, linewidth=0)
    for i, (label, value) in enumerate(baselines):
        ax.axhline(value, color="black", linestyle=("--", ":", "-.")[i % 3], linewidth=1.2, label=label)
    ticks = [AUTO_X, 1, 2, 5, 10, 20, 50, 100, 200, 500]
    ax.set_xscale("log")
    ax.set_xticks(ticks, ["Auto"] + [str(t) for t in ticks[1:]])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(0.3, 700)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("PSNR [dB]")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", title="mean ± SE (shaded)", fontsize="small", title_fontsize="small")
    fig.tight_layout()
    return atomic_savefig(fig, path, dpi=100)


def write_sweep_page(folder: str, title: str, label: str, num_points: Sequence[int], mean: Sequence[float],
                     se: Sequence[float], notes: Sequence[str] = (), image: str = "sweep.png") -> str:
    """<folder>/index.html: the plot ``image`` (relative to folder) and a table of every level,
    this model against the SIGGRAPH17 reference (mean +- SE, dB); ``notes``: paragraphs above them
    (see baseline_note). Returns the page's path."""
    import dominate
    from dominate.tags import a, h3, img, p, table, tbody, td, th, thead, tr

    ref_points, ref_mean, ref_se = load_reference()
    ref = {n: (m, s) for n, m, s in zip(ref_points, ref_mean, ref_se)}
    headings = ("hints", f"{label} [dB]", f"{REFERENCE_LABEL} [dB]", "difference [dB]")
    rows = [tr(*map(td, level_cells(n, m, s, ref.get(int(n))))) for n, m, s in zip(num_points, mean, se)]
    doc = dominate.document(title=title)
    with doc:
        h3(title)
        for note in notes:
            p(note)
        p(f"{REFERENCE_LABEL}: the original caffe model on 1000 ILSVRC2012 test images at 256 x 256 with 6x6 "
          "hints (resources/psnrs_siggraph.npy).")
        img(src=image, style="max-width: 100%; width: 700px;", alt="PSNR against the number of hints")
        p(a("sweep.csv", href="sweep.csv"), " · ", a("sweep.json", href="sweep.json"))
        table(thead(tr(*map(th, headings))), tbody(*rows), border=1,
              style="border-collapse: collapse; text-align: right;", cellpadding=4)
    path = os.path.join(folder, "index.html")
    atomic_write_text(path, doc.render())
    return path


def baseline_note(label: str, num_points: Sequence[int], mean: Sequence[float],
                  baseline: Tuple[float, float]) -> str:
    """The sweep page's sentence on the no-colour baseline: its mean +- SE (dB) and how far the
    model's curve is above it with no hints and with the most hints."""
    gray = baseline[0]
    return (f"{BASELINE_LABEL}, the same images and metric: {gray:.2f} ± {baseline[1]:.2f} dB. "
            f"{label} is {mean[0] - gray:+.2f} dB from it with no hints (Auto) and {mean[-1] - gray:+.2f} dB "
            f"with {int(num_points[-1])} hints.")


def level_cells(num_points: int, mean: float, se: float, reference: Optional[Tuple[float, float]]) -> List[str]:
    """The sweep page's table row of one level: hints, this model's and the reference's mean +- SE
    (dB), and the difference of the means; 'n/a' without a reference value."""
    return ["Auto (0)" if num_points == 0 else str(int(num_points)), f"{mean:.2f} ± {se:.2f}",
            f"{reference[0]:.2f} ± {reference[1]:.2f}" if reference else "n/a",
            f"{mean - reference[0]:+.2f}" if reference else "n/a"]
