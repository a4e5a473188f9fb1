"""AdaIN style transfer (Huang & Belongie, ICCV 2017) with the layout of the public weight files.

The networks are built so that the two files of naoto0804/pytorch-AdaIN that bethgelab/stylize-datasets
and rgeirhos/Stylized-ImageNet use, ``vgg_normalised.pth`` (34 keys) and ``decoder.pth`` (18 keys),
load strictly. Conventions of both: every 3x3 conv has padding 0 and follows a 1-pixel
ReflectionPad2d; ReLUs are not in-place; max pools are 2x2, stride 2, ``ceil_mode=True``. The
engine that uses them: dataset_builders/stylize.py (docs/datasets.md).
"""
from __future__ import annotations

import os
from typing import List, Sequence, Tuple

import torch
from torch import nn

from util.checkpoint import load_network

#: (in, out) channels of the encoder's convolutions, in order; 0 marks a max pool. The first entry
#: is the 1x1 preprocessing conv (no padding before it); every other conv is 3x3 after a reflection pad.
_VGG_LAYOUT: Sequence = ((3, 3), (3, 64), (64, 64), 0, (64, 128), (128, 128), 0,
                         (128, 256), (256, 256), (256, 256), (256, 256), 0,
                         (256, 512), (512, 512), (512, 512), (512, 512), 0,
                         (512, 512), (512, 512), (512, 512), (512, 512))
#: The decoder: (in, out) channels of each 3x3 conv, "up" for a nearest x2 upsampling.
_DECODER_LAYOUT: Sequence = ((512, 256), "up", (256, 256), (256, 256), (256, 256), (256, 128), "up",
                             (128, 128), (128, 64), "up", (64, 64), (64, 3))

#: Children of the full encoder: the 1x1 conv, 16 x (pad, conv, ReLU) and 4 pools.
VGG_MODULES = 53
#: Encoder children [0, RELU4_1_END) end at relu4_1 (index 30), the layer AdaIN works on.
RELU4_1_END = 31
#: Smallest image side (px) the networks accept: at 8 px or less the relu4_1 map is 1 px wide and
#: the decoder's first reflection pad fails.
MIN_SIDE = 9
#: Added to the (unbiased) variance before the square root in AdaIN's statistics.
EPS = 1e-5


def build_vgg_normalised() -> nn.Sequential:
    """The full 53-child encoder of ``vgg_normalised.pth`` (untrained; load the weights into it): a
    1x1 "preprocessing" conv, then VGG-19's convolutions up to relu5_4, so that the whole file loads
    with ``strict=True``; stylization runs only its first RELU4_1_END children. It takes RGB in
    [0, 1] with NO mean/std normalisation: the 1x1 conv, part of the weights, does that."""
    layers: List[nn.Module] = []
    for i, spec in enumerate(_VGG_LAYOUT):
        if spec == 0:
            layers.append(nn.MaxPool2d(2, 2, 0, ceil_mode=True))
        elif i == 0:
            layers.append(nn.Conv2d(*spec, kernel_size=1))
        else:
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(*spec, kernel_size=3), nn.ReLU()]
    return nn.Sequential(*layers)


