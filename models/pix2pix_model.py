"""The colorization model: SIGGRAPH17 generator, its losses, metrics and visuals.

The name follows the original (its model class lived in ``models/pix2pix_model.py``). The trained
loss is ``loss_G = G_CE * lambda_A + G_L1_reg + lambda_sat * S_reg``: the original's
Pix2PixModel.compute_losses_G plus the fork's saturation term, each term defined in
docs/training.md.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from models.base_model import BaseModel
from models.networks import define_G
from util.color import AB_NORM, L_CENT, L_NORM, decode_max_ab, decode_mean, encode_ab_ind, hsv_saturation, lab_norm2rgb
from util.distributed import DistInfo, any_flag, convert_sync_batchnorm
from util.hints import ColorizationBatch
from util.perf import call_with_flags, grad_scaler

#: Pixels of one 176 x 176 training crop: the scale of S_reg, so that the study's weight 1e-4 gives a
#: term comparable with G_L1_reg at any training resolution (docs/training.md).
SAT_REF_PIXELS = 176 * 176


def saturation_penalty(L_norm: Tensor, ab_norm_pred: Tensor, l_cent: float = L_CENT, l_norm: float = L_NORM,
                       ab_norm: float = AB_NORM) -> Tensor:
    """S_reg: SAT_REF_PIXELS * mean(1 - HSV saturation of the predicted RGB).

    L_norm: N x 1 x H x W normalised L; ab_norm_pred: N x 2 x H x W normalised predicted ab.
    Computed in float32 (or the inputs' wider dtype); differentiable w.r.t. ab_norm_pred.
    """
    dtype = torch.promote_types(ab_norm_pred.dtype, torch.float32)
    lab = torch.cat((L_norm, ab_norm_pred), dim=1).to(dtype)
    rgb = lab_norm2rgb(lab, l_cent, l_norm, ab_norm)
    return SAT_REF_PIXELS * (1.0 - hsv_saturation(rgb)).mean()


def _l1_map(x: Tensor, y: Tensor) -> Tensor:
    """Per-pixel L1 summed over channels: N x C x H x W -> N x 1 x H x W."""
    return (x - y).abs().sum(dim=1, keepdim=True)


class Pix2PixModel(BaseModel):
    """Colorization with user hints (SIGGRAPH 2017), the original's model API.

    set_input(batch) -> forward() -> compute_losses() / optimize_parameters();
    get_current_losses() for logging, get_current_visuals() for pages.
    """

    # The original's logged metrics (its compute_losses_G) with G_entr once, then our total and S_reg.
    loss_names = ["G_CE", "G_entr", "G_entr_hint", "G_L1_max", "G_L1_mean", "G_L1_reg",
                  "G_fake_real", "G_fake_hint", "G_real_hint", "0", "S_reg", "G"]
    visual_names = ["gray", "real", "fake_max", "fake_mean", "fake_reg", "hint", "real_ab", "fake_ab_max",
                    "fake_ab_mean", "fake_ab_reg", "mask", "hint_ab", "fake_entr"]

    def __init__(self, opt, device: torch.device, dist_info: Optional[DistInfo] = None):
        super().__init__(opt, device, dist_info)
        # Evaluation options hold the training defaults of these (options.test_options): the
        # weights are then loaded, and the forward pass is the same for both values of classification.
        net = define_G(4, opt.norm, opt.init_type, opt.classification, device)
        if opt.sync_bn and self.dist.enabled:
            net = convert_sync_batchnorm(net, device)  # before the optimizer: it makes new modules
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.netG = net
        print(f"initialize network with {opt.init_type}")
        if self.is_train:
            self.optimizer_G = torch.optim.Adam(self.netG.parameters(), lr=opt.lr, betas=(opt.beta1, 0.999))
            self.optimizers = [self.optimizer_G]
            self.scaler = grad_scaler(device, self.amp)
        else:
            self.netG.eval()
        self.lambda_A = opt.lambda_A
        self.lambda_sat = opt.lambda_sat

    # -- colour-space helpers bound to this run's normalisation options -------------------------
    def _ab_kw(self):
        return dict(ab_norm=self.opt.ab_norm, ab_max=self.opt.ab_max, ab_quant=self.opt.ab_quant)

    def _to_rgb(self, L: Tensor, ab: Tensor) -> Tensor:
        return lab_norm2rgb(torch.cat((L, ab), dim=1), self.opt.l_cent, self.opt.l_norm, self.opt.ab_norm)

    def set_input(self, batch: ColorizationBatch) -> None:
        """Take a batch from util.hints.get_colorization_data (tensors already on the device)."""
        self.real_A = batch.A.to(self.device)
        self.real_B = batch.B.to(self.device)
        self.hint_B = batch.hint_B.to(self.device)
        self.mask_B = batch.mask_B.to(self.device)
        self.mask_B_nc = self.mask_B + self.opt.mask_cent  # {0, 1}, for losses and visuals
        self.real_B_enc = encode_ab_ind(self.real_B[:, :, ::4, ::4], **self._ab_kw())

    def run_generator(self, A: Tensor, hint_B: Tensor, mask_B: Tensor) -> tuple[Tensor, Tensor]:
        """netG(A, hint_B, mask_B) with this run's --channels_last and --amp: (class logits
        N x 529 x H/4 x W/4, regression ab N x 2 x H x W), in the autocast dtype under --amp."""
        return call_with_flags(self.netG, (A, hint_B, mask_B), self.device, self.amp, self.channels_last)

    def forward(self) -> None:
        """Run the generator: fake_B_class (N x 529 x H/4 x W/4 logits), fake_B_reg (N x 2 x H x W)."""
        self.fake_B_class, self.fake_B_reg = self.run_generator(self.real_A, self.hint_B, self.mask_B)
        self._derived()

    @torch.no_grad()
    def _derived(self) -> None:
        """The decoded and entropy maps of the original's Pix2PixModel.forward, upsampled x4 (nearest) to full resolution."""
        up = lambda x: F.interpolate(x, scale_factor=4, mode="nearest")  # noqa: E731
        logits = self.fake_B_class.float()
        self.fake_B_dec_max = up(decode_max_ab(logits, **self._ab_kw()))
        self.fake_B_distr = F.softmax(logits, dim=1)
        self.fake_B_dec_mean = up(decode_mean(self.fake_B_distr, **self._ab_kw()))
        entropy = -(self.fake_B_distr * torch.log(self.fake_B_distr + 1e-10)).sum(dim=1, keepdim=True)
        self.fake_B_entr = up(entropy)  # nats, max ln 529

    def compute_losses(self) -> Tensor:
        """All metrics of the original's compute_losses_G (+ S_reg and G) into self.losses; returns the trained loss G."""
        m = self.mask_B_nc
        mask_avg = m.mean() + 1e-6
        real_B = self.real_B
        G_CE = F.cross_entropy(self.fake_B_class.float(), self.real_B_enc[:, 0])
        G_L1_reg = 10 * _l1_map(self.fake_B_reg.float(), real_B).mean()
        loss_G = G_CE * self.lambda_A + G_L1_reg
        # S_reg is always logged; it only builds a graph when it is trained (lambda_sat > 0).
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.lambda_sat != 0):
            S_reg = saturation_penalty(self.real_A, self.fake_B_reg, self.opt.l_cent, self.opt.l_norm,
                                       self.opt.ab_norm)
        if self.lambda_sat:
            loss_G = loss_G + self.lambda_sat * S_reg
        with torch.no_grad():
            fake_reg = self.fake_B_reg.float()
            self.losses = OrderedDict(
                G_CE=G_CE.detach(),
                G_entr=self.fake_B_entr.mean(),
                G_entr_hint=(self.fake_B_entr * m).mean() / mask_avg,
                G_L1_max=10 * _l1_map(self.fake_B_dec_max, real_B).mean(),
                G_L1_mean=10 * _l1_map(self.fake_B_dec_mean, real_B).mean(),
                G_L1_reg=G_L1_reg.detach(),
                G_fake_real=10 * _l1_map(fake_reg * m, real_B * m).mean() / mask_avg,
                G_fake_hint=10 * _l1_map(fake_reg * m, self.hint_B * m).mean() / mask_avg,
                G_real_hint=10 * _l1_map(real_B * m, self.hint_B * m).mean() / mask_avg,
                S_reg=S_reg.detach(),
                G=loss_G.detach(),
            )
            self.losses["0"] = torch.zeros((), device=self.device)
        self.loss_G = loss_G
        return loss_G

    def optimize_parameters(self) -> bool:
        """One Adam step on loss_G = G_CE * lambda_A + G_L1_reg + lambda_sat * S_reg.

        Returns False, leaving the weights, the batch-norm statistics and the optimizer state
        untouched, when the loss or a gradient is not finite (under torchrun: on any process, so that all skip together). With
        a float16 GradScaler an overflowing gradient is the scaler's business (it skips the step
        and lowers the scale) and is not counted; a non-finite loss still is.
        """
        return self.call_guarded(self._step)

    def _step(self) -> bool:
        # A non-finite batch also poisons the batch-norm running statistics during the forward
        # pass: keep them (a few KB) to put back if the step is skipped.
        buffers = [b.detach().clone() for b in self.netG.buffers()]
        self.forward()
        self.optimizer_G.zero_grad(set_to_none=True)
        loss = self.compute_losses()
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer_G)
            finite = torch.isfinite(loss.detach())
        else:
            loss.backward()
            params = [p for p in self.netG.parameters() if p.grad is not None]
            grad_norm = torch.nn.utils.clip_grad_norm_(params, float("inf"))  # the norm only: nothing is clipped
            finite = torch.isfinite(loss.detach()) & torch.isfinite(grad_norm)
        if bool(any_flag(~finite.view(1), self.dist)):
            self.optimizer_G.zero_grad(set_to_none=True)
            with torch.no_grad():
                for buffer, saved in zip(self.netG.buffers(), buffers):
                    buffer.copy_(saved)
            if self.scaler is not None:
                self.scaler.update()  # after unscale_, lowers the scale for the next step
            return False
        if self.scaler is not None:
            self.scaler.step(self.optimizer_G)
            self.scaler.update()
        else:
            self.optimizer_G.step()
        return True

    @torch.no_grad()
    def get_current_visuals(self) -> "OrderedDict[str, Tensor]":
        """The 13 training visuals of the original's get_current_visuals, RGB N x 3 x H x W, >= 0 (clip to [0, 1] to show)."""
        L, zeros_L = self.real_A, torch.zeros_like(self.real_A)
        fake_reg = self.fake_B_reg.float()
        visuals = OrderedDict()
        visuals["gray"] = self._to_rgb(L, torch.zeros_like(self.real_B))
        visuals["real"] = self._to_rgb(L, self.real_B)
        visuals["fake_max"] = self._to_rgb(L, self.fake_B_dec_max)
        visuals["fake_mean"] = self._to_rgb(L, self.fake_B_dec_mean)
        visuals["fake_reg"] = self._to_rgb(L, fake_reg)
        visuals["hint"] = self._to_rgb(L, self.hint_B)
        visuals["real_ab"] = self._to_rgb(zeros_L, self.real_B)
        visuals["fake_ab_max"] = self._to_rgb(zeros_L, self.fake_B_dec_max)
        visuals["fake_ab_mean"] = self._to_rgb(zeros_L, self.fake_B_dec_mean)
        visuals["fake_ab_reg"] = self._to_rgb(zeros_L, fake_reg)
        visuals["mask"] = self.mask_B_nc.expand(-1, 3, -1, -1)
        visuals["hint_ab"] = visuals["mask"] * self._to_rgb(zeros_L, self.hint_B)
        n_classes = self.fake_B_distr.shape[1]
        entr = (3 * self.fake_B_entr / torch.log(torch.tensor(float(n_classes))) - 1).clamp(-1, 1)
        visuals["fake_entr"] = entr.expand(-1, 3, -1, -1)
        return visuals
