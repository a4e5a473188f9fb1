"""The linear probes' model: a frozen SIGGRAPH17 trunk, the pooling of its block outputs, the heads.

* :class:`FrozenTrunk` (blocks model1..model5, eval mode, no gradients, no hooks) and
  :class:`TrunkRunner` (it under --amp, --channels_last, --compile); :func:`backbone_inputs`.
* Pooling to ~9k dimensions per layer: :func:`pool_fork` (the fork's) and :func:`pool_corrected`.
* Heads: :func:`fork_head` (Linear + Softmax) and :class:`LinearProbe` (standardise, then Linear).

Layer names are conv1..conv5 (blocks model1..model5): conv1_2, conv2_2, conv3_3, conv4_3, conv5_3.
The engine that trains the heads is evaluation/probes.py.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.networks import subsample
from util.color import AB_THRESH
from util.hints import get_colorization_data
from util.perf import FirstCallFallback, amp_dtype, call_with_flags, maybe_compile

#: Probe layers in network order, and the generator block each one reads.
LAYERS: Tuple[str, ...] = ("conv1", "conv2", "conv3", "conv4", "conv5")
BLOCKS: Dict[str, str] = {f"conv{k}": f"model{k}" for k in range(1, 6)}
CHANNELS: Dict[str, int] = {"conv1": 64, "conv2": 128, "conv3": 256, "conv4": 512, "conv5": 512}
#: Spatial stride of each block's output relative to the input image.
STRIDES: Dict[str, int] = {"conv1": 1, "conv2": 2, "conv3": 4, "conv4": 8, "conv5": 8}

#: Target grid (h, w) of both protocols: ~9k dimensions per layer as in Zhang et al. / Goyal et al.
#: conv1 64x12x12 = 9216, conv2 128x9x8 = 9216, conv3 256x6x6 = 9216, conv4/5 512x4x4 = 8192.
GRIDS: Dict[str, Tuple[int, int]] = {"conv1": (12, 12), "conv2": (9, 8), "conv3": (6, 6), "conv4": (4, 4),
                                     "conv5": (4, 4)}
#: The fork's average-pooling kernel (= stride) per layer, applied before upsampling to GRIDS.
FORK_POOL_KERNEL: Dict[str, int] = {"conv1": 32, "conv2": 16, "conv3": 16, "conv4": 8, "conv5": 8}


def feature_dim(layer: str) -> int:
    """Flattened feature size of ``layer`` (the same under both protocols)."""
    h, w = GRIDS[layer]
    return CHANNELS[layer] * h * w


def min_fork_size() -> int:
    """Smallest crop for which every fork pooling window fits inside its activation (64 px)."""
    return max(FORK_POOL_KERNEL[layer] * STRIDES[layer] for layer in LAYERS)


# ----------------------------------------------------------------------------------------------
# Backbone
# ----------------------------------------------------------------------------------------------

class FrozenTrunk(nn.Module):
    """Blocks model1..model<k> of a generator, frozen and in eval mode (BN running statistics).

    Args:
        net: a SIGGRAPHGenerator with its weights loaded (unwrapped).
        layers: the probe layers wanted; blocks after the deepest one are not kept.

    forward(A, hint_B, mask_B) takes the generator's inputs (N x 1, N x 2, N x 1 x H x W; any H, W
    >= 8) and returns {layer: block output}, e.g. conv1 N x 64 x H x W ... conv5 N x 512 x H/8 x W/8.
    It is the generator's forward truncated after the deepest requested block, with the same 2x
    subsampling, so the block outputs (after each block's BatchNorm) are exactly those of the full
    forward. It uses no hooks, so torch.compile traces it as one plain graph.
    """

    def __init__(self, net: nn.Module, layers: Sequence[str]):
        super().__init__()
        unknown = [layer for layer in layers if layer not in BLOCKS]
        if unknown or not layers:
            raise ValueError(f"layers must be a non-empty subset of {LAYERS}, got {list(layers)}")
        self.layers = [layer for layer in LAYERS if layer in layers]
        depth = LAYERS.index(self.layers[-1]) + 1
        self.blocks = nn.ModuleList([getattr(net, f"model{k}") for k in range(1, depth + 1)])
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FrozenTrunk":
        return super().train(False)  # always eval: the probes never update BN statistics

    def forward(self, A: Tensor, hint_B: Tensor, mask_B: Tensor) -> Dict[str, Tensor]:
        x = torch.cat((A, hint_B, mask_B), dim=1)
        outputs = {}
        for k, block in enumerate(self.blocks, start=1):
            if k in (2, 3, 4):  # model2..model4 read the subsampled previous output; model5 does not
                x = subsample(x)
            x = block(x)
            if f"conv{k}" in self.layers:
                outputs[f"conv{k}"] = x
        return outputs


class TrunkRunner:
    """A FrozenTrunk run with the speed switches of util/perf.py (all off: the plain fp32 trunk).

    amp: autocast to util.perf.amp_dtype(device) (bfloat16 on CPUs and Ampere+ GPUs, else float16).
    channels_last: NHWC weights and inputs. compile: torch.compile of the trunk; where it is
    unsupported, or its first call raises, the runner warns in one line and stays eager.

    Called like the trunk, (A, hint_B, mask_B) -> {layer: N x C x h x w}; the outputs are float32
    whatever the compute precision, so pooling and the heads compute in float32.
    ``layers`` and ``precision`` (what the features were computed in, part of the cache key) are
    attributes. Not an nn.Module: it holds the trunk (and its compiled twin), it adds no weights.
    """

    def __init__(self, trunk: FrozenTrunk, device: torch.device, amp: bool = False, channels_last: bool = False,
                 compile: bool = False):
        self.trunk = trunk.to(memory_format=torch.channels_last) if channels_last else trunk
        self.layers = trunk.layers
        self.device, self.amp, self.channels_last = device, amp, channels_last
        self.precision = f"autocast_{str(amp_dtype(device)).replace('torch.', '')}" if amp else "float32"
        self.net = maybe_compile(self.trunk, device, compile)
        self._compile_guard = FirstCallFallback(pending=self.net is not self.trunk)

    @torch.no_grad()
    def __call__(self, A: Tensor, hint_B: Tensor, mask_B: Tensor) -> Dict[str, Tensor]:
        outputs = self._compile_guard(lambda: call_with_flags(self.net, (A, hint_B, mask_B), self.device, self.amp,
                                                              self.channels_last), self._use_eager)
        return {layer: x.float() for layer, x in outputs.items()}

    def _use_eager(self) -> None:
        self.net = self.trunk


def backbone_inputs(images: Tensor, mask_cent: float, ab_thresh: float = AB_THRESH):
    """uint8 RGB N x 3 x H x W (on the target device) -> the generator's inputs without hints, as the
    fork's train_linear_classifiers.py feeds them.

    Returns (A, hint_B, mask_B, keep): A = (L - 50) / 100, hint_B = 0, mask_B = -mask_cent, for the
    images that pass the grayscale filter (``keep``, bool of length N), or None when none pass.
    """
    batch = get_colorization_data(images.float().div_(255.0), ab_thresh=ab_thresh, p=1.0, mask_cent=mask_cent)
    if batch is None:
        return None
    return batch.A, batch.hint_B, batch.mask_B, batch.keep


# ----------------------------------------------------------------------------------------------
# Pooling
# ----------------------------------------------------------------------------------------------

def pool_fork(activation: Tensor, layer: str) -> Tensor:
    """The fork's features (its reshape_activation_outputs): avg_pool2d(kernel = stride = k), then bilinear
    interpolation (align_corners=True) to the fixed grid, flattened in C x h x w order.

    activation: N x C x H x W block output. Returns N x feature_dim(layer). At a 176 px crop the
    pooled grids are 5x5, 5x5, 2x2, 2x2, 2x2 and are *upsampled* to GRIDS.
    """
    k = FORK_POOL_KERNEL[layer]
    if min(activation.shape[-2:]) < k:
        raise ValueError(f"{layer}: activation {tuple(activation.shape[-2:])} is smaller than the fork's "
                         f"pooling kernel {k} (crops must be at least {min_fork_size()} px)")
    pooled = F.avg_pool2d(activation, kernel_size=k, stride=k)
    return F.interpolate(pooled, size=GRIDS[layer], mode="bilinear", align_corners=True).flatten(1)


def pool_corrected(activation: Tensor, layer: str) -> Tensor:
    """Corrected features: adaptive average pooling of the whole activation straight to the grid
    (every pixel counts, no interpolation), flattened in C x h x w order. N x feature_dim(layer)."""
    return F.adaptive_avg_pool2d(activation, GRIDS[layer]).flatten(1)


POOLING: Dict[str, Callable[[Tensor, str], Tensor]] = {"fork": pool_fork, "corrected": pool_corrected}


@torch.no_grad()
def batch_features(trunk: "FrozenTrunk | TrunkRunner", images: Tensor, mask_cent: float,
                   pool: Callable[[Tensor, str], Tensor]):
    """Pooled features of one uint8 batch (already on the device).

    Returns ({layer: N' x D float32}, keep) with N' = keep.sum() images that passed the grayscale
    filter, or (None, keep) when none did.
    """
    inputs = backbone_inputs(images, mask_cent)
    if inputs is None:
        return None, torch.zeros(images.shape[0], dtype=torch.bool, device=images.device)
    A, hint_B, mask_B, keep = inputs
    outputs = trunk(A, hint_B, mask_B)
    return {layer: pool(x, layer) for layer, x in outputs.items()}, keep


# ----------------------------------------------------------------------------------------------
# Heads
# ----------------------------------------------------------------------------------------------

def fork_head(dim: int, num_classes: int) -> nn.Sequential:
    """The fork's probe: Linear(dim, num_classes) then Softmax (state_dict keys 0.weight, 0.bias).

    Its output is a probability vector, which the fork then feeds to CrossEntropyLoss (a double
    softmax), as in the fork's train_linear_classifiers.py.
    """
    return nn.Sequential(nn.Linear(dim, num_classes), nn.Softmax(dim=-1))


class LinearProbe(nn.Module):
    """Corrected probe: (x - mean) / std with fixed training-set statistics, then Linear -> logits.

    The standardisation is a BatchNorm1d without affine whose statistics are frozen at the training
    features' (Goyal et al. put a BN before the linear layer). It makes one learning rate fit every
    layer and model, whatever the scale of the activations. State: ``mean``, ``std`` (D),
    ``linear.weight`` (C x D), ``linear.bias`` (C).
    """

    def __init__(self, dim: int, num_classes: int, mean: Optional[Tensor] = None, std: Optional[Tensor] = None):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim) if mean is None else mean.detach().float().clone())
        self.register_buffer("std", torch.ones(dim) if std is None else std.detach().float().clone())
        self.linear = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear((x.float() - self.mean) / self.std)


def feature_statistics(features: Tensor, chunk: int = 4096) -> Tuple[Tensor, Tensor]:
    """Per-dimension mean and standard deviation of N x D features (float64 accumulation, chunked).

    Dimensions that never vary (dead units) get std 1 so that they stay 0 after standardisation.
    """
    n = features.shape[0]
    total = torch.zeros(features.shape[1], dtype=torch.float64, device=features.device)
    total_sq = torch.zeros_like(total)
    for start in range(0, n, chunk):
        block = features[start:start + chunk].double()
        total += block.sum(0)
        total_sq += block.square().sum(0)
    mean = total / max(n, 1)
    var = (total_sq / max(n, 1) - mean.square()).clamp_min(0)
    std = var.sqrt()
    scale = float(std.max()) if std.numel() else 0.0
    std = torch.where(std > 1e-6 * scale, std, torch.ones_like(std)) if scale > 0 else torch.ones_like(std)
    return mean.float(), std.float()
