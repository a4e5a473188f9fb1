"""Training logs: loss_log.txt (the original's format), loss_log.jsonl, the training HTML page with
the loss curves, and TensorBoard scalars when tensorboard is installed."""
from __future__ import annotations

import json
import math
import os
import re
import time
from array import array
from typing import Dict, Mapping, Optional

import torch

from util.fileio import atomic_savefig, atomic_write_text
from util.html import HTML
from util.image import save_image, tensor2im

PLOT_NAME = "loss_curves.png"  # in web/images/; no epoch prefix, so rewind() does not take it for visuals
PLOT_POINTS = 1000  # at most this many points per curve are drawn (a long log is subsampled)
PLOT_BUDGET = 50  # a redraw at a log event waits until this many times the previous redraw's time has passed


class LossHistory:
    """The losses logged by this run, as the plot shows them: images trained (``iters``) and one
    series of smoothed values per loss name (NaN where a record lacks it); compact arrays."""

    def __init__(self) -> None:
        self.iters = array("d")
        self.series: Dict[str, array] = {}

    def __len__(self) -> int:
        return len(self.iters)

    def add(self, iters: int, losses: Mapping[str, float]) -> None:
        """Append one record; a count that does not increase starts the history again (a fresh run
        logging into a folder that holds an earlier run's log)."""
        if self.iters and iters <= self.iters[-1]:
            self.__init__()
        for name in losses:
            self.series.setdefault(name, array("d", [math.nan] * len(self.iters)))
        self.iters.append(iters)
        for name, values in self.series.items():
            values.append(float(losses.get(name, math.nan)))


