"""The linear probes' engine: the two protocols of train_linear_classifiers.py, in named steps.

corrected (:func:`run_corrected`): features extracted once and cached (evaluation/feature_cache.py),
standardised Linear heads trained together by one Adam on a cosine schedule; best = highest val
top-1. fork (:func:`run_fork`): the JPatrick9793 fork's procedure, the backbone every epoch, Linear
+ Softmax heads with one Adam each; best = lowest val loss. Both return {"history": [{layer:
{metric: value}} per epoch], "best": {layer: (val top-1, epoch)}, "data": {...}};
:func:`train_and_record` runs one and records it. train_linear_classifiers.py describes both.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, NamedTuple, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from data.datasets import ImageFolderDataset, SkipLog, SkippedImage, collate_skip_bad, eval_subset
from data.samplers import RandomSubsetSampler, SeededViews
from data.transforms import center_crop_transform, train_transform
from evaluation.feature_cache import (CACHE_DTYPES, cache_key, cache_path, extract_features, file_sha1,
                                      listing_sha1, load_cache, save_cache)
from evaluation.probe_results import METRICS, ProbeLogger, probe_results, write_results
from models import load_generator
from models.probes import (BLOCKS, FrozenTrunk, LinearProbe, TrunkRunner, batch_features, feature_dim,
                           feature_statistics, fork_head, pool_fork)
from util.checkpoint import atomic_torch_save
from util.metrics import topk_correct
from util.runtime import resolve_device, seed_everything

#: A layer's best so far: (val top-1, epoch).
Best = Tuple[float, int]


class ProbeError(RuntimeError):
    """A problem with the inputs, reported as one line."""


# ----------------------------------------------------------------------------------------------
# Setup shared by both protocols
# ----------------------------------------------------------------------------------------------

def check_classes(train_set: ImageFolderDataset, val_set: ImageFolderDataset) -> None:
    """ProbeError naming the differences when the two folders' class sets differ."""
    if train_set.classes == val_set.classes:
        return

    def shown(names):
        names = sorted(names)
        return ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "") if names else "none"

    only_train = set(train_set.classes) - set(val_set.classes)
    only_val = set(val_set.classes) - set(train_set.classes)
    raise ProbeError(f"train and validation class sets differ ({len(train_set.classes)} vs {len(val_set.classes)} "
                     f"classes): only in {train_set.root}: {shown(only_train)}; only in {val_set.root}: {shown(only_val)}")


def check_sizes(opt, error, positive=("niter", "batch_size", "loadSize", "fineSize")) -> None:
    """The option checks every probe script makes; ``error(message)`` reports one (argparse's
    parser.error). positive: the integer flags that must be at least 1."""
    for flag in positive:
        if getattr(opt, flag) < 1:
            error(f"--{flag} must be at least 1")
    if opt.num_threads < 0:
        error("--num_threads must be >= 0")
    if opt.fineSize < 8:
        error("--fineSize must be at least 8 (conv4 and conv5 are at 1/8 resolution)")
    if opt.fineSize > opt.loadSize:
        error(f"--fineSize {opt.fineSize} is larger than --loadSize {opt.loadSize}")


def probe_datasets(opt) -> Tuple[ImageFolderDataset, ImageFolderDataset]:
    """The training and validation image folders with the protocol's transforms, checked to have
    the same (at least 2) classes. Validation views are centre crops, random under the fork's."""
    train_set = ImageFolderDataset(opt.dataroot, train_transform(opt.loadSize, opt.fineSize))
    val_transform = (center_crop_transform(opt.loadSize, opt.fineSize) if opt.protocol == "corrected"
                     else train_transform(opt.loadSize, opt.fineSize))  # the fork: random views on validation too
    val_set = ImageFolderDataset(opt.dataroot_validation, val_transform)
    check_classes(train_set, val_set)
    if len(train_set.classes) < 2:
        raise ProbeError(f"{opt.dataroot}: needs at least 2 class folders (found {len(train_set.classes)})")
    return train_set, val_set


