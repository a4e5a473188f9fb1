"""The corrected probes' features of one split, extracted once and cached on disk.

A cache file <cache_dir>/<split>_<sha1 of the key>.pt holds one split's pooled features; the key
(:func:`cache_key`) names everything they depend on, so a changed checkpoint, image folder, subset,
transform, layer set or precision is a miss. Files are written atomically and read memory-mapped
with weights_only (nothing in them can run code).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import Callable, List, Mapping, Optional, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from data.datasets import SkipLog, SkippedImage
from models.probes import GRIDS, FrozenTrunk, TrunkRunner, batch_features, feature_dim, pool_corrected
from util.checkpoint import CheckpointError, atomic_torch_save, load_tensor_file
from util.color import AB_THRESH

#: Bump when the extraction or the cache layout changes, to invalidate old cache files.
CACHE_VERSION = 2  # 2: the unreadable files' names and reasons are cached
#: --cache_dtype: the precision the features are stored in.
CACHE_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


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

    compute: the precision the backbone ran in (:attr:`models.probes.TrunkRunner.precision`:
    float32, or autocast_bfloat16 / autocast_float16 under --amp). The memory layout and
    torch.compile are not in the key: they compute the same float32 function up to rounding, like
    another device (also not keyed), far below the bfloat16 rounding of the default cache dtype.
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
    """Corrected-protocol features of every image of ``loader``, pooled by models.probes.pool_corrected.

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
