"""What a linear-probe run records: log.jsonl and TensorBoard scalars per epoch, results.json and
its plot at the end, the lines printed, and the summary of several runs (train_linear_classifiers.sh).
"""
from __future__ import annotations

import json
import os
from typing import Mapping, Sequence

from models.probes import BLOCKS, GRIDS, LAYERS, feature_dim
from util.fileio import atomic_write_text
from util.plots import plot_probe_accuracy, plot_val_top1_by_layer

#: The per-layer figures of an epoch, in log.jsonl and results.json; losses in nats, top-k as fractions.
METRICS = ("train_loss", "train_top1", "train_top5", "val_loss", "val_top1", "val_top5")


def tensorboard_tag(protocol: str, metric: str, layer: str) -> str:
    """fork: the fork's tags (ValAccuracy/model3, ...), so its plotting notebook applies;
    corrected: ValTop1/conv3, ..."""
    split, what = metric.split("_")
    split = split.capitalize()
    if protocol == "fork":
        what = {"loss": "Loss", "top1": "Accuracy", "top5": "Top5"}[what]
        return f"{split}{what}/{BLOCKS[layer]}"
    return f"{split}{what.capitalize()}/{layer}"


class ProbeLogger:
    """log.jsonl (one line per epoch) and, when tensorboard is installed, TensorBoard scalars."""

    def __init__(self, folder: str, protocol: str):
        self.protocol = protocol
        self.jsonl = open(os.path.join(folder, "log.jsonl"), "w")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            self.writer = None
        else:
            self.writer = SummaryWriter(os.path.join(folder, "tensorboard"))

    def log(self, epoch: int, lr: float, stats: Mapping[str, Mapping[str, float]]) -> None:
        """One epoch: ``stats`` is {layer: {metric: value}} (METRICS)."""
        self.jsonl.write(json.dumps({"epoch": epoch, "lr": lr, "layers": stats}) + "\n")
        self.jsonl.flush()
        if self.writer is not None:
            for layer, values in stats.items():
                for metric, value in values.items():
                    self.writer.add_scalar(tensorboard_tag(self.protocol, metric, layer), value, epoch)
                    if self.protocol == "fork" and metric.endswith("top1"):  # the fork's F1 micro = top-1
                        self.writer.add_scalar(tensorboard_tag("fork", metric, layer).replace("Accuracy", "F1"),
                                               value, epoch)

    def close(self) -> None:
        self.jsonl.close()
        if self.writer is not None:
            self.writer.close()


def probe_results(opt, classes: Sequence[str], checkpoint: str, outcome: Mapping, seconds: float) -> dict:
    """The results.json object of a run: its settings, the last epoch's METRICS per layer with the
    best epoch, and outcome["data"] (what a protocol returns, see evaluation/probes.py)."""
    last = outcome["history"][-1]
    return {
        "protocol": opt.protocol, "num_classes": len(classes), "classes": classes,
        "checkpoint": checkpoint, "mask_cent": opt.mask_cent, "epochs": opt.niter,
        "best_criterion": "val_top1" if opt.protocol == "corrected" else "val_loss",
        "layers": {layer: {**last[layer], "best_epoch": outcome["best"][layer][1],
                           "best_val_top1": outcome["best"][layer][0], "dim": feature_dim(layer),
                           "grid": list(GRIDS[layer])} for layer in opt.layers},
        "data": outcome["data"], "seconds": seconds,
    }


def write_results(results: Mapping, folder: str, title: str) -> str:
    """<folder>/results.json and <folder>/accuracy_by_layer.png (titled ``title``); returns the JSON's path."""
    path = os.path.join(folder, "results.json")
    atomic_write_text(path, json.dumps(results, indent=2) + "\n")
    plot_probe_accuracy(results, os.path.join(folder, "accuracy_by_layer.png"), title)
    return path


def print_results(results: Mapping, path: str) -> None:
    """One line per layer (val top-1 / top-5, train top-1 in %, best epoch), then where results.json is."""
    for layer, r in results["layers"].items():
        print(f"{layer}: val top-1 {100 * r['val_top1']:.2f}%  top-5 {100 * r['val_top5']:.2f}%  "
              f"train top-1 {100 * r['train_top1']:.2f}%  (best epoch {r['best_epoch']})")
    print(f"results: {path}")


def summarize(runs: Mapping[str, str], out_dir: str) -> str:
    """Combine finished runs (label -> --linear_checkpoints folder; folders without results.json
    are left out) into <out_dir>/summary.json, summary.md (a table of val top-1/top-5 per layer) and
    summary.png (val top-1 against layer, one line per model: the study's figure). Returns the table."""
    results = {}
    for label, folder in runs.items():
        path = os.path.join(folder, "results.json")
        if os.path.isfile(path):
            with open(path) as f:
                results[label] = json.load(f)
    atomic_write_text(os.path.join(out_dir, "summary.json"), json.dumps(results, indent=2) + "\n")
    lines = ["| model | protocol | " + " | ".join(LAYERS) + " |", "|---|---|" + "---|" * len(LAYERS)]
    for label, r in results.items():
        cells = [f"{100 * r['layers'][layer]['val_top1']:.1f} / {100 * r['layers'][layer]['val_top5']:.1f}"
                 if layer in r["layers"] else "-" for layer in LAYERS]
        lines.append(f"| {label} | {r['protocol']} | " + " | ".join(cells) + " |")
    table = "\n".join(lines + ["", "val top-1 / top-5 (%) at the last epoch"])
    atomic_write_text(os.path.join(out_dir, "summary.md"), table + "\n")
    plot_val_top1_by_layer(results, os.path.join(out_dir, "summary.png"), LAYERS)
    return table
