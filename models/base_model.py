"""What every model shares: devices, checkpoints, schedulers and smoothed loss reporting."""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, TypeVar

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from models.networks import get_scheduler
from util.checkpoint import CheckpointError, apply_state_dict, cpu_state_dict, link_checked, load_network, save_network
from util.distributed import DistInfo
from util.perf import FirstCallFallback, maybe_compile
from util.runtime import first_line

T = TypeVar("T")


class LossSmoother:
    """The original's display smoothing of losses (its BaseModel.get_current_losses), with each name counted once.

    Per call: S <- value + alpha * S, reported = (1 - alpha) / (1 - alpha^k) * S, k = calls so far
    (a bias-corrected exponential moving average over print events).
    """

    def __init__(self, alpha: float):
        self.alpha = alpha
        self.sums: Dict[str, float] = {}
        self.calls = 0

    def state_dict(self) -> dict:
        return {"sums": dict(self.sums), "calls": self.calls}

    def load_state_dict(self, state: dict) -> None:
        self.sums, self.calls = dict(state["sums"]), int(state["calls"])

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

    def __init__(self, opt, device: torch.device, dist_info: Optional[DistInfo] = None):
        self.opt = opt
        self.device = device
        self.dist = dist_info or DistInfo()
        self.is_train = opt.isTrain
        self.amp = opt.amp
        self.channels_last = opt.channels_last
        self.scaler: Optional[torch.amp.GradScaler] = None
        self._eager_netG: Optional[nn.Module] = None
        self._compile_guard = FirstCallFallback(pending=False)
        self.save_dir = os.path.join(opt.checkpoints_dir, opt.name)
        self.netG: nn.Module
        self.optimizers: List[torch.optim.Optimizer] = []
        self.schedulers = []
        self.losses: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        self._smoother = LossSmoother(opt.avg_loss_alpha)

    # -- lifecycle ---------------------------------------------------------------------------
    def setup(self) -> None:
        """Create schedulers (training); load weights when evaluating or when --load_model is set."""
        opt = self.opt
        if self.is_train:
            self.schedulers = [get_scheduler(o, opt.lr_policy, opt.epoch_count, opt.niter, opt.niter_decay,
                                             opt.lr_decay_iters) for o in self.optimizers]
        if not self.is_train or opt.load_model:
            self.load_networks(opt.which_epoch)
        if opt.verbose:
            print(self.netG)
        n_params = sum(p.numel() for p in self.netG.parameters())
        print(f"[Network G] Total number of parameters : {n_params / 1e6:.3f} M")

    def wrap(self) -> None:
        """Once the weights are in place: DistributedDataParallel when training under torchrun,
        then torch.compile under --compile. ``netG`` becomes the wrapper; its parameters are the
        bare network's, which checkpoints always save (util.checkpoint.unwrap)."""
        net = self.netG
        if self.is_train and self.dist.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            net = DistributedDataParallel(net, device_ids=device_ids)
        self._eager_netG = net
        self.netG = maybe_compile(net, self.device, self.opt.compile)
        self._compile_guard = FirstCallFallback(pending=self.netG is not net)

    def call_guarded(self, fn: Callable[[], T]) -> T:
        """``fn()``; if it is the first call of a compiled generator and compiling fails, warn in
        one line and redo it in eager mode (util.perf.FirstCallFallback)."""
        return self._compile_guard(fn, self._use_eager)

    def _use_eager(self) -> None:
        self.netG = self._eager_netG
        for optimizer in self.optimizers:  # a failed backward may have left partial gradients
            optimizer.zero_grad(set_to_none=True)

    def train(self) -> None:
        self.netG.train()

    def eval(self) -> None:
        self.netG.eval()

    @torch.no_grad()
    def test(self, compute_losses: bool = True) -> None:
        """Forward without gradients (and the logged metrics unless compute_losses is False)."""
        def run() -> None:
            self.forward()
            if compute_losses:
                self.compute_losses()

        self.call_guarded(run)

    # -- checkpoints -------------------------------------------------------------------------
    def checkpoint_path(self, which_epoch) -> str:
        return os.path.join(self.save_dir, f"{which_epoch}_net_G.pth")

    def save_networks(self, which_epoch, same_as: Optional[str] = None) -> str:
        """Save the weights as <which_epoch>_net_G.pth. same_as: a weight file just written from
        these same weights (e.g. "latest"), to hard-link instead of serialising them again."""
        path = self.checkpoint_path(which_epoch)
        if same_as is not None:
            link_checked(self.checkpoint_path(same_as), path)
        else:
            save_network(self.netG, path)
        return path

    def load_networks(self, which_epoch) -> None:
        path = self.checkpoint_path(which_epoch)
        print(f"loading the model from {path}")
        load_network(self.netG, path)

    def training_state(self) -> dict:
        """What a resume point needs from the model: weights (CPU, bare key names), optimizers,
        schedulers, GradScaler and the loss smoothing."""
        return {
            "net": cpu_state_dict(self.netG),
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "smoother": self._smoother.state_dict(),
        }

    def load_training_state(self, state: dict, source: str) -> None:
        """Undo :meth:`training_state` (before :meth:`wrap`); ``source`` names the file in errors."""
        apply_state_dict(self.netG, state["net"], source)
        if len(state["optimizers"]) != len(self.optimizers):
            raise CheckpointError(f"{source}: {len(state['optimizers'])} optimizer state(s), this model has "
                                  f"{len(self.optimizers)}")
        try:
            for optimizer, saved in zip(self.optimizers, state["optimizers"]):
                optimizer.load_state_dict(saved)
            for scheduler, saved in zip(self.schedulers, state["schedulers"]):
                scheduler.load_state_dict(saved)
        except (ValueError, KeyError) as e:
            raise CheckpointError(f"{source}: optimizer or scheduler state does not fit ({first_line(e)})") from None
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self._smoother.load_state_dict(state["smoother"])

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

    def get_current_losses(self, values: Optional[Dict[str, float]] = None) -> "OrderedDict[str, float]":
        """The smoothed metrics for printing; call once per print event (it advances the EMA).

        values: the raw metrics to smooth (default: this process's latest, get_current_loss_values();
        train.py passes their mean over the processes of a torchrun)."""
        return self._smoother.update(self.get_current_loss_values() if values is None else values)
