"""The comparison report of compare_models.py: what each model's evaluations wrote, gathered, and
one HTML page (index.html, sweep.png, probes.png) with a section per evaluation.

A model is a dict {"name", "metrics" (test.py's metrics.json), "sweep" ({"num_points", "mean",
"se"} from test_sweep.py's sweep.csv), "probes" (train_linear_classifiers.py's results.json),
"shape_bias" ({"results": test_shape_bias.py's shape_bias.json, "human": the human value or None}),
"pages" ({label: path of an HTML page}), "gray" (the no-colour baseline's sweep PSNR (mean, se) in
dB, from sweep.csv)}; a missing result is None and shown as such. The no-colour baseline (the
photo left gray, ab = 0) is shown beside every model's scores: a row in each table, a dashed line
in the sweep plot.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Dict, List, Optional, Sequence

import dominate
from dominate.tags import a, h1, h2, h3, img, li, p, table, tbody, td, th, thead, tr, ul

from evaluation.intrinsic import BASELINE_KEY
from evaluation.shape_bias import HUMAN_FILE, REFERENCES, plot_shape_bias, read_human
from evaluation.sweep import BASELINE_LABEL, Curve, plot_sweep, read_csv, read_csv_baseline
from models.probes import LAYERS
from util.fileio import atomic_write_text
from util.plots import plot_val_top1_by_layer

TABLE_STYLE = "border-collapse: collapse;"


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
        "shape_bias": read_shape_bias(os.path.join(results_dir, subdir or name, "shape_bias")),
        "gray": read_sweep_gray(os.path.join(sweep_dir, "sweep.csv")),
        "pages": {label: path for label, path in (("test page", os.path.join(val_dir, "index.html")),
                                                  ("sweep page", os.path.join(sweep_dir, "index.html")))
                  if os.path.isfile(path)},
    }


def fmt(stat: Optional[dict]) -> str:
    """A test.py statistic {"mean", "se"} as 'mean ± se' (3 decimals), or 'n/a'."""
    if not stat or stat.get("mean") is None:
        return "n/a"
    return f"{stat['mean']:.3f} ± {stat.get('se', 0.0):.3f}"


def _cells(row_tag, values) -> None:
    with tr():
        for v in values:
            row_tag(v)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A bordered table: one header row, then one row per entry of ``rows``."""
    with table(border=1, style=TABLE_STYLE):
        with thead():
            _cells(th, header)
        with tbody():
            for row in rows:
                _cells(td, row)


def draw_plots(models: List[dict], out_dir: str) -> Dict[str, Optional[str]]:
    """sweep.png (every sweep curve and the SIGGRAPH17 reference) and probes.png (val top-1 per
    layer), each only when some model has the results; returns their names relative to out_dir."""
    names: Dict[str, Optional[str]] = {"sweep": None, "probes": None}
    curves = sweep_curves(models)
    if curves:
        names["sweep"] = "sweep.png"
        plot_sweep(curves, os.path.join(out_dir, names["sweep"]), reference=True, baselines=sweep_baselines(models))
    probe_results = {m["name"]: m["probes"] for m in models if m["probes"]}
    if probe_results:
        names["probes"] = "probes.png"
        plot_val_top1_by_layer(probe_results, os.path.join(out_dir, names["probes"]), LAYERS)
    names["shape_bias"] = draw_shape_bias(models, out_dir)
    return names


def sweep_curves(models: List[dict]) -> List[Curve]:
    return [(m["name"], m["sweep"]["num_points"], m["sweep"]["mean"], m["sweep"]["se"]) for m in models if m["sweep"]]


def pages_section(models: List[dict], out_dir: str) -> None:
    """Links to each model's test and sweep pages, relative to the report."""
    h2("Pages")
    with ul():
        for m in models:
            with li(m["name"] + ": "):
                if not m["pages"]:
                    p("no pages found")
                for label, path in m["pages"].items():
                    a(label, href=os.path.relpath(path, out_dir))
                    p(" ", style="display:inline")


