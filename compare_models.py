"""One HTML report comparing several colorization models.

    python compare_models.py --names siggraph_caffemodel siggraph_reg2 siggraph_reg2_sat \
        --probes siggraph_caffemodel=./probes/pretrained siggraph_reg2=./probes/baseline \
        --out ./results/comparison

For each name it reads what the evaluation scripts wrote under --results_dir:
  <results_dir>/<name>/val_<which_epoch>/metrics.json    (test.py)
  <results_dir>/<name>/sweep_<which_epoch>/sweep.csv     (test_sweep.py)
and, for names given with --probes NAME=DIR, DIR/results.json (train_linear_classifiers.py).
A name may also be LABEL=SUBDIR: the model is shown as LABEL and its results are read from
<results_dir>/<SUBDIR>/ (models trained in different checkpoint folders under the same --name,
e.g. ``--names stylized=stylized/siggraph_reg2 coco=coco/siggraph_reg2``); --probes then uses LABEL.
It writes <out>/index.html with: every sweep curve on one plot with the SIGGRAPH17 reference,
the sweep table, a table of every test metric per model and hint setting (mean +- standard
error), probe accuracy per layer per model (table and plot), and links to each model's pages.
A missing result is shown as such; the report fails (one line, exit 2) only when none is found.
Every file is written atomically; one that cannot be written is a one-line error (exit 1).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, List, Optional, Sequence

import dominate
from dominate.tags import a, h1, h2, h3, img, li, p, table, tbody, td, th, thead, tr, ul

from models.probes import LAYERS, plot_val_top1_by_layer
from options import flags
from util.fileio import atomic_write_text
from evaluation.sweep import plot_sweep, read_csv

def read_json(path: str) -> Optional[dict]:
    """The JSON object in ``path``; None if absent or unreadable (one-line warning: shown as missing)."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            obj = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        print(f"warning: {path}: cannot read ({e}); left out of the report", file=sys.stderr)
        return None
    if not isinstance(obj, dict):
        print(f"warning: {path}: not a JSON object; left out of the report", file=sys.stderr)
        return None
    return obj


def read_sweep(path: str) -> Optional[Dict[str, list]]:
    """sweep.csv -> {'num_points': [...], 'mean': [...], 'se': [...]}; None if absent or unreadable
    (one-line warning)."""
    if not os.path.isfile(path):
        return None
    try:
        num_points, mean, se = read_csv(path)
    except (OSError, UnicodeDecodeError, KeyError, ValueError, TypeError) as e:
        print(f"warning: {path}: not a sweep.csv ({type(e).__name__}: {e}); left out of the report", file=sys.stderr)
        return None
    return {"num_points": list(num_points), "mean": list(mean), "se": list(se)}


def gather(name: str, results_dir: str, which_epoch: str, probe_dir: Optional[str], subdir: Optional[str] = None) -> dict:
    """Everything known about one model: its metrics, sweep, probe results and page paths, read
    from <results_dir>/<subdir or name>/."""
    val_dir = os.path.join(results_dir, subdir or name, f"val_{which_epoch}")
    sweep_dir = os.path.join(results_dir, subdir or name, f"sweep_{which_epoch}")
    return {
        "name": name,
        "metrics": read_json(os.path.join(val_dir, "metrics.json")),
        "sweep": read_sweep(os.path.join(sweep_dir, "sweep.csv")),
        "probes": read_json(os.path.join(probe_dir, "results.json")) if probe_dir else None,
        "pages": {label: path for label, path in (("test page", os.path.join(val_dir, "index.html")),
                                                  ("sweep page", os.path.join(sweep_dir, "index.html")))
                  if os.path.isfile(path)},
    }


def fmt(stat: Optional[dict]) -> str:
    if not stat or stat.get("mean") is None:
        return "n/a"
    return f"{stat['mean']:.3f} ± {stat.get('se', 0.0):.3f}"


def _cells(row_tag, values) -> None:
    with tr():
        for v in values:
            row_tag(v)