def generator_path(opt) -> str:
    """<checkpoints_dir>/<name>/<which_epoch>_net_G.pth"""
    return os.path.join(opt.checkpoints_dir, opt.name, f"{opt.which_epoch}_net_G.pth")


def load_trunk(opt, checkpoint: str, device: torch.device) -> TrunkRunner:
    """The frozen blocks of the generator in ``checkpoint`` up to the deepest of opt.layers, on
    ``device`` with the run's speed flags. The rest of the generator is not kept alive."""
    net = load_generator(checkpoint)
    return TrunkRunner(FrozenTrunk(net, opt.layers).to(device), device, amp=opt.amp, channels_last=opt.channels_last,
                       compile=opt.compile)


class ProbeSetup(NamedTuple):
    device: torch.device
    train_set: ImageFolderDataset
    val_set: ImageFolderDataset
    checkpoint: str  # the generator's weight file
    trunk: TrunkRunner


def set_up(opt) -> ProbeSetup:
    """What a probe run starts from: the device (--gpu_ids; everything seeded with --seed), the
    two image folders, the generator's weight file and its frozen trunk."""
    device = resolve_device(opt.gpu_ids)
    seed_everything(opt.seed)
    train_set, val_set = probe_datasets(opt)
    checkpoint = generator_path(opt)
    return ProbeSetup(device, train_set, val_set, checkpoint, load_trunk(opt, checkpoint, device))


def train_and_record(opt, train_set, val_set, trunk: TrunkRunner, device: torch.device, checkpoint: str,
                     skip_log: SkipLog) -> Tuple[dict, str]:
    """Train the heads under opt.protocol, logging each epoch in opt.linear_checkpoints (log.jsonl,
    TensorBoard), then write results.json and accuracy_by_layer.png there. Returns (results, the
    path of results.json)."""
    logger = ProbeLogger(opt.linear_checkpoints, opt.protocol)
    start = time.time()
    try:
        if opt.protocol == "corrected":
            outcome = run_corrected(opt, train_set, val_set, trunk, device, checkpoint, logger, skip_log)
        else:
            outcome = run_fork(opt, train_set, val_set, trunk, device, logger, skip_log)
    finally:
        logger.close()
    results = probe_results(opt, train_set.classes, checkpoint, outcome, round(time.time() - start, 2))
    path = write_results(results, opt.linear_checkpoints,
                         f"{opt.name}: linear probes ({opt.protocol}, {len(train_set.classes)} classes)")
    return results, path


def save_head(head: nn.Module, path: str) -> None:
    """The head's state_dict, on the CPU, written atomically."""
    atomic_torch_save(OrderedDict((k, v.detach().cpu()) for k, v in head.state_dict().items()), path)


def epochs_bar(epochs: int) -> tqdm:
    return tqdm(range(epochs), desc="epochs", unit="epoch", file=sys.stdout, dynamic_ncols=True)


def batches_bar(loader, desc: str) -> tqdm:
    """A transient progress bar over batches, shown only on a terminal."""
    return tqdm(loader, desc=desc, unit="batch", leave=False, file=sys.stdout, disable=None)


# ----------------------------------------------------------------------------------------------
# Corrected protocol: cached features, cheap heads
# ----------------------------------------------------------------------------------------------

def cosine_lr(base_lr: float, epoch: int, epochs: int) -> float:
    """Cosine decay from base_lr (epoch 0) towards 0 (never reached) over ``epochs`` epochs."""
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))