def plot_losses(history: LossHistory, path: str, title: str = "") -> str:
    """Draw every logged loss that has a positive value (log scale; the total G, the optimised
    loss, in black) against images trained, and save it atomically as a PNG. Returns ``path``.
    matplotlib's object API renders through Agg (no pyplot state, no backend switch)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, NullLocator

    step = max(1, math.ceil(len(history) / PLOT_POINTS))
    keep = sorted(set(range(0, len(history), step)) | {len(history) - 1}) if len(history) else []
    fig = Figure(figsize=(9, 4), dpi=100)
    fig.subplots_adjust(left=0.1, right=0.8, bottom=0.13, top=0.92)
    ax = fig.subplots()
    x = [history.iters[i] for i in keep]
    for name, values in history.series.items():
        y = [values[i] for i in keep]
        if any(v > 0 for v in y):  # the original's placeholder loss "0" has nothing to draw on a log scale
            ax.plot(x, y, label=name, marker="." if len(x) < 30 else None, color="black" if name == "G" else None,
                    linewidth=2 if name == "G" else 1)
    ax.set_yscale("log")
    ax.yaxis.set_minor_locator(NullLocator())  # (minor tick labels would double the drawing time)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # plain text: mathtext's parser is slow
    ax.set_xlabel("images trained")
    ax.set_ylabel("loss (smoothed, as in loss_log.txt)")
    ax.set_title(title, fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    return atomic_savefig(fig, path)


class Visualizer:
    """Writes the loss logs, the training HTML page and the TensorBoard scalars under
    <checkpoints_dir>/<name>/.

    Args:
        log_dir: <checkpoints_dir>/<name>.
        use_html: keep web/index.html: the loss curves (web/images/loss_curves.png) at the top,
            then the visuals saved at each display event, newest epoch first.
        winsize: image width in the page (px).
        name: the run's name, in the page's and the plot's titles.
        tensorboard: also write the logged losses and the learning rate to <log_dir>/tensorboard/
            (step: images trained) when tensorboard is installed; nothing otherwise.
    """

    def __init__(self, log_dir: str, use_html: bool = True, winsize: int = 256, name: str = "",
                 tensorboard: bool = False):
        self.log_dir = log_dir
        self.use_html = use_html
        self.winsize = winsize
        self.name = name
        self.web_dir = os.path.join(log_dir, "web")
        self.img_dir = os.path.join(self.web_dir, "images")
        self.log_name = os.path.join(log_dir, "loss_log.txt")
        self.jsonl_name = os.path.join(log_dir, "loss_log.jsonl")
        self.saved = {}  # epoch -> list of labels saved for it, to rebuild the page
        self.history = LossHistory()
        self._plot_due = 0.0  # time.time() from which a log event may redraw the plot
        self._plot_stale = False  # points were logged since the plot was drawn
        self._tensorboard = tensorboard
        self._writer = None  # the SummaryWriter, opened at the first scalar (or by rewind)
        os.makedirs(log_dir, exist_ok=True)
        if use_html:
            os.makedirs(self.img_dir, exist_ok=True)
        with open(self.log_name, "a") as f:
            f.write(f"================ Training Loss ({time.strftime('%c')}) ================\n")

    def rewind(self, iters: int, labels) -> None:
        """Prepare for a run resumed at image count ``iters``: drop the log entries written after
        it (the resumed run writes them again) and list the epochs whose ``labels`` visuals are
        already on disk, so the page keeps them. A last line without its newline (the run was
        killed while writing it) is dropped too. The plot is redrawn from the rewound log, and
        TensorBoard hides the events after ``iters``."""
        if os.path.isfile(self.log_name):
            keep = [line for line in self._complete_lines(self.log_name)
                    if not (m := re.match(r"\(epoch: \d+, iters: (\d+),", line)) or int(m.group(1)) <= iters]
            atomic_write_text(self.log_name, "".join(keep))
        if os.path.isfile(self.jsonl_name):
            lines = [line for line in self._complete_lines(self.jsonl_name) if line.strip()]
            kept = [(line, record) for line in lines if (record := json.loads(line)).get("iters", 0) <= iters]
            atomic_write_text(self.jsonl_name, "".join(line for line, _ in kept))
            for _, record in kept:
                self.history.add(record["iters"], record.get("losses", {}))
        if self.use_html:
            self.saved.update(self._visuals_on_disk(labels))
            self._redraw()
        self._open_tensorboard(purge_step=iters + 1)

    def _visuals_on_disk(self, labels) -> Dict[int, list]:
        """epoch -> the ``labels`` whose web/images/epoch%03d_<label>.png exist (epochs with any)."""
        epochs = {int(m.group(1)) for name in os.listdir(self.img_dir) if (m := re.match(r"epoch(\d+)_", name))}
        found = {ep: [label for label in labels
                      if os.path.isfile(os.path.join(self.img_dir, f"epoch{ep:03d}_{label}.png"))] for ep in epochs}
        return {ep: names for ep, names in found.items() if names}

    @staticmethod
    def _complete_lines(path: str) -> list:
        """The lines of a log file that were written whole (each log write is one line and its newline)."""
        with open(path) as f:
            return [line for line in f if line.endswith("\n")]

    def display_current_results(self, visuals: Mapping[str, torch.Tensor], epoch: int) -> None:
        """Save the first image of each visual as web/images/epoch%03d_<label>.png, redraw the loss
        curves and rebuild the page."""
        if not self.use_html:
            return
        for label, image in visuals.items():
            save_image(tensor2im(image), os.path.join(self.img_dir, f"epoch{epoch:03d}_{label}.png"))
        self.saved[epoch] = list(visuals.keys())
        self._redraw()

    def print_current_losses(self, epoch: int, iters: int, losses: Dict[str, float], t_comp: float, t_data: float,
                             extra: Dict[str, float] = None) -> str:
        """Append one line to loss_log.txt in the original's format, and one JSON object (the same
        values plus ``extra``, e.g. raw losses and lr) to loss_log.jsonl; write the losses (and
        ``extra["lr"]``) to TensorBoard; redraw the plot unless that would take more than 1/PLOT_BUDGET
        of the time (display events and the end of the run redraw it anyway). Returns the line to print."""
        message = f"(epoch: {epoch}, iters: {iters}, time: {t_comp:.3f}, data: {t_data:.3f}) "
        message += ", ".join(f"{k}: {v:.3f}" for k, v in losses.items())
        with open(self.log_name, "a") as f:
            f.write(message + "\n")
        record = {"epoch": epoch, "iters": iters, "time": t_comp, "data": t_data, "losses": dict(losses)}
        if extra:
            record.update(extra)
        with open(self.jsonl_name, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.history.add(iters, losses)
        self._add_scalars(iters, losses, (extra or {}).get("lr"))
        self._plot_stale = True
        if self.use_html and time.time() >= self._plot_due:
            self._redraw()
        return message

    def close(self) -> None:
        """The end of the run: the plot with every logged point, and the TensorBoard files flushed."""
        if self.use_html and self._plot_stale:
            self._redraw()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _redraw(self) -> None:
        """Draw the loss curves (when there are any) and rebuild the page: the plot first, then every
        epoch's visuals of this run, newest first."""
        started = time.time()
        if len(self.history):
            plot_losses(self.history, os.path.join(self.img_dir, PLOT_NAME), f"{self.name}: training losses")
        page = HTML(self.web_dir, f"Experiment name = {self.name}", refresh=1)
        if len(self.history):
            page.add_header("losses")
            page.add_images([PLOT_NAME], [f"logged every --print_freq images; {len(self.history)} points"],
                            [PLOT_NAME], width=900)
        for ep in sorted(self.saved, reverse=True):
            page.add_header(f"epoch [{ep}]")
            names = [f"epoch{ep:03d}_{label}.png" for label in self.saved[ep]]
            page.add_images(names, self.saved[ep], names, width=self.winsize)
        page.save()
        self._plot_stale = False
        self._plot_due = time.time() + PLOT_BUDGET * (time.time() - started)

    def _open_tensorboard(self, purge_step: int) -> None:
        """Open the SummaryWriter (when asked for and installed); events at steps from ``purge_step``
        on that an earlier run wrote there are hidden (0 for a fresh run, after the resume point
        for a resumed one), so a step is never shown twice."""
        if not self._tensorboard or self._writer is not None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            self._tensorboard = False
            return
        self._writer = SummaryWriter(os.path.join(self.log_dir, "tensorboard"), purge_step=purge_step)

    def _add_scalars(self, iters: int, losses: Mapping[str, float], lr: Optional[float]) -> None:
        self._open_tensorboard(purge_step=0)
        if self._writer is None:
            return
        for name, value in losses.items():
            self._writer.add_scalar(f"loss/{name}", value, iters)
        if lr is not None:
            self._writer.add_scalar("lr", lr, iters)
