"""Training logs: loss_log.txt (the original's format), loss_log.jsonl, and the training HTML page."""
from __future__ import annotations

import json
import os
import re
import time
from typing import Dict, Mapping

import torch

from util.fileio import atomic_write_text
from util.html import HTML
from util.image import save_image, tensor2im


class Visualizer:
    """Writes the loss logs and the training HTML page under <checkpoints_dir>/<name>/.

    Args:
        log_dir: <checkpoints_dir>/<name>.
        use_html: keep web/index.html with the visuals saved at each display event.
        winsize: image width in the page (px).
    """

    def __init__(self, log_dir: str, use_html: bool = True, winsize: int = 256, name: str = ""):
        self.log_dir = log_dir
        self.use_html = use_html
        self.winsize = winsize
        self.name = name
        self.web_dir = os.path.join(log_dir, "web")
        self.img_dir = os.path.join(self.web_dir, "images")
        self.log_name = os.path.join(log_dir, "loss_log.txt")
        self.jsonl_name = os.path.join(log_dir, "loss_log.jsonl")
        self.saved = {}  # epoch -> list of labels saved for it, to rebuild the page
        os.makedirs(log_dir, exist_ok=True)
        if use_html:
            os.makedirs(self.img_dir, exist_ok=True)
        with open(self.log_name, "a") as f:
            f.write(f"================ Training Loss ({time.strftime('%c')}) ================\n")

    def rewind(self, iters: int, labels) -> None:
        """Prepare for a run resumed at image count ``iters``: drop the log entries written after
        it (the resumed run writes them again) and list the epochs whose ``labels`` visuals are
        already on disk, so the page keeps them. A last line without its newline (the run was
        killed while writing it) is dropped too."""
        if os.path.isfile(self.log_name):
            keep = [line for line in self._complete_lines(self.log_name)
                    if not (m := re.match(r"\(epoch: \d+, iters: (\d+),", line)) or int(m.group(1)) <= iters]
            atomic_write_text(self.log_name, "".join(keep))
        if os.path.isfile(self.jsonl_name):
            keep = [line for line in self._complete_lines(self.jsonl_name)
                    if line.strip() and json.loads(line).get("iters", 0) <= iters]
            atomic_write_text(self.jsonl_name, "".join(keep))
        if self.use_html:
            epochs = {int(m.group(1)) for name in os.listdir(self.img_dir) if (m := re.match(r"epoch(\d+)_", name))}
            for ep in epochs:
                found = [label for label in labels if os.path.isfile(os.path.join(self.img_dir, f"epoch{ep:03d}_{label}.png"))]
                if found:
                    self.saved[ep] = found

    @staticmethod
    def _complete_lines(path: str) -> list:
        """The lines of a log file that were written whole (each log write is one line and its newline)."""
        with open(path) as f:
            return [line for line in f if line.endswith("\n")]

    def display_current_results(self, visuals: Mapping[str, torch.Tensor], epoch: int) -> None:
        """Save the first image of each visual as web/images/epoch%03d_<label>.png and rebuild the page
        (every epoch of this run, newest first)."""
        if not self.use_html:
            return
        for label, image in visuals.items():
            save_image(tensor2im(image), os.path.join(self.img_dir, f"epoch{epoch:03d}_{label}.png"))
        self.saved[epoch] = list(visuals.keys())
        page = HTML(self.web_dir, f"Experiment name = {self.name}", refresh=1)
        for ep in sorted(self.saved, reverse=True):
            page.add_header(f"epoch [{ep}]")
            names = [f"epoch{ep:03d}_{label}.png" for label in self.saved[ep]]
            page.add_images(names, self.saved[ep], names, width=self.winsize)
        page.save()

    def print_current_losses(self, epoch: int, iters: int, losses: Dict[str, float], t_comp: float, t_data: float,
                             extra: Dict[str, float] = None) -> str:
        """Append one line to loss_log.txt in the original's format, and one JSON object (the same
        values plus ``extra``, e.g. raw losses and lr) to loss_log.jsonl. Returns the line to print."""
        message = f"(epoch: {epoch}, iters: {iters}, time: {t_comp:.3f}, data: {t_data:.3f}) "
        message += ", ".join(f"{k}: {v:.3f}" for k, v in losses.items())
        with open(self.log_name, "a") as f:
            f.write(message + "\n")
        record = {"epoch": epoch, "iters": iters, "time": t_comp, "data": t_data, "losses": dict(losses)}
        if extra:
            record.update(extra)
        with open(self.jsonl_name, "a") as f:
            f.write(json.dumps(record) + "\n")
        return message
