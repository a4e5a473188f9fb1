"""Independent reimplementations the tests check the product code against (not a test module)."""
from typing import Dict, Sequence

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