def build_decoder() -> nn.Sequential:
    """The 29-child decoder of ``decoder.pth`` (untrained), which mirrors the encoder up to relu4_1
    with nearest x2 upsampling in place of the pools; no activation after the last conv, so its
    output is unbounded."""
    layers: List[nn.Module] = []
    for spec in _DECODER_LAYOUT:
        if spec == "up":
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        else:
            layers += [nn.ReflectionPad2d(1), nn.Conv2d(*spec, kernel_size=3), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def mean_std(features: torch.Tensor, eps: float = EPS) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-(sample, channel) mean and sqrt(unbiased variance + eps) of N x C x H x W features.

    Returns two N x C x 1 x 1 tensors. Each statistic depends on its own sample only, which is
    what makes batching several images exact. Needs H * W >= 2 (unbiased variance).
    """
    n, c = features.shape[:2]
    flat = features.reshape(n, c, -1)
    var = flat.var(dim=2, unbiased=True) + eps
    return flat.mean(dim=2).reshape(n, c, 1, 1), var.sqrt().reshape(n, c, 1, 1)


def adain(content_features: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor) -> torch.Tensor:
    """Adaptive instance normalisation: give each channel of the content features (N x C x H x W)
    the style's mean and standard deviation (N x C x 1 x 1, from :func:`mean_std`)."""
    content_mean, content_std = mean_std(content_features)
    return (content_features - content_mean) / content_std * style_std + style_mean


class AdaIN(nn.Module):
    """The encoder prefix (up to relu4_1) and the decoder, with the stylization steps as methods.

    Construct with :meth:`from_files` to load the pretrained files, or directly from the two full
    Sequentials (tests, random weights). Inputs are RGB in [0, 1], N x 3 x H x W, float32.
    """

    def __init__(self, vgg: nn.Sequential, decoder: nn.Sequential):
        super().__init__()
        if len(vgg) != VGG_MODULES:
            raise ValueError(f"expected the full {VGG_MODULES}-module encoder, got {len(vgg)} modules")
        self.encoder = nn.Sequential(*list(vgg.children())[:RELU4_1_END])
        self.decoder = decoder
        self.eval()
        self.requires_grad_(False)

    @classmethod
    def from_files(cls, vgg_path: str, decoder_path: str) -> "AdaIN":
        """Load ``vgg_normalised.pth`` and ``decoder.pth`` strictly and safely (weights_only,
        map_location cpu); raises util.checkpoint.CheckpointError (one line) on any problem."""
        vgg, decoder = build_vgg_normalised(), build_decoder()
        load_network(vgg, vgg_path)
        load_network(decoder, decoder_path)
        return cls(vgg, decoder)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """relu4_1 features (N x 512 x ceil(H/8) x ceil(W/8)) of N x 3 x H x W images in [0, 1]."""
        return self.encoder(images)

    def style_statistics(self, style: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The only thing AdaIN needs from a style image: per-channel mean and std of its relu4_1
        features, each N x 512 x 1 x 1."""
        return mean_std(self.encode(style))

    def decode(self, content_features: torch.Tensor, style_mean: torch.Tensor, style_std: torch.Tensor,
               alpha: float = 1.0) -> torch.Tensor:
        """Stylized images, N x 3 x 8*ceil(H/8) x 8*ceil(W/8), unbounded (clamp when saving).

        ``alpha`` blends in feature space: t = alpha * AdaIN(fc) + (1 - alpha) * fc, so alpha 0
        decodes the content features themselves (a reconstruction, not the input image).
        """
        t = adain(content_features, style_mean, style_std)
        return self.decoder(alpha * t + (1 - alpha) * content_features)

    def forward(self, content: torch.Tensor, style: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        """Stylize content (N x 3 x H x W) with style (N x 3 x H' x W'), pair by pair."""
        return self.decode(self.encode(content), *self.style_statistics(style), alpha=alpha)


def to_uint8_rounded(images: torch.Tensor) -> torch.Tensor:
    """Decoder output -> uint8, as torchvision.utils.save_image: clamp(x * 255 + 0.5, 0, 255),
    truncated (round half up). N x 3 x H x W float -> N x 3 x H x W uint8 on the same device."""
    return images.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)


def resolve_weight_path(path: str) -> str:
    """``path``, or the "vgg_normalized.pth" spelling beside it when ``path`` is a missing
    "vgg_normalised.pth" (naoto0804's README uses both spellings)."""
    folder, name = os.path.split(path)
    if not os.path.exists(path) and name == "vgg_normalised.pth":
        other = os.path.join(folder, "vgg_normalized.pth")
        if os.path.exists(other):
            return other
    return path
