"""Linear classifiers on the frozen conv1..conv5 features of a colorization model.

    python train_linear_classifiers.py --name siggraph_caffemodel --mask_cent 0 \
        --dataroot ./dataset/ilsvrc2012/train --dataroot_validation ./dataset/ilsvrc2012/val100 \
        --linear_checkpoints ./linear_checkpoints/pretrained --train_subset 13000 --niter 200

How well do the colorization features generalise to object recognition? One linear classifier per
block output of the generator <checkpoints_dir>/<name>/<which_epoch>_net_G.pth, frozen and in eval
mode (BatchNorm running statistics), fed the L channel with no hints (hint ab 0, mask -mask_cent;
--mask_cent 0 for the caffemodel weights). conv1..conv5 are the outputs of blocks model1..model5
after their BatchNorm (conv1_2, conv2_2, conv3_3, conv4_3, conv5_3). Images that are nearly
grayscale (ab range < 5) are dropped together with their labels and counted. Classes are the
sub-folders of --dataroot; --dataroot_validation must have the same ones (<val>/<class>/<image>).

Two protocols (--protocol):

corrected (default)
  * Features: each block output is average-pooled straight to a fixed grid (adaptive pooling, every
    pixel counts) and flattened: conv1 64x12x12 = 9216, conv2 128x9x8 = 9216, conv3 256x6x6 = 9216,
    conv4 512x4x4 = 8192, conv5 512x4x4 = 8192 dimensions, the fork's sizes (~9k per layer, as in
    Zhang et al. and Goyal et al.).
  * Views: training images go through the original's random training pipeline (random resize,
    RandomResizedCrop(fineSize), flip) with a fixed seed, --train_augment views per image (default
    1); validation images are resized (shorter side to loadSize) and centre-cropped to fineSize.
  * Features are extracted once and cached in --cache_dir (default <linear_checkpoints>/
    feature_cache) as bfloat16 by default (half the size of float32, the range of float32; the
    heads standardise and compute in float32; on the quickstart data and model every layer's top-1
    was identical with --cache_dtype float32). A cache
    file is keyed by the checkpoint's SHA-1, the folder's file list (paths, sizes, mtimes), the
    image subset, the transform and its seed, the layer set, mask_cent and the dtype; a rerun with
    the same key does not run the backbone. --no_cache neither reads nor writes the cache.
  * Heads: per layer, standardisation with the training features' per-dimension mean and std
    (a non-affine BatchNorm frozen at the training statistics), then Linear -> logits ->
    CrossEntropy. All layers train together (one Adam, lr --lr, cosine decay over --niter epochs,
    minibatches of --head_batch_size, reshuffled each epoch).
  * Subsets: --train_subset / --val_subset pick one fixed, seeded subset of images whose features
    are cached (default: all; their old names --max_dataset_size / --max_dataset_size_validation
    still work).
  * Reported (results.json): top-1/top-5 and loss at the last epoch, sample-weighted. Training
    metrics are the running averages of the epoch. <layer>_best.pth is the epoch of best
    validation top-1 (best_epoch, best_val_top1), <layer>_last.pth the last one; keys mean, std,
    linear.weight, linear.bias.

fork: the JPatrick9793 fork's procedure, reproduced for comparison
  * Features pooled by avg_pool2d(kernel = stride = 32, 16, 16, 8, 8) and then bilinearly
    upsampled (align_corners) to the same grids, so at 176 px they carry 5x5, 5x5, 2x2, 2x2, 2x2
    independent values per channel; crops must be >= 64 px.
  * The backbone runs every epoch; random training transforms on validation too; each epoch a
    fresh random subset of ceil(max_dataset_size / batch_size) batches for training and the first
    that many validation images; one Linear + Softmax head per layer fed to CrossEntropy (a double
    softmax), one Adam(lr 1e-3) per head, heads updated one after the other on each batch.
  * Epoch metrics are means of per-batch values over a list seeded with 0.0 (the fork's slight
    downward bias); top-1 is also the fork's "F1 micro". Top-5 is an extra, averaged the same way.
  * <model_k>_best.pth (validation loss <= best so far) and <model_k>_e<epoch>.pth every epoch,
    keys 0.weight (num_classes x D) and 0.bias.
  * Deviations: the class count comes from the folder (the fork hard-coded 100); grayscale images
    are dropped with their labels instead of skipping the whole batch; randomness is seeded.

Speed (both protocols, off by default): --amp, --channels_last and --compile apply to the frozen
backbone as in train.py (util/perf.py). Its block outputs are cast to float32 before pooling, so
pooling and the heads compute in float32 (the cache stores --cache_dtype as always). --amp is part
of the feature cache key; the other two compute the same float32 features up to rounding and are not.

Outputs in --linear_checkpoints: opt.txt, log.jsonl (one line per epoch: lr and, per layer,
train/val loss, top-1, top-5), TensorBoard scalars in tensorboard/ when tensorboard is installed,
the head checkpoints, results.json ({"layers": {"conv1": {"val_top1", "val_top5", "train_top1", ...}},
"protocol", "num_classes", ...}), accuracy_by_layer.png and, when files were skipped,
skipped_images.txt. Every result file is written atomically.

Bad inputs: unreadable images (data.datasets.load_rgb) are skipped with one warning each, counted in
results.json ("unreadable_dropped", per split) and listed at the end; the feature cache remembers
them, so a cached rerun reports the same files. The generator checkpoint and the feature cache are
read with weights_only=True: a checkpoint that cannot be read, does not fit or would run code when
unpickled is a one-line error (exit 2); such a cache file is ignored with a one-line warning and
the features are extracted again. Errors are one line on stderr: exit 2 for bad inputs, 1 when an
output file cannot be written.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from data.datasets import (ImageFolderDataset, SkipLog, SkippedImage, collate_skip_bad,
                           eval_subset)
from data.samplers import RandomSubsetSampler
from data.transforms import center_crop_transform, train_transform
from models import load_generator, probes
from options import flags
from util.checkpoint import CheckpointError, atomic_torch_save
from util.fileio import atomic_savefig, atomic_write_text
from util.runtime import resolve_device, save_options, seed_everything

METRICS = ("train_loss", "train_top1", "train_top5", "val_loss", "val_top1", "val_top5")
CACHE_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


class ProbeError(RuntimeError):
    """A problem with the inputs, reported as one line."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] + " (see the module docstring)",
                                     formatter_class=flags.HelpFormatter)
    model = parser.add_argument_group("the colorization model")
    flags.add_checkpoint_flags(model)
    flags.add_flags(model, "mask_cent")
    # the fork's flags
    parser.add_argument("--linear_checkpoints", required=True, help="output folder of the probes")
    parser.add_argument("--dataroot", default="./dataset/ilsvrc2012/train", help="training images, <root>/<class>/<img>")
    parser.add_argument("--dataroot_validation", required=True, help="validation images, <root>/<class>/<img>")
    add_subset_flags(parser)
    parser.add_argument("--niter", type=int, default=200, help="epochs")
    flags.add_flags(parser, "gpu_ids")
    loading = parser.add_argument_group("loading", "--batch_size: images per backbone batch; under --protocol fork "
                                                   "also per head\nupdate (corrected: --head_batch_size)")
    flags.add_loader_flags(loading)
    # ours
    parser.add_argument("--protocol", choices=["corrected", "fork"], default="corrected", help="see above")
    parser.add_argument("--layers", nargs="+", choices=probes.LAYERS, default=list(probes.LAYERS),
                        help="layers to probe")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of the heads")
    flags.add_flags(parser, "seed")
    flags.add_size_flags(parser.add_argument_group(
        "image sizes", "training views: the original's random training resize, then RandomResizedCrop(--fineSize)\n"
                       "and a flip; validation views: shorter side to --loadSize, centre crop to --fineSize.\n"
                       "--fineSize is at least 8 (--protocol fork: at least 64)"))
    parser.add_argument("--train_augment", type=int, default=1,
                        help="corrected: random training views cached per image")
    parser.add_argument("--head_batch_size", type=int, default=256, help="corrected: samples per head update")
    parser.add_argument("--no_cache", action="store_true", help="corrected: neither read nor write the feature cache")
    parser.add_argument("--cache_dir", default=None, help="corrected: default <linear_checkpoints>/feature_cache")
    parser.add_argument("--cache_dtype", choices=sorted(CACHE_DTYPES), default="bfloat16",
                        help="corrected: precision of the cached features")
    flags.add_speed_flags(parser.add_argument_group(
        "speed", "of the frozen backbone, both protocols: its outputs are cast to float32 before pooling and the\n"
                 "heads stay float32. --amp is part of the feature cache key; --channels_last and --compile are\n"
                 "not (the same float32 features up to rounding)"))
    return parser