def sweep_section(models: List[dict], png: Optional[str]) -> None:
    """The sweep plot and a table of mean ± SE per hint count (the first model's levels) per model."""
    h2("PSNR against the number of hints (test_sweep.py)")
    if not png:
        p("No sweep results found.")
        return
    curves = sweep_curves(models)
    img(src=png, style="width:640px")
    _table(["hints"] + [c[0] for c in curves],
           [["Auto" if n == 0 else str(n)] + [f"{c[2][i]:.2f} ± {c[3][i]:.2f}" if i < len(c[2]) else "n/a"
                                              for c in curves]
            for i, n in enumerate(curves[0][1])] + [baseline_sweep_row(models)])


def metrics_section(models: List[dict]) -> None:
    """One table per hint setting (sample_p) of every test.py metric per model, mean ± SE; the
    metric names are those of the first model's first setting."""
    h2("Test metrics (test.py), mean ± standard error")
    with_metrics = [m for m in models if m["metrics"]]
    if not with_metrics:
        p("No test metrics found.")
        return
    ps = sorted({s["sample_p"] for m in with_metrics for s in m["metrics"]["settings"]}, reverse=True)
    names = [k for k, v in with_metrics[0]["metrics"]["settings"][0].items() if isinstance(v, dict) and "mean" in v]
    for sample_p in ps:
        h3(f"sample_p = {sample_p:g}")
        rows = []
        for m in with_metrics:
            setting = next((s for s in m["metrics"]["settings"] if s["sample_p"] == sample_p), {})
            rows.append([m["name"], str(setting.get("num_images", "n/a"))] + [fmt(setting.get(k)) for k in names])
            rows.extend(baseline_metric_rows(m["name"], setting, names))
        _table(["model", "images"] + names, rows)


def probe_cell(layer_result: Optional[dict]) -> str:
    """'val top-1 / top-5' in % (1 decimal) of one layer, 'n/a' for what is missing."""
    if layer_result is None:
        return "n/a"
    top5 = layer_result.get("val_top5")
    return f"{100 * layer_result['val_top1']:.1f} / " + (f"{100 * top5:.1f}" if top5 is not None else "n/a")


def probes_section(models: List[dict], png: Optional[str]) -> None:
    """The probes plot and a table of val top-1 / top-5 per layer per model."""
    h2("Linear probes on frozen features (train_linear_classifiers.py)")
    with_probes = [m for m in models if m["probes"]]
    if not with_probes:
        p("No probe results found.")
        return
    if png:
        img(src=png, style="width:480px")
    _table(["model", "protocol", "classes"] + [f"{layer} top-1 / top-5" for layer in LAYERS],
           [[m["name"], str(m["probes"].get("protocol")), str(m["probes"].get("num_classes"))] +
            [probe_cell(m["probes"]["layers"].get(layer)) for layer in LAYERS] for m in with_probes])


def write_report(models: List[dict], out_dir: str, which_epoch: str) -> str:
    """Write <out_dir>/index.html (+ its PNGs) for the gathered models; return the page path."""
    os.makedirs(out_dir, exist_ok=True)
    pngs = draw_plots(models, out_dir)
    doc = dominate.document(title="Colorization model comparison")
    with doc:
        h1("Colorization model comparison")
        p(f"Models: {', '.join(m['name'] for m in models)}; checkpoints '{which_epoch}'.")
        pages_section(models, out_dir)
        sweep_section(models, pngs["sweep"])
        metrics_section(models)
        probes_section(models, pngs["probes"])
        shape_bias_section(models, pngs["shape_bias"])
    path = os.path.join(out_dir, "index.html")
    atomic_write_text(path, doc.render())
    return path


# -- the shape bias (test_shape_bias.py; evaluation/shape_bias.py) ---------------------------------
def read_shape_bias(folder: str) -> Optional[dict]:
    """{"results": <folder>/shape_bias.json, "human": the shape bias in <folder>/human_shape_bias.json
    (a fraction) or None}; None when there is no shape_bias.json (or it cannot be read)."""
    results = read_json(os.path.join(folder, "shape_bias.json"))
    if results is None:
        return None
    return {"results": results, "human": read_human(os.path.join(folder, HUMAN_FILE))}


def shape_bias_human(models: List[dict]) -> Optional[float]:
    """The human shape bias that the first model with one found beside its stimuli, or None."""
    return next((m["shape_bias"]["human"] for m in models if m.get("shape_bias") and
                 m["shape_bias"]["human"] is not None), None)