def split_cache_key(opt, dataset: ImageFolderDataset, indices: List[int], transform: Mapping, trunk: TrunkRunner,
                    checkpoint: str, checkpoint_sha1: str) -> dict:
    """The feature cache key of one split (evaluation.feature_cache.cache_key)."""
    return cache_key(
        checkpoint=checkpoint, checkpoint_sha1=checkpoint_sha1, dataroot=dataset.root,
        files_sha1=listing_sha1(dataset.root, [p for p, _ in dataset.samples]), num_files=len(dataset),
        indices_sha1=hashlib.sha1(json.dumps(indices).encode()).hexdigest(), transform=transform,
        layers=trunk.layers, mask_cent=opt.mask_cent, dtype=opt.cache_dtype, compute=trunk.precision)


def extract_split(opt, split: str, dataset: ImageFolderDataset, indices: List[int], views: int, trunk: TrunkRunner,
                  device: torch.device, skip_log: SkipLog) -> dict:
    """Run the backbone over ``views`` seeded views of the split's images; returns the entry
    {"features", "labels", "num_grayscale", "unreadable": [SkippedImage]}."""
    loader = DataLoader(SeededViews(dataset, indices, views=views, seed=opt.seed, salt=split),
                        batch_size=opt.batch_size, shuffle=False, num_workers=opt.num_threads,
                        collate_fn=collate_skip_bad, pin_memory=device.type == "cuda")
    start = time.time()
    features, labels, n_gray, unreadable = extract_features(
        trunk, loader, device, opt.mask_cent, CACHE_DTYPES[opt.cache_dtype],
        progress=lambda it: batches_bar(it, f"{split} features"), skip_log=skip_log)
    print(f"{split} features: {len(labels)} extracted in {time.time() - start:.1f} s "
          f"({n_gray} grayscale and {len(unreadable)} unreadable images dropped)")
    if len(labels) == 0:
        raise ProbeError(f"{dataset.root}: no usable images (all grayscale or unreadable)")
    return {"features": features, "labels": labels, "num_grayscale": n_gray, "unreadable": unreadable}


def split_features(opt, split: str, dataset: ImageFolderDataset, indices: List[int], views: int,
                   transform: Mapping, trunk: TrunkRunner, device: torch.device, checkpoint: str,
                   checkpoint_sha1: str, skip_log: SkipLog) -> dict:
    """Features of one split, from the cache when the key matches, else extracted (and cached).
    The split's unreadable files go to ``skip_log`` either way (the cache keeps their names).
    Returns {"features", "labels", "num_grayscale", "num_unreadable", "from_cache"}."""
    key = split_cache_key(opt, dataset, indices, transform, trunk, checkpoint, checkpoint_sha1)
    path = cache_path(opt.cache_dir, split, key)
    if not opt.no_cache:
        entry = load_cache(path, key)
        if entry is not None:
            print(f"{split} features: {len(entry['labels'])} from the cache {path}")
            unreadable = [SkippedImage(file, reason) for file, reason in entry["unreadable"]]
            skip_log.add(unreadable)
            return {**entry, "num_unreadable": len(unreadable), "from_cache": True}
    entry = extract_split(opt, split, dataset, indices, views, trunk, device, skip_log)
    if not opt.no_cache:
        save_cache(path, key, entry["features"], entry["labels"], entry["num_grayscale"], entry["unreadable"])
        print(f"{split} features: cached in {path}")
    return {"features": entry["features"], "labels": entry["labels"], "num_grayscale": entry["num_grayscale"],
            "num_unreadable": len(entry["unreadable"]), "from_cache": False}


