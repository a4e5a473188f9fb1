"""Independent reimplementations the tests check the product code against (not a test module)."""
from typing import Dict, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from models.probes import BLOCKS, LAYERS


def block_outputs_with_hooks(net: nn.Module, A: Tensor, hint_B: Tensor, mask_B: Tensor,
                             layers: Sequence[str] = LAYERS) -> Dict[str, Tensor]:
    """The probes' block outputs the fork's way: forward hooks on model1..model5 during the full
    forward of the generator ``net`` (the reference for models.probes.FrozenTrunk).

    H and W must be multiples of 8 (the decoder's skip additions). Returns {layer: N x C x h x w}.
    """
    captured: Dict[str, Tensor] = {}
    handles = [getattr(net, BLOCKS[layer]).register_forward_hook(
        lambda _module, _inputs, output, layer=layer: captured.__setitem__(layer, output.detach().clone()))
        for layer in layers]
    try:
        with torch.no_grad():
            net(A, hint_B, mask_B)
    finally:
        for handle in handles:
            handle.remove()
    return captured


def gray_baseline_psnr(rgb):
    """The no-colour baseline's PSNR (dB) of one H x W x 3 uint8 photo, computed with skimage in
    float64 (the reference for util.metrics/evaluation's torch float32 path): the ground truth is
    the photo's Lab round trip and the baseline its L with ab = 0, both back to sRGB, clipped to
    [0, 1] and TRUNCATED to uint8 (the result pages' rounding, util.image.to_uint8)."""
    from skimage.color import lab2rgb, rgb2lab

    def to_uint8(x):
        return (np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)

    lab = rgb2lab(np.asarray(rgb, dtype=np.float64) / 255.0)
    real = to_uint8(lab2rgb(lab)).astype(np.float64)
    lab[..., 1:] = 0.0
    gray = to_uint8(lab2rgb(lab)).astype(np.float64)
    return float(20.0 * np.log10(255.0 / np.sqrt(np.mean((real - gray) ** 2))))