def add_subset_flags(parser: argparse.ArgumentParser) -> None:
    """How many images the probes use. --max_dataset_size keeps train.py's meaning (a fresh random
    subset each epoch) for the fork; the corrected protocol's fixed subsets have their own names."""
    parser.add_argument("--train_subset", type=int, default=None,
                        help="corrected: one fixed, seeded subset of this many training images, whose features "
                             "are cached (default: all)")
    parser.add_argument("--val_subset", "--max_dataset_size_validation", dest="val_subset", type=int, default=None,
                        help="corrected: one fixed, seeded subset of this many validation images (default: all); "
                             "fork: ignored, see --max_dataset_size. --max_dataset_size_validation is its old name")
    parser.add_argument("--max_dataset_size", type=int, default=None,
                        help="fork: this many training images per epoch, a fresh random subset rounded up to whole "
                             "batches, and the first that many validation images, as the fork did (default: all). "
                             "Under --protocol corrected: the old name of --train_subset")


def check_subsets(opt: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Map the old spelling --max_dataset_size onto --train_subset under --protocol corrected."""
    for flag in ("train_subset", "val_subset", "max_dataset_size"):
        if getattr(opt, flag) is not None and getattr(opt, flag) < 1:
            parser.error(f"--{flag} must be at least 1")
    if opt.protocol == "fork" and opt.train_subset is not None:
        parser.error("--train_subset applies to --protocol corrected only (the fork's is --max_dataset_size)")
    if opt.protocol == "corrected" and opt.max_dataset_size is not None:
        if opt.train_subset is not None:
            parser.error("--max_dataset_size is the old name of --train_subset under --protocol corrected; give one")
        opt.train_subset, opt.max_dataset_size = opt.max_dataset_size, None


def parse(argv: Optional[Sequence[str]] = None):
    parser = build_parser()
    opt = parser.parse_args(argv)
    opt.layers = [layer for layer in probes.LAYERS if layer in opt.layers]
    for flag in ("niter", "batch_size", "head_batch_size", "train_augment", "loadSize", "fineSize"):
        if getattr(opt, flag) < 1:
            parser.error(f"--{flag} must be at least 1")
    check_subsets(opt, parser)
    if opt.num_threads < 0:
        parser.error("--num_threads must be >= 0")
    if opt.fineSize < 8:
        parser.error("--fineSize must be at least 8 (conv4 and conv5 are at 1/8 resolution)")
    if opt.fineSize > opt.loadSize:
        parser.error(f"--fineSize {opt.fineSize} is larger than --loadSize {opt.loadSize}")
    if opt.protocol == "fork":
        if opt.fineSize < probes.min_fork_size():
            parser.error(f"--protocol fork needs --fineSize >= {probes.min_fork_size()} "
                         "(its pooling kernels are 32, 16, 16, 8, 8 at strides 1, 2, 4, 8, 8)")
        if opt.train_augment != 1:
            parser.error("--train_augment applies to --protocol corrected only")
    if opt.cache_dir is None:
        opt.cache_dir = os.path.join(opt.linear_checkpoints, "feature_cache")
    return opt, parser


# ----------------------------------------------------------------------------------------------
# Logging and results
# ----------------------------------------------------------------------------------------------

def tensorboard_tag(protocol: str, metric: str, layer: str) -> str:
    """fork: the fork's tags (ValAccuracy/model3, ...), so its plotting notebook applies;
    corrected: ValTop1/conv3, ..."""
    split, what = metric.split("_")
    split = split.capitalize()
    if protocol == "fork":
        what = {"loss": "Loss", "top1": "Accuracy", "top5": "Top5"}[what]
        return f"{split}{what}/{probes.BLOCKS[layer]}"
    return f"{split}{what.capitalize()}/{layer}"


class ProbeLogger:
    """log.jsonl (one line per epoch) and, when tensorboard is installed, TensorBoard scalars."""

    def __init__(self, folder: str, protocol: str):
        self.protocol = protocol
        self.jsonl = open(os.path.join(folder, "log.jsonl"), "w")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            self.writer = None
        else:
            self.writer = SummaryWriter(os.path.join(folder, "tensorboard"))

    def log(self, epoch: int, lr: float, stats: Mapping[str, Mapping[str, float]]) -> None:
        self.jsonl.write(json.dumps({"epoch": epoch, "lr": lr, "layers": stats}) + "\n")
        self.jsonl.flush()
        if self.writer is not None:
            for layer, values in stats.items():
                for metric, value in values.items():
                    self.writer.add_scalar(tensorboard_tag(self.protocol, metric, layer), value, epoch)
                    if self.protocol == "fork" and metric.endswith("top1"):  # the fork's F1 micro = top-1
                        self.writer.add_scalar(tensorboard_tag("fork", metric, layer).replace("Accuracy", "F1"),
                                               value, epoch)

    def close(self) -> None:
        self.jsonl.close()
        if self.writer is not None:
            self.writer.close()


def plot_accuracy(results: Mapping, path: str, title: str) -> None:
    """Validation top-1/top-5 and training top-1 (%) against layer, with the chance level."""
    from matplotlib.figure import Figure

    layers = list(results["layers"])
    x = range(len(layers))
    fig = Figure(figsize=(5.5, 3.8), dpi=120)
    ax = fig.subplots()
    for metric, style, label in (("val_top1", "o-", "val top-1"), ("val_top5", "s-", "val top-5"),
                                 ("train_top1", "o--", "train top-1")):
        ax.plot(x, [100 * results["layers"][layer][metric] for layer in layers], style, label=label)
    ax.axhline(100 / results["num_classes"], color="gray", lw=0.8, ls=":", label="chance (top-1)")
    ax.set_xticks(list(x), layers)
    ax.set_xlabel("layer")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_savefig(fig, path)


def summarize(runs: Mapping[str, str], out_dir: str) -> str:
    """Combine finished runs (label -> --linear_checkpoints folder; folders without results.json
    are left out) into <out_dir>/summary.json, summary.md (a table of val top-1/top-5 per layer) and
    summary.png (val top-1 against layer, one line per model: the study's figure). Returns the table."""
    results = {}
    for label, folder in runs.items():
        path = os.path.join(folder, "results.json")
        if os.path.isfile(path):
            with open(path) as f:
                results[label] = json.load(f)
    atomic_write_text(os.path.join(out_dir, "summary.json"), json.dumps(results, indent=2) + "\n")
    lines = ["| model | protocol | " + " | ".join(probes.LAYERS) + " |", "|---|---|" + "---|" * len(probes.LAYERS)]
    for label, r in results.items():
        cells = [f"{100 * r['layers'][layer]['val_top1']:.1f} / {100 * r['layers'][layer]['val_top5']:.1f}"
                 if layer in r["layers"] else "-" for layer in probes.LAYERS]
        lines.append(f"| {label} | {r['protocol']} | " + " | ".join(cells) + " |")
    table = "\n".join(lines + ["", "val top-1 / top-5 (%) at the last epoch"])
    atomic_write_text(os.path.join(out_dir, "summary.md"), table + "\n")
    probes.plot_val_top1_by_layer(results, os.path.join(out_dir, "summary.png"))
    return table


def save_head(head: torch.nn.Module, path: str) -> None:
    atomic_torch_save(OrderedDict((k, v.detach().cpu()) for k, v in head.state_dict().items()), path)


# ----------------------------------------------------------------------------------------------
# Corrected protocol: cached features, cheap heads
# ----------------------------------------------------------------------------------------------

def cached_features(opt, split: str, dataset: ImageFolderDataset, indices: List[int], views: int,
                    transform: Mapping, trunk: probes.TrunkRunner, device: torch.device, ckpt_path: str,
                    ckpt_sha1: str, skip_log: SkipLog) -> dict:
    """Features of one split, from the cache when the key matches, else extracted (and cached).
    The split's unreadable files go to ``skip_log`` either way (the cache keeps their names)."""
    key = probes.cache_key(
        checkpoint=ckpt_path, checkpoint_sha1=ckpt_sha1, dataroot=dataset.root,
        files_sha1=probes.listing_sha1(dataset.root, [p for p, _ in dataset.samples]), num_files=len(dataset),
        indices_sha1=hashlib.sha1(json.dumps(indices).encode()).hexdigest(), transform=transform,
        layers=trunk.layers, mask_cent=opt.mask_cent, dtype=opt.cache_dtype, compute=trunk.precision)
    path = probes.cache_path(opt.cache_dir, split, key)
    if not opt.no_cache:
        entry = probes.load_cache(path, key)
        if entry is not None:
            print(f"{split} features: {len(entry['labels'])} from the cache {path}")
            unreadable = [SkippedImage(file, reason) for file, reason in entry["unreadable"]]
            skip_log.add(unreadable)
            return {**entry, "num_unreadable": len(unreadable), "from_cache": True}
    loader = DataLoader(probes.SeededViews(dataset, indices, views=views, seed=opt.seed, salt=split),
                        batch_size=opt.batch_size, shuffle=False, num_workers=opt.num_threads,
                        collate_fn=collate_skip_bad, pin_memory=device.type == "cuda")
    start = time.time()
    features, labels, n_gray, unreadable = probes.extract_features(
        trunk, loader, device, opt.mask_cent, CACHE_DTYPES[opt.cache_dtype],
        progress=lambda it: tqdm(it, desc=f"{split} features", unit="batch", leave=False, file=sys.stdout,
                                 disable=None), skip_log=skip_log)
    print(f"{split} features: {len(labels)} extracted in {time.time() - start:.1f} s "
          f"({n_gray} grayscale and {len(unreadable)} unreadable images dropped)")
    if len(labels) == 0:
        raise ProbeError(f"{dataset.root}: no usable images (all grayscale or unreadable)")
    entry = {"features": features, "labels": labels, "num_grayscale": n_gray, "num_unreadable": len(unreadable)}
    if not opt.no_cache:
        probes.save_cache(path, key, features, labels, n_gray, unreadable)
        print(f"{split} features: cached in {path}")
    entry["from_cache"] = False
    return entry


@torch.no_grad()
def evaluate_heads(heads: Mapping[str, probes.LinearProbe], features: Mapping[str, torch.Tensor],
                   labels: torch.Tensor, device: torch.device, chunk: int = 2048) -> Dict[str, Dict[str, float]]:
    """Sample-weighted loss, top-1 and top-5 of each head on cached features (one sync at the end)."""
    sums = {layer: torch.zeros(3, dtype=torch.float64, device=device) for layer in heads}
    for start in range(0, len(labels), chunk):
        y = labels[start:start + chunk].to(device)
        for layer, head in heads.items():
            logits = head(features[layer][start:start + chunk].to(device, non_blocking=True))
            sums[layer] += sum_loss_top1_top5(logits, y)
    n = max(len(labels), 1)
    return {layer: dict(zip(("loss", "top1", "top5"), (s / n).tolist())) for layer, s in sums.items()}


def sum_loss_top1_top5(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[sum of cross-entropy, top-1 hits, top-5 hits] over the batch, as a float64 tensor (no sync)."""
    with torch.no_grad():
        hit = logits.topk(min(5, logits.shape[1]), dim=1).indices.eq(labels.unsqueeze(1))
        return torch.stack([F.cross_entropy(logits, labels, reduction="sum").double(),
                            hit[:, 0].sum().double(), hit.any(dim=1).sum().double()])


def run_corrected(opt, train_set, val_set, trunk, device, ckpt_path, logger, skip_log: SkipLog) -> dict:
    out = opt.linear_checkpoints
    print(f"hashing {ckpt_path} for the feature cache key")
    ckpt_sha1 = probes.file_sha1(ckpt_path)
    train_idx = eval_subset(len(train_set), opt.train_subset or len(train_set), opt.seed)
    val_idx = eval_subset(len(val_set), opt.val_subset or len(val_set), opt.seed)
    train = cached_features(opt, "train", train_set, train_idx, opt.train_augment,
                            {"kind": "train_random", "loadSize": opt.loadSize, "fineSize": opt.fineSize,
                             "views": opt.train_augment, "seed": opt.seed}, trunk, device, ckpt_path, ckpt_sha1,
                            skip_log)
    val = cached_features(opt, "val", val_set, val_idx, 1,
                          {"kind": "resize_center_crop", "loadSize": opt.loadSize, "fineSize": opt.fineSize},
                          trunk, device, ckpt_path, ckpt_sha1, skip_log)

    layers = trunk.layers
    on_device = device.type == "cuda"  # keep the features on the GPU; on the CPU they stay memory-mapped
    train_x = {layer: train["features"][layer].to(device) if on_device else train["features"][layer] for layer in layers}
    val_x = {layer: val["features"][layer].to(device) if on_device else val["features"][layer] for layer in layers}
    train_y, val_y = train["labels"].to(device), val["labels"]
    num_classes = len(train_set.classes)

    torch.manual_seed(opt.seed)  # heads and shuffling do not depend on whether features were cached
    heads = {layer: probes.LinearProbe(probes.feature_dim(layer), num_classes,
                                       *probes.feature_statistics(train_x[layer])).to(device) for layer in layers}
    optimizer = torch.optim.Adam([p for head in heads.values() for p in head.parameters()], lr=opt.lr)
    shuffle_gen = torch.Generator().manual_seed(opt.seed)
    n = len(train_y)
    best = {layer: (-1.0, -1) for layer in layers}  # (val top-1, epoch)
    best_state: Dict[str, Dict[str, torch.Tensor]] = {}
    history = []
    bar = tqdm(range(opt.niter), desc="epochs", unit="epoch", file=sys.stdout, dynamic_ncols=True)
    for epoch in bar:
        lr = probes.cosine_lr(opt.lr, epoch, opt.niter)
        for group in optimizer.param_groups:
            group["lr"] = lr
        for head in heads.values():
            head.train()
        sums = {layer: torch.zeros(3, dtype=torch.float64, device=device) for layer in layers}
        order = torch.randperm(n, generator=shuffle_gen)
        for start in range(0, n, opt.head_batch_size):
            idx = order[start:start + opt.head_batch_size]
            idx_dev = idx.to(device)
            y = train_y[idx_dev]
            total = 0.0
            for layer, head in heads.items():
                logits = head(train_x[layer][idx_dev if on_device else idx].to(device, non_blocking=True))
                total = total + F.cross_entropy(logits, y)
                sums[layer] += sum_loss_top1_top5(logits.detach(), y)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
        for head in heads.values():
            head.eval()
        val_metrics = evaluate_heads(heads, val_x, val_y, device)
        stats = {}
        for layer in layers:
            tr = (sums[layer] / n).tolist()
            stats[layer] = {"train_loss": tr[0], "train_top1": tr[1], "train_top5": tr[2],
                            **{f"val_{k}": v for k, v in val_metrics[layer].items()}}
            if stats[layer]["val_top1"] > best[layer][0]:
                best[layer] = (stats[layer]["val_top1"], epoch)
                best_state[layer] = {k: v.detach().clone() for k, v in heads[layer].state_dict().items()}
        logger.log(epoch, lr, stats)
        history.append(stats)
        bar.set_postfix(best_val_top1=f"{max(b[0] for b in best.values()):.3f}")
    bar.close()
    for layer in layers:  # written once at the end: epochs cost no disk I/O
        save_head(heads[layer], os.path.join(out, f"{layer}_last.pth"))
        heads[layer].load_state_dict(best_state[layer])
        save_head(heads[layer], os.path.join(out, f"{layer}_best.pth"))
    return {"history": history, "best": best,
            "data": {"train_samples": n, "val_samples": len(val_y), "train_views": opt.train_augment,
                     "grayscale_dropped": {"train": train["num_grayscale"], "val": val["num_grayscale"]},
                     "unreadable_dropped": {"train": train["num_unreadable"], "val": val["num_unreadable"]},
                     "features_from_cache": {"train": train["from_cache"], "val": val["from_cache"]}}}


# ----------------------------------------------------------------------------------------------
# Fork protocol: the backbone every epoch, softmax heads
# ----------------------------------------------------------------------------------------------

def run_fork(opt, train_set, val_set, trunk, device, logger, skip_log: SkipLog) -> dict:
    out = opt.linear_checkpoints
    layers = trunk.layers
    num_classes = len(train_set.classes)
    # The fork breaks out of both loops once (i + 1) * batch_size >= max_dataset_size.
    limit = opt.max_dataset_size or max(len(train_set), len(val_set))
    images_per_epoch = math.ceil(limit / opt.batch_size) * opt.batch_size
    train_views = probes.SeededViews(train_set, seed=opt.seed, salt="train")
    val_views = probes.SeededViews(val_set, range(min(len(val_set), images_per_epoch)), seed=opt.seed, salt="val")
    sampler = RandomSubsetSampler(len(train_set), images_per_epoch, seed=opt.seed)
    loader_args = dict(batch_size=opt.batch_size, num_workers=opt.num_threads, collate_fn=collate_skip_bad,
                       pin_memory=device.type == "cuda")
    train_loader = DataLoader(train_views, sampler=sampler, **loader_args)
    val_loader = DataLoader(val_views, shuffle=False, **loader_args)

    torch.manual_seed(opt.seed)
    heads = {layer: probes.fork_head(probes.feature_dim(layer), num_classes).to(device) for layer in layers}
    optimizers = {layer: torch.optim.Adam(heads[layer].parameters(), lr=opt.lr) for layer in layers}
    best_loss = {layer: math.inf for layer in layers}
    best = {layer: (-1.0, -1) for layer in layers}
    history = []
    counts = {"train_grayscale": 0, "val_grayscale": 0, "train_unreadable": 0, "val_unreadable": 0}

    def run_epoch(split: str, loader: DataLoader, train: bool) -> Dict[str, Dict[str, List[float]]]:
        # Per-batch values in lists seeded with 0.0, as the fork does.
        values = {layer: {"loss": [0.0], "top1": [0.0], "top5": [0.0]} for layer in layers}
        for images, labels, bad_files in tqdm(loader, desc=split, unit="batch", leave=False, file=sys.stdout,
                                              disable=None):
            counts[f"{split}_unreadable"] += skip_log.add(bad_files)
            if images.shape[0] == 0:
                continue
            feats, keep = probes.batch_features(trunk, images.to(device, non_blocking=True), opt.mask_cent,
                                                probes.pool_fork)
            counts[f"{split}_grayscale"] += int((~keep).sum())
            if feats is None:
                continue
            y = labels.to(device)[keep]
            for layer in layers:
                head = heads[layer]
                head.train(train)
                with torch.set_grad_enabled(train):
                    probs = head(feats[layer])
                    loss = F.cross_entropy(probs, y)  # on probabilities: the fork's double softmax
                if train:
                    optimizers[layer].zero_grad()
                    loss.backward()
                    optimizers[layer].step()
                top1, top5 = probes.topk_correct(probs.detach(), y)
                values[layer]["loss"].append(float(loss.detach()))
                values[layer]["top1"].append(top1 / len(y))
                values[layer]["top5"].append(top5 / len(y))
        return values

    bar = tqdm(range(opt.niter), desc="epochs", unit="epoch", file=sys.stdout, dynamic_ncols=True)
    for epoch in bar:
        sampler.set_epoch(epoch)
        train_views.set_epoch(epoch)
        val_views.set_epoch(epoch)
        train_values = run_epoch("train", train_loader, True)
        val_values = run_epoch("val", val_loader, False)
        stats = {}
        for layer in layers:
            stats[layer] = {f"{split}_{metric}": sum(v) / len(v)
                            for split, values in (("train", train_values), ("val", val_values))
                            for metric, v in values[layer].items()}
            stats[layer] = {m: stats[layer][m] for m in METRICS}
            block = probes.BLOCKS[layer]
            save_head(heads[layer], os.path.join(out, f"{block}_e{epoch}.pth"))
            if stats[layer]["val_loss"] <= best_loss[layer]:
                best_loss[layer] = stats[layer]["val_loss"]
                best[layer] = (stats[layer]["val_top1"], epoch)
                save_head(heads[layer], os.path.join(out, f"{block}_best.pth"))
        logger.log(epoch, opt.lr, stats)
        history.append(stats)
        bar.set_postfix(val_top1=f"{max(s['val_top1'] for s in stats.values()):.3f}")
    bar.close()
    return {"history": history, "best": best,
            "data": {"train_samples_per_epoch": min(len(train_set), images_per_epoch),
                     "val_samples_per_epoch": len(val_views),
                     "grayscale_dropped": {"train": counts["train_grayscale"], "val": counts["val_grayscale"]},
                     "unreadable_dropped": {"train": counts["train_unreadable"], "val": counts["val_unreadable"]}}}


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------

def check_classes(train_set: ImageFolderDataset, val_set: ImageFolderDataset) -> None:
    if train_set.classes == val_set.classes:
        return

    def shown(names):
        names = sorted(names)
        return ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "") if names else "none"

    only_train = set(train_set.classes) - set(val_set.classes)
    only_val = set(val_set.classes) - set(train_set.classes)
    raise ProbeError(f"train and validation class sets differ ({len(train_set.classes)} vs {len(val_set.classes)} "
                     f"classes): only in {train_set.root}: {shown(only_train)}; only in {val_set.root}: {shown(only_val)}")


def run(opt, parser) -> int:
    device = resolve_device(opt.gpu_ids)
    seed_everything(opt.seed)
    corrected = opt.protocol == "corrected"
    train_set = ImageFolderDataset(opt.dataroot, train_transform(opt.loadSize, opt.fineSize))
    val_transform = (center_crop_transform(opt.loadSize, opt.fineSize) if corrected
                     else train_transform(opt.loadSize, opt.fineSize))  # the fork: random views on validation too
    val_set = ImageFolderDataset(opt.dataroot_validation, val_transform)
    check_classes(train_set, val_set)
    if len(train_set.classes) < 2:
        raise ProbeError(f"{opt.dataroot}: needs at least 2 class folders (found {len(train_set.classes)})")

    ckpt_path = os.path.join(opt.checkpoints_dir, opt.name, f"{opt.which_epoch}_net_G.pth")
    net = load_generator(ckpt_path)
    trunk = probes.TrunkRunner(probes.FrozenTrunk(net, opt.layers).to(device), device, amp=opt.amp,
                               channels_last=opt.channels_last, compile=opt.compile)
    del net  # keeps only model1..model<k> alive

    os.makedirs(opt.linear_checkpoints, exist_ok=True)
    save_options(opt, parser, opt.linear_checkpoints)
    print(f"probing {opt.layers} of {ckpt_path} ({opt.protocol} protocol, {len(train_set.classes)} classes, "
          f"{len(train_set)} training and {len(val_set)} validation images, {device})")
    logger = ProbeLogger(opt.linear_checkpoints, opt.protocol)
    skip_log = SkipLog()
    start = time.time()
    try:
        if corrected:
            outcome = run_corrected(opt, train_set, val_set, trunk, device, ckpt_path, logger, skip_log)
        else:
            outcome = run_fork(opt, train_set, val_set, trunk, device, logger, skip_log)
    finally:
        logger.close()

    last = outcome["history"][-1]
    results = {
        "protocol": opt.protocol, "num_classes": len(train_set.classes), "classes": train_set.classes,
        "checkpoint": ckpt_path, "mask_cent": opt.mask_cent, "epochs": opt.niter,
        "best_criterion": "val_top1" if corrected else "val_loss",
        "layers": {layer: {**last[layer], "best_epoch": outcome["best"][layer][1],
                           "best_val_top1": outcome["best"][layer][0], "dim": probes.feature_dim(layer),
                           "grid": list(probes.GRIDS[layer])} for layer in opt.layers},
        "data": outcome["data"], "seconds": round(time.time() - start, 2),
    }
    atomic_write_text(os.path.join(opt.linear_checkpoints, "results.json"), json.dumps(results, indent=2) + "\n")
    plot_accuracy(results, os.path.join(opt.linear_checkpoints, "accuracy_by_layer.png"),
                  f"{opt.name}: linear probes ({opt.protocol}, {len(train_set.classes)} classes)")
    for layer in opt.layers:
        r = results["layers"][layer]
        print(f"{layer}: val top-1 {100 * r['val_top1']:.2f}%  top-5 {100 * r['val_top5']:.2f}%  "
              f"train top-1 {100 * r['train_top1']:.2f}%  (best epoch {r['best_epoch']})")
    print(f"results: {os.path.join(opt.linear_checkpoints, 'results.json')}")
    skip_log.report(opt.linear_checkpoints)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    opt, parser = parse(argv)
    try:
        return run(opt, parser)
    except (ProbeError, CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a read-only or full output folder: files already there stay whole (atomic writes)
        print(f"error: cannot write to {opt.linear_checkpoints}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