def corrected_features(opt, train_set, val_set, trunk: TrunkRunner, device: torch.device, checkpoint: str,
                       skip_log: SkipLog) -> Tuple[dict, dict]:
    """Both splits' features (split_features): seeded subsets of --train_subset / --val_subset
    images, --train_augment random training views each, centre-cropped validation images."""
    print(f"hashing {checkpoint} for the feature cache key")
    sha1 = file_sha1(checkpoint)
    train_idx = eval_subset(len(train_set), opt.train_subset or len(train_set), opt.seed)
    val_idx = eval_subset(len(val_set), opt.val_subset or len(val_set), opt.seed)
    train_transform_key = {"kind": "train_random", "loadSize": opt.loadSize, "fineSize": opt.fineSize,
                           "views": opt.train_augment, "seed": opt.seed}
    val_transform_key = {"kind": "resize_center_crop", "loadSize": opt.loadSize, "fineSize": opt.fineSize}
    train = split_features(opt, "train", train_set, train_idx, opt.train_augment, train_transform_key, trunk, device,
                           checkpoint, sha1, skip_log)
    val = split_features(opt, "val", val_set, val_idx, 1, val_transform_key, trunk, device, checkpoint, sha1,
                         skip_log)
    return train, val


@dataclass
class CorrectedRun:
    """The corrected protocol's state: the heads, their one optimizer, the best epochs so far."""
    heads: Dict[str, LinearProbe]
    optimizer: torch.optim.Optimizer
    best: Dict[str, Best]
    best_state: Dict[str, Dict[str, Tensor]] = field(default_factory=dict)
    history: List[dict] = field(default_factory=list)

    @classmethod
    def start(cls, train_x: Mapping[str, Tensor], num_classes: int, lr: float, seed: int,
              device: torch.device) -> "CorrectedRun":
        """Heads standardised with the training features' statistics, initialised from ``seed``
        (not from whether the features came from the cache), and one Adam over all of them."""
        torch.manual_seed(seed)
        heads = {layer: LinearProbe(feature_dim(layer), num_classes, *feature_statistics(x)).to(device)
                 for layer, x in train_x.items()}
        optimizer = torch.optim.Adam([p for head in heads.values() for p in head.parameters()], lr=lr)
        return cls(heads, optimizer, {layer: (-1.0, -1) for layer in heads})

    def keep_best(self, stats: Mapping[str, Mapping[str, float]], epoch: int) -> None:
        """Remember each head whose val top-1 beats its best so far (in memory: no disk I/O per epoch)."""
        for layer, values in stats.items():
            if values["val_top1"] > self.best[layer][0]:
                self.best[layer] = (values["val_top1"], epoch)
                self.best_state[layer] = {k: v.detach().clone() for k, v in self.heads[layer].state_dict().items()}

    def save(self, out: str) -> None:
        """<layer>_last.pth, then <layer>_best.pth (the heads are left holding the best weights)."""
        for layer, head in self.heads.items():
            save_head(head, os.path.join(out, f"{layer}_last.pth"))
            head.load_state_dict(self.best_state[layer])
            save_head(head, os.path.join(out, f"{layer}_best.pth"))


def sum_loss_top1_top5(logits: Tensor, labels: Tensor) -> Tensor:
    """[sum of cross-entropy, top-1 hits, top-5 hits] over the batch, as a float64 tensor (no sync)."""
    with torch.no_grad():
        top1, top5 = topk_correct(logits, labels, (1, 5)).double()
        return torch.stack([F.cross_entropy(logits, labels, reduction="sum").double(), top1, top5])


def train_heads_one_epoch(run: CorrectedRun, train_x: Mapping[str, Tensor], train_y: Tensor, order: Tensor,
                          batch_size: int, device: torch.device) -> Dict[str, Tensor]:
    """One pass over the training features in ``order``, minibatches of ``batch_size``, the
    summed loss of all heads stepped by the one optimizer. Returns {layer: sum_loss_top1_top5 sums}."""
    on_device = device.type == "cuda"  # the features are on the GPU there; on the CPU they are memory-mapped
    sums = {layer: torch.zeros(3, dtype=torch.float64, device=device) for layer in run.heads}
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        idx_dev = idx.to(device)
        y = train_y[idx_dev]
        total = 0.0
        for layer, head in run.heads.items():
            logits = head(train_x[layer][idx_dev if on_device else idx].to(device, non_blocking=True))
            total = total + F.cross_entropy(logits, y)
            sums[layer] += sum_loss_top1_top5(logits.detach(), y)
        run.optimizer.zero_grad(set_to_none=True)
        total.backward()
        run.optimizer.step()
    return sums


