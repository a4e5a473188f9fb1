"""The SIGGRAPH 2017 generator, weight initialisation and learning-rate schedulers.

State-dict keys, order and shapes match the original exactly (107 entries with BatchNorm), so the
official ``pytorch.pth``/``caffemodel.pth`` files, the ideepcolor GUI and our checkpoints are
interchangeable.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional

import torch
from torch import Tensor, nn
from torch.nn import init
from torch.optim import lr_scheduler


def get_norm_layer(norm_type: str = "batch") -> Callable[[int], nn.Module]:
    """'batch': BatchNorm2d(affine=True), the original's; 'instance': InstanceNorm2d(affine=False).

    Instance norm has no parameters or running statistics, so its state_dict (62 keys) is not
    compatible with the official weights.
    """
    if norm_type == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True)
    if norm_type == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    raise ValueError(f"norm layer [{norm_type}] is not supported (use 'batch' or 'instance')")


def _conv3(cin: int, cout: int, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=dilation, dilation=dilation, bias=True)


def _conv_block(cin: int, cout: int, n_convs: int, norm_layer, dilation: int = 1) -> nn.Sequential:
    """n x (conv3, ReLU) then one norm layer: indices 0, 2, 4 are convs, the norm is last."""
    layers: list[nn.Module] = []
    for i in range(n_convs):
        layers += [_conv3(cin if i == 0 else cout, cout, dilation), nn.ReLU(inplace=True)]
    layers.append(norm_layer(cout))
    return nn.Sequential(*layers)


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, kernel_size=4, stride=2, padding=1, bias=True))


def subsample(x: Tensor) -> Tensor:
    """The original's 2x downsampling: the top-left pixel of every 2 x 2 cell."""
    return x[:, :, ::2, ::2]


class SIGGRAPHGenerator(nn.Module):
    """User-guided colorization network of Zhang et al., SIGGRAPH 2017.

    Args:
        input_nc: input channels of the first conv, 4 in practice (L + 2 hint ab + mask).
        output_nc: kept for the original's signature; the outputs are always 529 logits and 2 ab.
        norm_layer: norm constructor (BatchNorm2d by default), see :func:`get_norm_layer`.
        use_tanh: tanh on the regression output (the original always uses it).
        classification: where gradients are cut. True (phases 1-2): the class head trains the
            trunk and the regression decoder sees detached features. False (phases 3-4): the
            regression loss trains everything except the class head, which sees detached features.

    forward(input_A, input_B, mask_B), all N x C x H x W with H, W multiples of 8:
        input_A: (L - 50) / 100, N x 1; input_B: hint ab / 110 (0 without hint), N x 2;
        mask_B: hint mask minus mask_cent, N x 1.
    Returns (out_class, out_reg): N x 529 x H/4 x W/4 logits and N x 2 x H x W normalised ab.
    """

    def __init__(self, input_nc: int = 4, output_nc: int = 2, norm_layer=nn.BatchNorm2d,
                 use_tanh: bool = True, classification: bool = True):
        super().__init__()
        self.input_nc = input_nc
        self.output_nc = output_nc
        self.classification = classification

        # Registration order fixes the state_dict order (that of the official weights): keep it.
        self.model1 = _conv_block(input_nc, 64, 2, norm_layer)
        self.model2 = _conv_block(64, 128, 2, norm_layer)
        self.model3 = _conv_block(128, 256, 3, norm_layer)
        self.model4 = _conv_block(256, 512, 3, norm_layer)
        self.model5 = _conv_block(512, 512, 3, norm_layer, dilation=2)
        self.model6 = _conv_block(512, 512, 3, norm_layer, dilation=2)
        self.model7 = _conv_block(512, 512, 3, norm_layer)
        self.model8up = _up(512, 256)
        self.model8 = nn.Sequential(nn.ReLU(inplace=True), _conv3(256, 256), nn.ReLU(inplace=True),
                                    _conv3(256, 256), nn.ReLU(inplace=True), norm_layer(256))
        self.model9up = _up(256, 128)
        self.model9 = nn.Sequential(nn.ReLU(inplace=True), _conv3(128, 128), nn.ReLU(inplace=True), norm_layer(128))
        self.model10up = _up(128, 128)
        self.model10 = nn.Sequential(nn.ReLU(inplace=True), _conv3(128, 128), nn.LeakyReLU(negative_slope=0.2))
        self.model3short8 = nn.Sequential(_conv3(256, 256))
        self.model2short9 = nn.Sequential(_conv3(128, 128))
        self.model1short10 = nn.Sequential(_conv3(64, 128))
        self.model_class = nn.Sequential(nn.Conv2d(256, 529, kernel_size=1, stride=1, padding=0, bias=True))
        out = [nn.Conv2d(128, 2, kernel_size=1, stride=1, padding=0, bias=True)]
        if use_tanh:
            out.append(nn.Tanh())
        self.model_out = nn.Sequential(*out)

    def forward(self, input_A: Tensor, input_B: Tensor, mask_B: Tensor) -> tuple[Tensor, Tensor]:
        conv1_2 = self.model1(torch.cat((input_A, input_B, mask_B), dim=1))
        conv2_2 = self.model2(subsample(conv1_2))
        conv3_3 = self.model3(subsample(conv2_2))
        conv4_3 = self.model4(subsample(conv3_3))
        conv7_3 = self.model7(self.model6(self.model5(conv4_3)))
        conv8_3 = self.model8(self.model8up(conv7_3) + self.model3short8(conv3_3))

        if self.classification:
            out_class = self.model_class(conv8_3)
            conv8_3, conv2_2, conv1_2 = conv8_3.detach(), conv2_2.detach(), conv1_2.detach()
        else:
            out_class = self.model_class(conv8_3.detach())

        conv9_3 = self.model9(self.model9up(conv8_3) + self.model2short9(conv2_2))
        conv10_2 = self.model10(self.model10up(conv9_3) + self.model1short10(conv1_2))
        return out_class, self.model_out(conv10_2)


