"""What every model shares: devices, checkpoints, schedulers and smoothed loss reporting."""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Dict, List

import torch
from torch import nn

from models.networks import get_scheduler
from util.checkpoint import load_network, save_network


class LossSmoother:
    """The original's display smoothing of losses (spec section 5.5), with each name counted once.

    Per call: S <- value + alpha * S, reported = (1 - alpha) / (1 - alpha^k) * S, k = calls so far
    (a bias-corrected exponential moving average over print events).
    """

    def __init__(self, alpha: float):
        self.alpha = alpha
        self.sums: Dict[str, float] = {}
        self.calls = 0

    def update(self, values: Dict[str, float]) -> "OrderedDict[str, float]":
        self.calls += 1
        correction = (1.0 - self.alpha) / (1.0 - self.alpha ** self.calls)
        out = OrderedDict()
        for name, value in values.items():
            self.sums[name] = value + self.alpha * self.sums.get(name, 0.0)
            out[name] = correction * self.sums[name]
        return out


class BaseModel:
    """Holds ``netG``, its optimizer and scheduler, and the checkpoint folder.

    Subclasses set ``loss_names`` and ``visual_names`` and implement set_input / forward /
    compute_losses / optimize_parameters.
    """

    loss_names: List[str] = []
    visual_names: List[str] = []

    def __init__(self, opt, device: torch.device):
        self.opt = opt
        self.device = device
        self.is_train = getattr(opt, "isTrain", False)
        self.save_dir = os.path.join(opt.checkpoints_dir, opt.name)
        self.netG: nn.Module
        self.optimizers: List[torch.optim.Optimizer] = []
        self.schedulers = []
        self.losses: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        self._smoother = LossSmoother(getattr(opt, "avg_loss_alpha", 0.986))

    # -- lifecycle ---------------------------------------------------------------------------
    def setup(self) -> None:
        """Create schedulers (training); load weights when evaluating or when --load_model is set."""
        opt = self.opt
        if self.is_train:
            self.schedulers = [get_scheduler(o, opt.lr_policy, opt.epoch_count, opt.niter, opt.niter_decay,
                                             opt.lr_decay_iters) for o in self.optimizers]
        if not self.is_train or opt.load_model:
            self.load_networks(opt.which_epoch)
        if getattr(opt, "verbose", False):
            print(self.netG)
        n_params = sum(p.numel() for p in self.netG.parameters())
        print(f"[Network G] Total number of parameters : {n_params / 1e6:.3f} M")

    def train(self) -> None:
        self.netG.train()

    def eval(self) -> None:
        self.netG.eval()

    @torch.no_grad()
    def test(self, compute_losses: bool = True) -> None:
        """Forward without gradients (and the logged metrics unless compute_losses is False)."""
        self.forward()
        if compute_losses:
            self.compute_losses()

    # -- checkpoints -------------------------------------------------------------------------
    def checkpoint_path(self, which_epoch) -> str:
        return os.path.join(self.save_dir, f"{which_epoch}_net_G.pth")

    def save_networks(self, which_epoch) -> str:
        path = self.checkpoint_path(which_epoch)
        save_network(self.netG, path)
        return path

    def load_networks(self, which_epoch) -> None:
        path = self.checkpoint_path(which_epoch)
        print(f"loading the model from {path}")
        load_network(self.netG, path)

    # -- schedule and reporting ---------------------------------------------------------------
    def update_learning_rate(self, metric: float = None) -> float:
        """Step every scheduler once (end of epoch); 'plateau' needs the epoch's mean loss."""
        for scheduler in self.schedulers:
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(metric)
            else:
                scheduler.step()
        lr = self.optimizers[0].param_groups[0]["lr"]
        print(f"learning rate = {lr:.7f}")
        return lr

    def get_current_loss_values(self) -> "OrderedDict[str, float]":
        """The metrics of the latest forward, unsmoothed, as floats (names in loss_names order)."""
        return OrderedDict((name, float(self.losses[name])) for name in self.loss_names)

    def get_current_losses(self) -> "OrderedDict[str, float]":
        """The smoothed metrics for printing; call once per print event (it advances the EMA)."""
        return self._smoother.update(self.get_current_loss_values())