@torch.no_grad()
def evaluate_heads(heads: Mapping[str, LinearProbe], features: Mapping[str, Tensor], labels: Tensor,
                   device: torch.device, chunk: int = 2048) -> Dict[str, Dict[str, float]]:
    """Sample-weighted loss, top-1 and top-5 of each head on cached features (one sync at the end)."""
    sums = {layer: torch.zeros(3, dtype=torch.float64, device=device) for layer in heads}
    for start in range(0, len(labels), chunk):
        y = labels[start:start + chunk].to(device)
        for layer, head in heads.items():
            logits = head(features[layer][start:start + chunk].to(device, non_blocking=True))
            sums[layer] += sum_loss_top1_top5(logits, y)
    n = max(len(labels), 1)
    return {layer: dict(zip(("loss", "top1", "top5"), (s / n).tolist())) for layer, s in sums.items()}


def corrected_epoch(run: CorrectedRun, epoch: int, lr: float, data: dict, shuffle: torch.Generator,
                    batch_size: int, device: torch.device) -> Dict[str, Dict[str, float]]:
    """Train every head for one epoch at ``lr``, then evaluate it; returns {layer: {METRICS}}:
    training figures are the epoch's running averages, validation ones sample-weighted."""
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    for head in run.heads.values():
        head.train()
    n = len(data["train_y"])
    sums = train_heads_one_epoch(run, data["train_x"], data["train_y"], torch.randperm(n, generator=shuffle),
                                 batch_size, device)
    for head in run.heads.values():
        head.eval()
    val_metrics = evaluate_heads(run.heads, data["val_x"], data["val_y"], device)
    stats = {}
    for layer in run.heads:
        tr = (sums[layer] / n).tolist()
        stats[layer] = {"train_loss": tr[0], "train_top1": tr[1], "train_top5": tr[2],
                        **{f"val_{k}": v for k, v in val_metrics[layer].items()}}
    run.keep_best(stats, epoch)
    return stats


def features_for_training(train: dict, val: dict, layers: List[str], device: torch.device) -> dict:
    """{"train_x", "val_x": {layer: N x D}, "train_y", "val_y"}: the features moved to the GPU
    when there is one; on the CPU they stay memory-mapped."""
    on_device = device.type == "cuda"

    def placed(entry: dict) -> Dict[str, Tensor]:
        return {layer: entry["features"][layer].to(device) if on_device else entry["features"][layer]
                for layer in layers}

    return {"train_x": placed(train), "val_x": placed(val), "train_y": train["labels"].to(device), "val_y": val["labels"]}


def run_corrected(opt, train_set, val_set, trunk: TrunkRunner, device: torch.device, checkpoint: str, logger,
                  skip_log: SkipLog) -> dict:
    """The corrected protocol (see the module docstring); heads written once, at the end."""
    train, val = corrected_features(opt, train_set, val_set, trunk, device, checkpoint, skip_log)
    data = features_for_training(train, val, trunk.layers, device)
    run = CorrectedRun.start(data["train_x"], len(train_set.classes), opt.lr, opt.seed, device)
    shuffle = torch.Generator().manual_seed(opt.seed)
    bar = epochs_bar(opt.niter)
    for epoch in bar:
        lr = cosine_lr(opt.lr, epoch, opt.niter)
        stats = corrected_epoch(run, epoch, lr, data, shuffle, opt.head_batch_size, device)
        logger.log(epoch, lr, stats)
        run.history.append(stats)
        bar.set_postfix(best_val_top1=f"{max(b[0] for b in run.best.values()):.3f}")
    bar.close()
    run.save(opt.linear_checkpoints)
    return {"history": run.history, "best": run.best,
            "data": {"train_samples": len(data["train_y"]), "val_samples": len(data["val_y"]),
                     "train_views": opt.train_augment,
                     "grayscale_dropped": {"train": train["num_grayscale"], "val": val["num_grayscale"]},
                     "unreadable_dropped": {"train": train["num_unreadable"], "val": val["num_unreadable"]},
                     "features_from_cache": {"train": train["from_cache"], "val": val["from_cache"]}}}


