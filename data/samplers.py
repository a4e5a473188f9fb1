"""Data order and augmentation randomness as pure functions of (seed, epoch, position).

That makes a run resumed mid-epoch see the same images and augmentations as an uninterrupted run,
the result independent of the number of DataLoader workers, and N data-parallel processes see
exactly the batches of one process with an N times larger batch.

* :class:`EpochSampler` (a DistributedSampler) and :class:`RandomSubsetSampler`: the epoch's order.
* :class:`SeededItems` (train.py) and :class:`SeededViews` (the linear probes): an image dataset
  whose random transform draws from RNGs seeded per item (:func:`item_seed`, :func:`call_seeded`).
"""
from __future__ import annotations

import hashlib
import math
import random
from typing import Iterator, Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset, DistributedSampler

#: What EpochSampler yields and SeededItems takes: (dataset index, epoch, position).
SampleKey = Tuple[int, int, int]


def item_seed(*parts) -> int:
    """A 63-bit seed derived from the given parts (stable across processes and Python runs)."""
    digest = hashlib.blake2b(":".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def call_seeded(seed: int, fn, *args):
    """``fn(*args)`` with python's and torch's CPU RNGs seeded from ``seed``, restoring the
    caller's RNG states afterwards (torchvision's random transforms draw from both)."""
    py_state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        try:
            return fn(*args)
        finally:
            random.setstate(py_state)


class EpochSampler(DistributedSampler):
    """This process's share of the epoch's random order, as (index, epoch, position) keys.

    Args:
        data_len: dataset size.
        num_samples: images per epoch over all processes (None: all), train.py's
            --max_dataset_size; a fresh random subset of that size every epoch, as in the fork.
        seed: the epoch's permutation is drawn from a generator seeded with seed + epoch (the
            same stream as torch's DistributedSampler).
        num_replicas, rank: world size and this process's rank (1 and 0 without torchrun).

    The order is split across processes as DistributedSampler does: padded to a multiple of the
    world size, rank r takes every world-size-th index from r. ``len()`` is this process's number
    of items from the current start position (:meth:`set_start`) on.
    """

    def __init__(self, data_len: int, num_samples: Optional[int] = None, seed: int = 0, num_replicas: int = 1,
                 rank: int = 0):
        super().__init__(range(data_len), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.data_len = data_len
        self.subset_size = data_len if num_samples is None else min(num_samples, data_len)
        self.num_samples = math.ceil(self.subset_size / num_replicas)  # per process
        self.total_size = self.num_samples * num_replicas
        self.start = 0

    def set_start(self, position: int) -> None:
        """Begin the next iteration at this process's ``position``-th item (resuming mid-epoch)."""
        self.start = max(0, min(position, self.num_samples))

    def epoch_indices(self) -> list:
        """This process's dataset indices for the current epoch, from position 0."""
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.data_len, generator=g)[: self.subset_size].tolist()
        order += (order * math.ceil(self.total_size / len(order)))[: self.total_size - len(order)]  # pad, as DistributedSampler
        return order[self.rank: self.total_size: self.num_replicas]

    def __iter__(self) -> Iterator[SampleKey]:
        indices = self.epoch_indices()
        return iter([(index, self.epoch, pos) for pos, index in enumerate(indices) if pos >= self.start])

    def __len__(self) -> int:
        return self.num_samples - self.start


class RandomSubsetSampler(EpochSampler):
    """The EpochSampler of one process, yielding plain dataset indices: a fresh random subset of
    ``num_samples`` (all: a shuffle) every epoch, drawn from ``seed + epoch`` (call set_epoch)."""

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices()[self.start:])


class SeededItems(Dataset):
    """``base[index]`` for a :data:`SampleKey`, with its random transform seeded from
    (seed, epoch, index); a good item comes back as (image, position), anything else (the
    record of an unreadable file) unchanged."""

    def __init__(self, base: Dataset, seed: int = 0):
        self.base = base
        self.seed = seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: SampleKey):
        index, epoch, position = key
        item = call_seeded(item_seed(self.seed, "train", epoch, index), self.base.__getitem__, index)
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], torch.Tensor):
            return item[0], position
        return item


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
