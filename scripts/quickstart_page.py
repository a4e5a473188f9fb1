"""The quickstart's landing page: one HTML page that links everything scripts/quickstart.sh made.

    python scripts/quickstart_page.py --checkpoints_dir ./checkpoints/quickstart \
        --results_dir ./results/quickstart --photo ./quickstart_data/val/coffee_000.png \
        --colorized ./results/quickstart/coffee_000_colorized.png

Writes <results_dir>/index.html (atomically) and prints its path. It shows the final model's
headline numbers next to the no-colour baseline (sweep.csv and metrics.json of test_sweep.py and
test.py), then links the four phases' training pages and loss logs, the test page, the sweep page
(with its plot), the photo before and after colorization, and the comparison report. Every link
is relative, so the page keeps working when the folders move together; an output that is missing
is named as such (with a one-line warning) instead of a dead link.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional, Sequence, Tuple
from urllib.parse import quote

import dominate
from dominate.tags import a, h1, h2, img, li, p, table, td, th, tr, ul

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from evaluation.intrinsic import BASELINE_KEY, BASELINE_LABEL  # noqa: E402
from evaluation.sweep import read_csv, read_csv_baseline  # noqa: E402
from options import flags  # noqa: E402
from util.fileio import atomic_write_text  # noqa: E402

#: The phase folders of scripts/train_siggraph.sh, in training order; the last is the final model.
PHASES = ("siggraph_class_small", "siggraph_class", "siggraph_reg", "siggraph_reg2")
#: Sweep levels quoted in the headline (hints): none, and the two the quickstart's README cites.
HEADLINE_LEVELS = (0, 100, 501)


class Page:
    """Links and images relative to the page's folder; missing targets noted, not linked."""

    def __init__(self, folder: str):
        self.folder = folder
        self.missing: List[str] = []

    def href(self, path: str) -> Optional[str]:
        """``path`` relative to the page (URL-quoted), or None (and noted) when it does not exist."""
        if not os.path.exists(path):
            self.missing.append(path)
            return None
        return quote(os.path.relpath(path, self.folder).replace(os.sep, "/"))

    def link(self, text: str, path: str):
        """A link to ``path``, or the text with '(not found: path)'."""
        target = self.href(path)
        return a(text, href=target) if target else p(f"{text} (not found: {path})", style="display:inline")

    def image(self, path: str, alt: str, width: int):
        """An image of ``path`` linked to itself, or the 'not found' text."""
        target = self.href(path)
        if not target:
            return p(f"{alt} (not found: {path})")
        return a(img(src=target, alt=alt, style=f"width:{width}px; max-width:100%"), href=target)


def sweep_headline(csv_path: str) -> List[Tuple[str, str]]:
    """(label, mean +- SE dB) at HEADLINE_LEVELS and of the no-colour baseline, from sweep.csv;
    empty when the file is absent or unreadable."""
    try:
        levels, mean, se = read_csv(csv_path)
        gray = read_csv_baseline(csv_path)
    except (OSError, KeyError, ValueError) as e:
        print(f"warning: {csv_path}: cannot read ({e})", file=sys.stderr)
        return []
    rows = [("Auto (no hints)" if n == 0 else f"{n} hints", f"{mean[levels.index(n)]:.2f} ± {se[levels.index(n)]:.2f}")
            for n in HEADLINE_LEVELS if n in levels]
    return rows + ([(BASELINE_LABEL, f"{gray[0]:.2f} ± {gray[1]:.2f}")] if gray else [])


def test_headline(json_path: str) -> List[Tuple[str, str, str]]:
    """(sample_p, model PSNR, no-colour PSNR) per test.py setting (mean +- SE dB); empty when
    metrics.json is absent or unreadable."""
    try:
        with open(json_path) as f:
            settings = json.load(f)["settings"]
    except (OSError, KeyError, TypeError, ValueError) as e:
        print(f"warning: {json_path}: cannot read ({e})", file=sys.stderr)
        return []
    stat = lambda s: "n/a" if not s or s.get("mean") is None else f"{s['mean']:.2f} ± {s['se'] or 0:.2f}"  # noqa: E731
    return [(f"{s['sample_p']:g}", stat(s.get("psnr")), stat(s.get(BASELINE_KEY, {}).get("psnr"))) for s in settings]