# ----------------------------------------------------------------------------------------------
# Fork protocol: the backbone every epoch, softmax heads
# ----------------------------------------------------------------------------------------------

@dataclass
class ForkData:
    """The fork's data: seeded random views of both splits, a fresh random training subset of
    ``images_per_epoch`` each epoch, the first ``images_per_epoch`` validation images."""
    train_views: SeededViews
    val_views: SeededViews
    sampler: RandomSubsetSampler
    train_loader: DataLoader
    val_loader: DataLoader
    images_per_epoch: int

    @classmethod
    def build(cls, opt, train_set, val_set, device: torch.device) -> "ForkData":
        # The fork breaks out of both loops once (i + 1) * batch_size >= max_dataset_size.
        limit = opt.max_dataset_size or max(len(train_set), len(val_set))
        images_per_epoch = math.ceil(limit / opt.batch_size) * opt.batch_size
        train_views = SeededViews(train_set, seed=opt.seed, salt="train")
        val_views = SeededViews(val_set, range(min(len(val_set), images_per_epoch)), seed=opt.seed, salt="val")
        sampler = RandomSubsetSampler(len(train_set), images_per_epoch, seed=opt.seed)
        loader_args = dict(batch_size=opt.batch_size, num_workers=opt.num_threads, collate_fn=collate_skip_bad,
                           pin_memory=device.type == "cuda")
        return cls(train_views, val_views, sampler, DataLoader(train_views, sampler=sampler, **loader_args),
                   DataLoader(val_views, shuffle=False, **loader_args), images_per_epoch)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)
        self.train_views.set_epoch(epoch)
        self.val_views.set_epoch(epoch)


@dataclass
class ForkRun:
    """The fork protocol's state: one softmax head and one Adam per layer, the best epochs by
    validation loss, and the images dropped so far ({split}_grayscale, {split}_unreadable)."""
    heads: Dict[str, nn.Sequential]
    optimizers: Dict[str, torch.optim.Optimizer]
    best_loss: Dict[str, float]
    best: Dict[str, Best]
    counts: Dict[str, int] = field(default_factory=lambda: {"train_grayscale": 0, "val_grayscale": 0,
                                                            "train_unreadable": 0, "val_unreadable": 0})
    history: List[dict] = field(default_factory=list)

    @classmethod
    def start(cls, layers: List[str], num_classes: int, lr: float, seed: int, device: torch.device) -> "ForkRun":
        torch.manual_seed(seed)
        heads = {layer: fork_head(feature_dim(layer), num_classes).to(device) for layer in layers}
        optimizers = {layer: torch.optim.Adam(heads[layer].parameters(), lr=lr) for layer in layers}
        return cls(heads, optimizers, {layer: math.inf for layer in layers}, {layer: (-1.0, -1) for layer in layers})

    def save_epoch(self, stats: Mapping[str, Mapping[str, float]], epoch: int, out: str) -> None:
        """<model_k>_e<epoch>.pth for every head, and <model_k>_best.pth when its val loss is <= its best."""
        for layer, head in self.heads.items():
            block = BLOCKS[layer]
            save_head(head, os.path.join(out, f"{block}_e{epoch}.pth"))
            if stats[layer]["val_loss"] <= self.best_loss[layer]:
                self.best_loss[layer] = stats[layer]["val_loss"]
                self.best[layer] = (stats[layer]["val_top1"], epoch)
                save_head(head, os.path.join(out, f"{block}_best.pth"))