def init_weights(net: nn.Module, init_type: str = "normal", gain: float = 0.02) -> None:
    """Initialise conv/deconv weights (biases to 0) and BatchNorm (weight N(1, gain), bias 0).

    init_type: 'normal' N(0, gain) (the original's default), 'xavier' (xavier_normal, gain),
    'kaiming' (kaiming_normal, fan_in, a=0) or 'orthogonal' (gain).
    """
    if init_type not in ("normal", "xavier", "kaiming", "orthogonal"):
        raise ValueError(f"initialization method [{init_type}] is not implemented")

    def init_func(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            if init_type == "normal":
                init.normal_(m.weight, 0.0, gain)
            elif init_type == "xavier":
                init.xavier_normal_(m.weight, gain=gain)
            elif init_type == "kaiming":
                init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            else:
                init.orthogonal_(m.weight, gain=gain)
            if m.bias is not None:
                init.constant_(m.bias, 0.0)
        elif isinstance(m, nn.BatchNorm2d):
            init.normal_(m.weight, 1.0, gain)
            init.constant_(m.bias, 0.0)

    net.apply(init_func)


def define_G(input_nc: int = 4, norm: str = "batch", init_type: str = "normal", classification: bool = True,
             device: Optional[torch.device] = None) -> SIGGRAPHGenerator:
    """Build, initialise and place a SIGGRAPHGenerator (no DataParallel wrapper, ever)."""
    net = SIGGRAPHGenerator(input_nc, 2, norm_layer=get_norm_layer(norm), use_tanh=True, classification=classification)
    init_weights(net, init_type)
    return net.to(device) if device is not None else net


def lambda_rule_factor(epoch: int, epoch_count: int, niter: int, niter_decay: int) -> float:
    """LR factor of the 'lambda' policy after ``epoch`` scheduler steps (the original's networks.get_scheduler).

    1 - max(0, epoch + 1 + epoch_count - niter) / (niter_decay + 1): constant for niter epochs,
    then a linear decay over niter_decay epochs (never reaching 0 while training).
    """
    return 1.0 - max(0, epoch + 1 + epoch_count - niter) / float(niter_decay + 1)


def get_scheduler(optimizer: torch.optim.Optimizer, lr_policy: str, epoch_count: int = 0, niter: int = 100,
                  niter_decay: int = 100, lr_decay_iters: int = 50):
    """LR scheduler stepped once per epoch: 'lambda', 'step' (x0.1 every lr_decay_iters epochs)
    or 'plateau' (x0.2 after 5 epochs without a 1% relative improvement of the epoch's mean loss)."""
    if lr_policy == "lambda":
        return lr_scheduler.LambdaLR(
            optimizer, lr_lambda=functools.partial(lambda_rule_factor, epoch_count=epoch_count, niter=niter,
                                                   niter_decay=niter_decay))
    if lr_policy == "step":
        return lr_scheduler.StepLR(optimizer, step_size=lr_decay_iters, gamma=0.1)
    if lr_policy == "plateau":
        return lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.2, threshold=0.01, patience=5)
    raise ValueError(f"learning rate policy [{lr_policy}] is not implemented")