def headline_section(final_results: str) -> None:
    """The final model's PSNR against the number of hints and in test.py, beside the baseline."""
    h2("The final model in numbers (PSNR, dB, mean ± standard error)")
    sweep = sweep_headline(os.path.join(final_results, "sweep_latest", "sweep.csv"))
    if sweep:
        table(tr(*[th(label) for label, _ in sweep]), tr(*[td(value) for _, value in sweep]), border=1,
              style="border-collapse: collapse;", cellpadding=4)
    tests = test_headline(os.path.join(final_results, "val_latest", "metrics.json"))
    if tests:
        p("test.py, random hints at each density (sample_p 1 = no hints):")
        table(tr(th("sample_p"), th("the model"), th(BASELINE_LABEL)), *[tr(*map(td, row)) for row in tests],
              border=1, style="border-collapse: collapse;", cellpadding=4)


def write_page(checkpoints_dir: str, results_dir: str, photo: str, colorized: str) -> Tuple[str, List[str]]:
    """Write <results_dir>/index.html; returns (its path, the outputs that were not found)."""
    out = os.path.join(results_dir, "index.html")
    page = Page(results_dir)
    final = os.path.join(results_dir, PHASES[-1])
    doc = dominate.document(title="Quickstart results")
    with doc:
        h1("Quickstart results")
        p("The SIGGRAPH17 recipe's four phases at a laptop's scale (scripts/quickstart.sh). The no-colour "
          "baseline is the photo left gray (its L with ab = 0), scored by the same metric code on the same images.")
        headline_section(final)
        h2("Training (one page per phase: loss curves and visuals)")
        with ul():
            for phase in PHASES:
                li(page.link(phase, os.path.join(checkpoints_dir, phase, "web", "index.html")), " · ",
                   page.link("loss_log.txt", os.path.join(checkpoints_dir, phase, "loss_log.txt")))
        h2("Evaluation of the final model")
        with ul():
            li(page.link("test page", os.path.join(final, "val_latest", "index.html")), " · ",
               page.link("metrics.json", os.path.join(final, "val_latest", "metrics.json")))
            li(page.link("PSNR against the number of hints", os.path.join(final, "sweep_latest", "index.html")),
               " · ", page.link("sweep.csv", os.path.join(final, "sweep_latest", "sweep.csv")))
            li(page.link("comparison report", os.path.join(results_dir, "comparison", "index.html")))
        page.image(os.path.join(final, "sweep_latest", "sweep.png"), "PSNR against the number of hints", 560)
        h2("A photo before and after colorization (one colour hint)")
        table(tr(td(page.image(photo, "before: the input photo", 256), p("before")),
                 td(page.image(colorized, "after: colorized", 256), p("after"))))
    atomic_write_text(out, doc.render())
    return out, page.missing


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_flags(parser, "checkpoints_dir")  # the folder of the phase folders (train_siggraph.sh's)
    parser.add_argument("--results_dir", required=True, help="where the evaluations wrote; the page goes here")
    parser.add_argument("--photo", required=True, help="the photo given to colorize.py")
    parser.add_argument("--colorized", required=True, help="colorize.py's output")
    args = parser.parse_args(argv)
    try:
        path, missing = write_page(args.checkpoints_dir, args.results_dir, args.photo, args.colorized)
    except OSError as e:
        print(f"error: cannot write the landing page in {args.results_dir}: {e}", file=sys.stderr)
        return 1
    for target in missing:
        print(f"warning: not found, named on the page without a link: {target}", file=sys.stderr)
    print(f"landing page: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