def fork_batch(run: ForkRun, feats: Mapping[str, Tensor], y: Tensor, train: bool,
               values: Dict[str, Dict[str, List[float]]]) -> None:
    """Every head on one batch of pooled features, one after the other (each stepped by its own
    Adam when ``train``); appends its loss, top-1 and top-5 fractions to ``values[layer]``."""
    for layer, head in run.heads.items():
        head.train(train)
        with torch.set_grad_enabled(train):
            probs = head(feats[layer])
            loss = F.cross_entropy(probs, y)  # on probabilities: the fork's double softmax
        if train:
            run.optimizers[layer].zero_grad()
            loss.backward()
            run.optimizers[layer].step()
        top1, top5 = topk_correct(probs.detach(), y, (1, 5)).tolist()
        values[layer]["loss"].append(float(loss.detach()))
        values[layer]["top1"].append(top1 / len(y))
        values[layer]["top5"].append(top5 / len(y))


def fork_epoch(opt, run: ForkRun, split: str, loader: DataLoader, train: bool, trunk: TrunkRunner,
               device: torch.device, skip_log: SkipLog) -> Dict[str, Dict[str, List[float]]]:
    """One pass of the backbone and the heads over ``loader``; returns the per-batch values
    {layer: {"loss", "top1", "top5": [0.0, batch 1, batch 2, ...]}} (the fork's 0.0-seeded lists)."""
    values = {layer: {"loss": [0.0], "top1": [0.0], "top5": [0.0]} for layer in run.heads}
    for images, labels, bad_files in batches_bar(loader, split):
        run.counts[f"{split}_unreadable"] += skip_log.add(bad_files)
        if images.shape[0] == 0:
            continue
        feats, keep = batch_features(trunk, images.to(device, non_blocking=True), opt.mask_cent, pool_fork)
        run.counts[f"{split}_grayscale"] += int((~keep).sum())
        if feats is None:
            continue
        fork_batch(run, feats, labels.to(device)[keep], train, values)
    return values


def fork_epoch_stats(train_values: Mapping, val_values: Mapping) -> Dict[str, Dict[str, float]]:
    """{layer: {METRICS}}: each the mean of its per-batch list (0.0 included, as the fork)."""
    stats = {}
    for layer in train_values:
        means = {f"{split}_{metric}": sum(v) / len(v)
                 for split, values in (("train", train_values), ("val", val_values))
                 for metric, v in values[layer].items()}
        stats[layer] = {m: means[m] for m in METRICS}
    return stats


def run_fork(opt, train_set, val_set, trunk: TrunkRunner, device: torch.device, logger, skip_log: SkipLog) -> dict:
    """The fork's protocol (see the module docstring); every epoch's heads are written."""
    data = ForkData.build(opt, train_set, val_set, device)
    run = ForkRun.start(trunk.layers, len(train_set.classes), opt.lr, opt.seed, device)
    bar = epochs_bar(opt.niter)
    for epoch in bar:
        data.set_epoch(epoch)
        train_values = fork_epoch(opt, run, "train", data.train_loader, True, trunk, device, skip_log)
        val_values = fork_epoch(opt, run, "val", data.val_loader, False, trunk, device, skip_log)
        stats = fork_epoch_stats(train_values, val_values)
        run.save_epoch(stats, epoch, opt.linear_checkpoints)
        logger.log(epoch, opt.lr, stats)
        run.history.append(stats)
        bar.set_postfix(val_top1=f"{max(s['val_top1'] for s in stats.values()):.3f}")
    bar.close()
    counts = run.counts
    return {"history": run.history, "best": run.best,
            "data": {"train_samples_per_epoch": min(len(train_set), data.images_per_epoch),
                     "val_samples_per_epoch": len(data.val_views),
                     "grayscale_dropped": {"train": counts["train_grayscale"], "val": counts["val_grayscale"]},
                     "unreadable_dropped": {"train": counts["train_unreadable"], "val": counts["val_unreadable"]}}}
