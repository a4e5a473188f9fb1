"""Linear probes on the frozen conv1..conv5 features of a SIGGRAPH17 generator.

Pieces used by ``train_linear_classifiers.py`` (and its tests and benchmark):

* :class:`FrozenTrunk`: blocks model1..model5 of a loaded generator, in eval mode, without
  gradients. Its forward is the generator's forward truncated after the deepest requested block,
  with the same 2x subsampling, so the block outputs (after each block's BatchNorm) are exactly
  those the full forward computes (:func:`block_outputs_with_hooks` is the reference). It uses no
  hooks, so torch.compile traces it as one plain graph.
* :class:`TrunkRunner`: how the probes call a FrozenTrunk under --amp, --channels_last and
  --compile (util/perf.py); the block outputs always come back in float32.
* :func:`backbone_inputs`: uint8 RGB -> the network's inputs without hints (the fork's train_linear_classifiers.py):
  L normalised, hint ab all 0, mask all ``-mask_cent``, and the grayscale filter (ab_thresh 5).
* Pooling: :func:`pool_fork` (the fork's avg-pool then bilinear upsampling, its reshape_activation_outputs) and
  :func:`pool_corrected` (adaptive average pooling straight to the same grids).
* Heads: :func:`fork_head` (Linear + Softmax, state_dict keys ``0.weight``/``0.bias``) and
  :class:`LinearProbe` (standardisation with fixed train statistics, then Linear; logits).
* :class:`SeededViews`: a dataset wrapper that makes random transforms reproducible per image,
  view and epoch, whatever the number of DataLoader workers.
* The on-disk feature cache: :func:`cache_key`, :func:`cache_path`, :func:`load_cache`,
  :func:`save_cache`, and :func:`extract_features` to fill it.

Layer names are conv1..conv5 (blocks model1..model5): conv1_2, conv2_2, conv3_3, conv4_3, conv5_3.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from data.datasets import SkipLog, SkippedImage
from data.samplers import call_seeded, item_seed
from models.networks import subsample
from util.checkpoint import CheckpointError, atomic_torch_save, load_tensor_file
from util.color import AB_THRESH
from util.fileio import atomic_savefig
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

#: Bump when the extraction or the cache layout changes, to invalidate old cache files.
CACHE_VERSION = 2  # 2: the unreadable files' names and reasons are cached


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


def block_outputs_with_hooks(net: nn.Module, A: Tensor, hint_B: Tensor, mask_B: Tensor,
                             layers: Sequence[str] = LAYERS) -> Dict[str, Tensor]:
    """Reference extractor (the fork's): forward hooks on model1..model5 during the full forward.

    H and W must be multiples of 8 (the decoder's skip additions). Used to check FrozenTrunk.
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


def backbone_inputs(images: Tensor, mask_cent: float, ab_thresh: float = AB_THRESH):
    """uint8 RGB N x 3 x H x W (on the target device) -> the generator's inputs without hints.

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


def topk_correct(scores: Tensor, labels: Tensor, ks: Iterable[int] = (1, 5)) -> List[int]:
    """Number of samples whose label is among the top-k scores, for each k (k capped at C)."""
    k_max = min(max(ks), scores.shape[1])
    top = scores.topk(k_max, dim=1).indices
    hit = top.eq(labels.unsqueeze(1))
    return [int(hit[:, :min(k, scores.shape[1])].any(dim=1).sum()) for k in ks]


# ----------------------------------------------------------------------------------------------
# Reproducible random views
# ----------------------------------------------------------------------------------------------

class SeededViews(Dataset):
    """``views`` transformed copies of each selected image of ``base``, with reproducible randomness.

    Item i is image ``indices[i % n]``, view ``i // n``. Its transform draws from python's and
    torch's RNGs seeded with (seed, salt, epoch, view, image index) inside a private RNG scope, so every
    view is the same for any batch size or number of workers, and the caller's RNG state is
    untouched. ``base`` must apply its (random) transform in __getitem__ (ImageFolderDataset does).
    """

    def __init__(self, base: Dataset, indices: Optional[Sequence[int]] = None, views: int = 1, seed: int = 0,
                 salt: str = ""):
        self.base = base
        self.indices = list(range(len(base))) if indices is None else list(indices)
        self.views = views
        self.seed = seed
        self.salt = salt  # e.g. the split name, so that train and val image i get different draws
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices) * self.views

    def __getitem__(self, i: int):
        view, j = divmod(i, len(self.indices))
        index = self.indices[j]
        return call_seeded(item_seed(self.seed, self.salt, self.epoch, view, index), self.base.__getitem__, index)


# ----------------------------------------------------------------------------------------------
# Feature cache
# ----------------------------------------------------------------------------------------------

def file_sha1(path: str, chunk: int = 1 << 20) -> str:
    """SHA-1 of a file's bytes."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                return h.hexdigest()
            h.update(block)


def listing_sha1(root: str, paths: Sequence[str]) -> str:
    """SHA-1 of the relative path, size and mtime of each file: changes when any file changes."""
    h = hashlib.sha1()
    for path in paths:
        st = os.stat(path)
        h.update(f"{os.path.relpath(path, root)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cache_key(*, checkpoint: str, checkpoint_sha1: str, dataroot: str, files_sha1: str, num_files: int,
              indices_sha1: str, transform: Mapping, layers: Sequence[str], mask_cent: float, dtype: str,
              compute: str = "float32") -> dict:
    """Everything the cached features depend on, as a JSON-able dict (see :func:`cache_path`).

    compute: the precision the backbone ran in (:attr:`TrunkRunner.precision`: float32, or
    autocast_bfloat16 / autocast_float16 under --amp). The memory layout and torch.compile are not
    in the key: they compute the same float32 function up to rounding, like another device (also
    not keyed), far below the bfloat16 rounding of the default cache dtype.
    """
    return {"version": CACHE_VERSION, "checkpoint": os.path.abspath(checkpoint), "checkpoint_sha1": checkpoint_sha1,
            "dataroot": os.path.abspath(dataroot), "files_sha1": files_sha1, "num_files": num_files,
            "indices_sha1": indices_sha1, "transform": dict(transform), "layers": list(layers),
            "grids": {layer: list(GRIDS[layer]) for layer in layers}, "pooling": "adaptive_avg",
            "mask_cent": float(mask_cent), "ab_thresh": AB_THRESH, "hints": "none", "dtype": dtype,
            "compute": compute}


def key_json(key: Mapping) -> str:
    return json.dumps(key, sort_keys=True)


def cache_path(cache_dir: str, split: str, key: Mapping) -> str:
    """<cache_dir>/<split>_<sha1 of the key>.pt"""
    return os.path.join(cache_dir, f"{split}_{hashlib.sha1(key_json(key).encode()).hexdigest()}.pt")


def load_cache(path: str, key: Mapping) -> Optional[dict]:
    """The cached entry at ``path`` if it exists, is readable and was written for ``key``, else None.

    The entry is {"key": str, "features": {layer: N x D}, "labels": N int64, "num_grayscale": int,
    "unreadable": [[path, reason], ...] (one per dropped view)}; tensors are memory-mapped, not
    read into memory up front. Read with util.checkpoint.load_tensor_file (weights_only: nothing
    in the file can run code). A truncated, foreign or refused file (one whose unpickling would
    call something) is not an error: the cache is derived data, so it is ignored with a one-line
    warning and the caller extracts the features again (and overwrites it).
    """
    if not os.path.isfile(path):
        return None
    try:
        entry = load_tensor_file(path, "feature cache", mmap=True)
    except CheckpointError as e:
        print(f"warning: ignoring the feature cache, extracting again: {e}", file=sys.stderr)
        return None
    if not isinstance(entry, dict) or entry.get("key") != key_json(key):
        return None
    return entry


def save_cache(path: str, key: Mapping, features: Mapping[str, Tensor], labels: Tensor, num_grayscale: int,
               unreadable: Sequence[SkippedImage]) -> dict:
    """Write an entry atomically (see :func:`load_cache`) and return it."""
    entry = {"key": key_json(key), "features": dict(features), "labels": labels, "num_grayscale": int(num_grayscale),
             "unreadable": [[record.path, record.reason] for record in unreadable]}
    atomic_torch_save(entry, path)
    return entry


def extract_features(trunk: "FrozenTrunk | TrunkRunner", loader: DataLoader, device: torch.device, mask_cent: float,
                     dtype: torch.dtype = torch.bfloat16, progress: Optional[Callable] = None,
                     skip_log: Optional[SkipLog] = None):
    """Corrected-protocol features of every image of ``loader``, pooled by :func:`pool_corrected`.

    loader yields (uint8 images, labels, skipped records) (data.datasets.collate_skip_bad). Images
    dropped by the grayscale filter are dropped with their labels; unreadable ones go to
    ``skip_log`` (which warns) as they come. Returns ({layer: N x D ``dtype`` on the CPU},
    labels N int64, num_grayscale, unreadable: the SkippedImage records, one per dropped view).
    """
    capacity = len(loader.dataset)
    store = {layer: torch.empty(capacity, feature_dim(layer), dtype=dtype) for layer in trunk.layers}
    labels_out = torch.empty(capacity, dtype=torch.long)
    n = num_grayscale = 0
    unreadable: List[SkippedImage] = []
    batches = progress(loader) if progress is not None else loader
    for images, labels, bad_files in batches:
        unreadable.extend(bad_files)
        if skip_log is not None:
            skip_log.add(bad_files)
        if images.shape[0] == 0:
            continue
        feats, keep = batch_features(trunk, images.to(device, non_blocking=True), mask_cent, pool_corrected)
        keep = keep.cpu()
        num_grayscale += int((~keep).sum())
        if feats is None:
            continue
        m = int(keep.sum())
        for layer, value in feats.items():
            store[layer][n:n + m] = value.to(dtype).cpu()
        labels_out[n:n + m] = labels[keep]
        n += m
    if n < capacity:  # clone so that the saved storage is not the full preallocated buffer
        store = {layer: value[:n].clone() for layer, value in store.items()}
        labels_out = labels_out[:n].clone()
    return store, labels_out, num_grayscale, unreadable


def cosine_lr(base_lr: float, epoch: int, epochs: int) -> float:
    """Cosine decay from base_lr (epoch 0) towards 0 (never reached) over ``epochs`` epochs."""
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))


def plot_val_top1_by_layer(results: Mapping[str, Mapping], path: str,
                           title: str = "Linear classification on frozen features") -> str:
    """The study's figure: validation top-1 (%) against layer, one line per model.

    results: label -> a results.json of train_linear_classifiers.py. Returns ``path``. Uses
    matplotlib's object API (no pyplot state, no backend switch); written atomically.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.8), dpi=120)
    ax = fig.subplots()
    for label, r in results.items():
        layers = [layer for layer in LAYERS if layer in r["layers"]]
        ax.plot([LAYERS.index(layer) for layer in layers], [100 * r["layers"][layer]["val_top1"] for layer in layers],
                "o-", label=label)
    ax.set_xticks(range(len(LAYERS)), LAYERS)
    ax.set_xlabel("layer")
    ax.set_ylabel("val top-1 accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if results:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return atomic_savefig(fig, path)