def write_report(models: List[dict], out_dir: str, which_epoch: str) -> str:
    """Write <out_dir>/index.html (+ its PNGs) for the gathered models; return the page path."""
    os.makedirs(out_dir, exist_ok=True)
    curves = [(m["name"], m["sweep"]["num_points"], m["sweep"]["mean"], m["sweep"]["se"]) for m in models if m["sweep"]]
    sweep_png = None
    if curves:
        sweep_png = "sweep.png"
        plot_sweep(curves, os.path.join(out_dir, sweep_png), reference=True)
    probe_results = {m["name"]: m["probes"] for m in models if m["probes"]}
    probes_png = None
    if probe_results:
        probes_png = "probes.png"
        plot_val_top1_by_layer(probe_results, os.path.join(out_dir, probes_png))

    doc = dominate.document(title="Colorization model comparison")
    with doc:
        h1("Colorization model comparison")
        p(f"Models: {', '.join(m['name'] for m in models)}; checkpoints '{which_epoch}'.")
        h2("Pages")
        with ul():
            for m in models:
                with li(m["name"] + ": "):
                    if not m["pages"]:
                        p("no pages found")
                    for label, path in m["pages"].items():
                        a(label, href=os.path.relpath(path, out_dir))
                        p(" ", style="display:inline")

        h2("PSNR against the number of hints (test_sweep.py)")
        if sweep_png:
            img(src=sweep_png, style="width:640px")
            levels = curves[0][1]
            with table(border=1, style="border-collapse: collapse;"):
                with thead():
                    _cells(th, ["hints"] + [c[0] for c in curves])
                with tbody():
                    for i, n in enumerate(levels):
                        _cells(td, ["Auto" if n == 0 else str(n)] +
                               [f"{c[2][i]:.2f} ± {c[3][i]:.2f}" if i < len(c[2]) else "n/a" for c in curves])
        else:
            p("No sweep results found.")

        h2("Test metrics (test.py), mean ± standard error")
        with_metrics = [m for m in models if m["metrics"]]
        if with_metrics:
            ps = sorted({s["sample_p"] for m in with_metrics for s in m["metrics"]["settings"]}, reverse=True)
            names = [k for k, v in with_metrics[0]["metrics"]["settings"][0].items() if isinstance(v, dict) and "mean" in v]
            for sample_p in ps:
                h3(f"sample_p = {sample_p:g}")
                with table(border=1, style="border-collapse: collapse;"):
                    with thead():
                        _cells(th, ["model", "images"] + names)
                    with tbody():
                        for m in with_metrics:
                            setting = next((s for s in m["metrics"]["settings"] if s["sample_p"] == sample_p), {})
                            _cells(td, [m["name"], str(setting.get("num_images", "n/a"))] +
                                   [fmt(setting.get(k)) for k in names])
        else:
            p("No test metrics found.")

        h2("Linear probes on frozen features (train_linear_classifiers.py)")
        with_probes = [m for m in models if m["probes"]]
        if with_probes:
            if probes_png:
                img(src=probes_png, style="width:480px")
            with table(border=1, style="border-collapse: collapse;"):
                with thead():
                    _cells(th, ["model", "protocol", "classes"] + [f"{l} top-1 / top-5" for l in LAYERS])
                with tbody():
                    for m in with_probes:
                        r = m["probes"]
                        cells = []
                        for layer in LAYERS:
                            v = r["layers"].get(layer)
                            cells.append("n/a" if v is None else
                                         f"{100 * v['val_top1']:.1f} / " +
                                         (f"{100 * v['val_top5']:.1f}" if v.get("val_top5") is not None else "n/a"))
                        _cells(td, [m["name"], str(r.get("protocol")), str(r.get("num_classes"))] + cells)
        else:
            p("No probe results found.")
    path = os.path.join(out_dir, "index.html")
    atomic_write_text(path, doc.render())
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=flags.HelpFormatter)
    parser.add_argument("--names", nargs="+", required=True, metavar="NAME[=SUBDIR]",
                        help="model names (folders under --results_dir), or LABEL=SUBDIR")
    parser.add_argument("--results_dir", default="./results/", help="where test.py and test_sweep.py wrote")
    evaluated = parser.add_argument_group("the evaluated checkpoint", "the one whose test.py and test_sweep.py "
                                          "results are read:\n<results_dir>/<name>/val_<which_epoch>/ and "
                                          "sweep_<which_epoch>/")
    flags.add_flags(evaluated, "which_epoch")
    parser.add_argument("--probes", nargs="*", default=[], metavar="NAME=DIR",
                        help="linear-probe output folder (--linear_checkpoints) of a model")
    parser.add_argument("--out", default="./results/comparison", help="report folder")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    subdirs = {}  # label -> folder under --results_dir
    for item in args.names:
        label, _, subdir = item.partition("=")
        if not label or label in subdirs or (not subdir and "=" in item):
            parser.error(f"--names expects distinct NAME or LABEL=SUBDIR entries (got {item!r})")
        subdirs[label] = subdir or label
    probe_dirs = {}
    for item in args.probes:
        name, sep, folder = item.partition("=")
        if not sep or name not in subdirs:
            parser.error(f"--probes expects NAME=DIR with NAME one of --names (got {item!r})")
        probe_dirs[name] = folder
    models = [gather(n, args.results_dir, args.which_epoch, probe_dirs.get(n), d) for n, d in subdirs.items()]
    for m in models:
        missing = [k for k in ("metrics", "sweep") if m[k] is None] + (["probes"] if m["name"] in probe_dirs and not m["probes"] else [])
        if missing:
            print(f"note: {m['name']}: no {', '.join(missing)} results found", file=sys.stderr)
    if not any(m["metrics"] or m["sweep"] or m["probes"] for m in models):
        print(f"error: no results found for {', '.join(subdirs)} under {args.results_dir}", file=sys.stderr)
        return 2
    try:
        path = write_report(models, args.out, args.which_epoch)
    except OSError as e:  # every file is written atomically: a failed write leaves the earlier report whole
        print(f"error: cannot write the report in {args.out}: {e}", file=sys.stderr)
        return 1
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