def draw_shape_bias(models: List[dict], out_dir: str) -> Optional[str]:
    """shape_bias.png (every model's shape bias per layer, the references) when some model has
    results; returns its name relative to out_dir."""
    results = {m["name"]: m["shape_bias"]["results"] for m in models if m.get("shape_bias")}
    if not results:
        return None
    plot_shape_bias(results, os.path.join(out_dir, "shape_bias.png"), shape_bias_human(models))
    return "shape_bias.png"


def shape_bias_cell(layer_result: Optional[dict]) -> str:
    """'shape bias / val top-1' in % (1 decimal) of one layer, 'n/a' for what is missing."""
    if layer_result is None:
        return "n/a"
    bias = layer_result.get("shape_bias")
    return ("n/a" if bias is None else f"{100 * bias:.1f}") + f" / {100 * layer_result['val_top1']:.1f}"


def shape_bias_section(models: List[dict], png: Optional[str]) -> None:
    """The shape-bias plot and a table of shape bias / val top-1 per layer per model."""
    h2("Shape bias on cue-conflict stimuli (test_shape_bias.py)")
    with_results = [(m["name"], m["shape_bias"]["results"]) for m in models if m.get("shape_bias")]
    if not with_results:
        p("No shape-bias results found.")
        return
    human = shape_bias_human(models)
    references = [f"{name} {value:.1f}%" for name, value in REFERENCES] + \
        ([f"humans {100 * human:.1f}% (from the published trials)"] if human is not None else [])
    p("Shape bias = shape decisions / (shape + texture decisions) of each layer's 16-way linear probe over the "
      "cue-conflict images (Geirhos et al., ICLR 2019); 50% is no preference. References: "
      + ", ".join(references) + ".")
    if png:
        img(src=png, style="width:480px")
    _table(["model", "stimuli (conflict)"] + [f"{layer} shape bias / val top-1 (%)" for layer in LAYERS],
           [[name, f"{r.get('num_stimuli')} ({r.get('num_conflict')})"] +
            [shape_bias_cell(r["layers"].get(layer)) for layer in LAYERS] for name, r in with_results])


# -- the no-colour baseline (the photo left gray, ab = 0), beside every model's scores -------------
def read_sweep_gray(path: str) -> Optional[tuple]:
    """The no-colour baseline's sweep PSNR (mean, se) in dB from a sweep.csv; None if the file is
    absent, unreadable (read_sweep warns about it) or older than the baseline."""
    try:
        return read_csv_baseline(path) if os.path.isfile(path) else None
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def baseline_label(name: str, models: List[dict]) -> str:
    """BASELINE_LABEL, prefixed with the model's name when several models are shown."""
    return BASELINE_LABEL if len(models) == 1 else f"{name}: {BASELINE_LABEL}"


def sweep_baselines(models: List[dict]) -> List[tuple]:
    """(label, dB) of each distinct no-colour baseline of the models with a sweep: one line when
    they were swept on the same images (equal to 0.01 dB), else one per model, named."""
    swept = [m for m in models if m["sweep"] and m.get("gray")]
    values = {round(m["gray"][0], 2) for m in swept}
    if len(values) == 1:
        return [(BASELINE_LABEL, swept[0]["gray"][0])]
    return [(baseline_label(m["name"], swept), m["gray"][0]) for m in swept]


def baseline_sweep_row(models: List[dict]) -> List[str]:
    """The sweep table's last row: the no-colour baseline (mean ± SE, dB) under each swept model's
    column (it needs no hints, so one value per model)."""
    swept = [m for m in models if m["sweep"]]
    return [BASELINE_LABEL] + [f"{m['gray'][0]:.2f} ± {m['gray'][1]:.2f}" if m.get("gray") else "n/a" for m in swept]


def baseline_metric_rows(name: str, setting: dict, names: Sequence[str]) -> List[List[str]]:
    """The row of a test-metrics table under model ``name``'s: its no-colour baseline on the same
    images (metrics.json's BASELINE_KEY entry of this setting); no row when the file has none."""
    gray = setting.get(BASELINE_KEY)
    if not gray:
        return []
    return [[f"{name}: {BASELINE_LABEL}", str(setting.get("num_images", "n/a"))] + [fmt(gray.get(k)) for k in names]]
