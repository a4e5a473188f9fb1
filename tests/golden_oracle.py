"""The original colorization-pytorch's outputs for a fixed batch (tests/data/golden_siggraph.npz)
and the deterministic weights they were computed with, rebuilt from the state_dict key names
(zlib.crc32 seeds). Shared by tests/test_golden.py (CPU assertions) and benchmarks/cuda_parity.py
(the same figures on another device)."""
import os
import zlib

import torch

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "golden_siggraph.npz")
LOSS_NAMES = ["G_CE", "G_entr", "G_entr_hint", "G_L1_max", "G_L1_mean", "G_L1_reg", "G_fake_real", "G_fake_hint",
              "G_real_hint", "G"]


def rebuild_weight(key, shape):
    """The golden weights: per key, a generator seeded with crc32(key), drawn in float64 then
    cast to float32 (num_batches_tracked: int64 zeros)."""
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    f64 = dict(generator=g, dtype=torch.float64)
    if key.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.int64)
    if key.endswith("running_var"):
        v = 0.5 + torch.rand(shape, **f64)
    elif key.endswith("running_mean"):
        v = 0.1 * torch.randn(shape, **f64)
    elif len(shape) == 4:
        if "up." in key:  # ConvTranspose2d (model8up/9up/10up), weight (in, out, 4, 4)
            fan_in = shape[0] * shape[2] * shape[3] / 4
        else:
            fan_in = shape[1] * shape[2] * shape[3]
        v = (2.0 / fan_in) ** 0.5 * torch.randn(shape, **f64)
    elif key.endswith(".weight") and len(shape) == 1:  # BatchNorm gamma
        v = 1 + 0.1 * torch.randn(shape, **f64)
    else:  # biases, BatchNorm beta
        v = 0.01 * torch.randn(shape, **f64)
    return v.to(torch.float32)
