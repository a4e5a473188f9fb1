"""The probes' figures: accuracy against layer, for one run or for several models.

Drawn with matplotlib's object API on an Agg canvas (no pyplot state, no global backend switch)
and written atomically (util.fileio.atomic_savefig). ``results`` arguments are the results.json
objects of train_linear_classifiers.py: {"layers": {layer: {"val_top1": fraction, ...}}, ...}.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from util.fileio import atomic_savefig

#: Size (inches) and resolution of the probes' figures: 660 x 456 px.
PROBE_FIGSIZE = (5.5, 3.8)
PROBE_DPI = 120


def probe_axes():
    """A new figure of the probes' size on an Agg canvas, and its one axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=PROBE_FIGSIZE, dpi=PROBE_DPI)
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def plot_val_top1_by_layer(results: Mapping[str, Mapping], path: str, layers: Sequence[str],
                           title: str = "Linear classification on frozen features") -> str:
    """The study's figure: validation top-1 (%) against layer, one line per model.

    results: label -> a results.json; layers: every probe layer in network order (the x axis, so
    that a model probed on fewer layers is drawn at the right places). Returns ``path``.
    """
    fig, ax = probe_axes()
    for label, r in results.items():
        probed = [layer for layer in layers if layer in r["layers"]]
        ax.plot([layers.index(layer) for layer in probed], [100 * r["layers"][layer]["val_top1"] for layer in probed],
                "o-", label=label)
    ax.set_xticks(range(len(layers)), layers)
    ax.set_xlabel("layer")
    ax.set_ylabel("val top-1 accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if results:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return atomic_savefig(fig, path)


def plot_probe_accuracy(results: Mapping, path: str, title: str) -> str:
    """One run's figure: validation top-1/top-5 and training top-1 (%) against its layers, with the
    chance level 100 / num_classes. Returns ``path``."""
    layers = list(results["layers"])
    x = range(len(layers))
    fig, ax = probe_axes()
    for metric, style, label in (("val_top1", "o-", "val top-1"), ("val_top5", "s-", "val top-5"),
                                 ("train_top1", "o--", "train top-1")):
        ax.plot(x, [100 * results["layers"][layer][metric] for layer in layers], style, label=label)
    ax.axhline(100 / results["num_classes"], color="gray", lw=0.8, ls=":", label="chance (top-1)")
    ax.set_xticks(list(x), layers)
    ax.set_xlabel("layer")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return atomic_savefig(fig, path)
