"""Texture or shape: the cue-conflict shape bias of Geirhos et al. (ICLR 2019), per probed layer.

The stimuli (rgeirhos/texture-vs-shape, ``stimuli/style-transfer-preprocessed-512``) are 1,280
images in 16 folders, one per shape category, named ``<shape><n>-<texture><m>.png``: the shape of
one category rendered with the texture of another (80 of them with both from one category).
:func:`read_stimuli` reads the categories from the names and refuses a folder that does not look
like the set. For each layer's 16-way probe, :func:`count_decisions` counts, over the stimuli whose
two categories differ, the decisions for the shape category and for the texture category (any
other decision is neither), and shape bias = shape / (shape + texture).

:func:`measure` is the measurement of test_shape_bias.py: the corrected linear probes of
evaluation/probes.py trained on the 16-class data (make_geirhos16_dataset.py), then every stimulus
classified by each layer's best head. docs/shape_bias.md.
"""
from __future__ import annotations

import csv
import glob
import io
import json
import math
import os
import re
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence

import torch
from torch.utils.data import DataLoader

from data.datasets import ImageFolderDataset, IndexedSubset, SkipLog, collate_skip_bad
from data.transforms import center_crop_transform
from dataset_builders.geirhos16 import CATEGORIES
from evaluation.feature_cache import extract_features
from evaluation.probes import ProbeError, ProbeSetup, set_up, train_and_record
from models.probes import LAYERS, LinearProbe, feature_dim
from util.checkpoint import load_tensor_file
from util.fileio import atomic_copy, atomic_savefig, atomic_write_text
from util.plots import probe_axes

#: A stimulus file name: <shape><n>-<texture><m>.png, e.g. airplane1-bicycle2.png.
STIMULUS_NAME = re.compile(r"^([a-z]+)(\d+)-([a-z]+)(\d+)\.png$")
#: The published set: 16 folders of 80 images, 80 of the 1,280 with one category for both cues.
PUBLISHED_NUM_STIMULI = 1280
#: Shape bias (%) of torchvision's ImageNet models, from the texture-vs-shape README.
REFERENCES = (("AlexNet (torchvision)", 25.3), ("VGG-16 (torchvision)", 9.2))
#: Written by scripts/human_shape_bias.py next to the stimuli folder, from the human trials.
HUMAN_FILE = "human_shape_bias.json"


class ShapeBiasError(ProbeError):
    """A problem with the inputs, reported as one line."""


class Stimulus(NamedTuple):
    file: str  # <shape folder>/<file name>
    path: str
    shape: str
    texture: str


def parse_name(name: str) -> Optional[tuple]:
    """(shape, texture) of a stimulus file name, None if it is not one of the 16 categories' names."""
    match = STIMULUS_NAME.match(name)
    if match is None or match.group(1) not in CATEGORIES or match.group(3) not in CATEGORIES:
        return None
    return match.group(1), match.group(3)


def read_stimuli(folder: str) -> List[Stimulus]:
    """The stimuli of ``folder`` sorted by file; ShapeBiasError (one line) unless its sub-folders
    are the 16 categories and each holds only <shape><n>-<texture><m>.png files of its category
    (top-level files are ignored; a subset of the set is accepted)."""
    if not os.path.isdir(folder):
        raise ShapeBiasError(f"stimuli folder not found: {folder}")
    folders = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    if folders != list(CATEGORIES):
        raise ShapeBiasError(f"{folder} does not look like the cue-conflict set: expected the 16 folders "
                             f"{', '.join(CATEGORIES)}; found {', '.join(folders) or 'none'}")
    stimuli = []
    for category in folders:
        for name in sorted(n for n in os.listdir(os.path.join(folder, category)) if not n.startswith(".")):
            cues = parse_name(name)
            if cues is None or cues[0] != category:
                raise ShapeBiasError(f"{folder} does not look like the cue-conflict set: {category}/{name} is not "
                                     f"named {category}<n>-<texture><m>.png with a texture among the 16 categories")
            stimuli.append(Stimulus(f"{category}/{name}", os.path.join(folder, category, name), *cues))
    if not stimuli:
        raise ShapeBiasError(f"{folder}: the 16 category folders hold no stimulus")
    return stimuli


def fraction(numerator: int, denominator: int) -> Optional[float]:
    return numerator / denominator if denominator else None


def count_decisions(stimuli: Sequence[Stimulus], predicted: Sequence[Optional[str]]) -> dict:
    """The shape-bias figures of one observer's decisions (one category or None per stimulus).

    Over the cue-conflict stimuli (shape != texture): shape_fraction and texture_fraction (of
    them), shape_bias = shape / (shape + texture) (None without either decision);
    same_category_accuracy over the others; per_category: {shape category: {"shape", "texture",
    "conflict" counts, "shape_bias"}}.
    """
    shape = texture = same = same_correct = 0
    per = {c: {"shape": 0, "texture": 0, "conflict": 0} for c in CATEGORIES}
    for s, p in zip(stimuli, predicted):
        if s.shape == s.texture:
            same += 1
            same_correct += p == s.shape
            continue
        counts = per[s.shape]
        counts["conflict"] += 1
        counts["shape"] += p == s.shape
        counts["texture"] += p == s.texture
        shape, texture = shape + (p == s.shape), texture + (p == s.texture)
    conflict = sum(c["conflict"] for c in per.values())
    for counts in per.values():
        counts["shape_bias"] = fraction(counts["shape"], counts["shape"] + counts["texture"])
    return {"shape_bias": fraction(shape, shape + texture), "shape_fraction": fraction(shape, conflict),
            "texture_fraction": fraction(texture, conflict), "same_category_accuracy": fraction(same_correct, same),
            "per_category": per}


# ----------------------------------------------------------------------------------------------
# The human observers (raw-data of rgeirhos/texture-vs-shape)
# ----------------------------------------------------------------------------------------------

def human_trials(raw_dir: str):
    """(stimuli, responses, subjects) of every subject-*.csv in ``raw_dir`` (columns subj, ...,
    object_response, category, condition, imagename; the image name ends in the stimulus's file
    name, e.g. 0001_s5n_s01_0_bird_00_bird3-bird2.png). A response 'na' (none given) is None."""
    files = sorted(glob.glob(os.path.join(raw_dir, "*_subject-*.csv")))
    if not files:
        raise ShapeBiasError(f"{raw_dir}: no *_subject-*.csv file of human trials")
    stimuli, responses, subjects = [], [], set()
    for path in files:
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                name = row["imagename"].rsplit("_", 1)[-1]
                cues = parse_name(name)
                if cues is None or cues[0] != row["category"]:
                    raise ShapeBiasError(f"{path}: trial {row.get('trial')}: {row['imagename']} is not a stimulus "
                                         f"of shape {row['category']}")
                stimuli.append(Stimulus(f"{cues[0]}/{name}", "", *cues))
                responses.append(None if row["object_response"] == "na" else row["object_response"])
                subjects.add(row["subj"])
    return stimuli, responses, sorted(subjects)


def human_shape_bias(raw_dir: str) -> dict:
    """The human observers' figures (count_decisions over all their trials, pooled), with
    "subjects" and "trials" counts and the source folder."""
    stimuli, responses, subjects = human_trials(raw_dir)
    result = count_decisions(stimuli, responses)
    return {**result, "subjects": subjects, "trials": len(stimuli), "source": os.path.abspath(raw_dir)}


def read_human(path: str) -> Optional[float]:
    """The human shape bias (a fraction) in a HUMAN_FILE, None if absent or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f).get("shape_bias")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


# ----------------------------------------------------------------------------------------------
# The figure
# ----------------------------------------------------------------------------------------------

def plot_shape_bias(results: Mapping[str, Mapping], path: str, human: Optional[float] = None,
                    title: str = "Shape bias of linear probes on cue-conflict stimuli") -> str:
    """Shape bias (%) against layer, one line per model (results: label -> a shape_bias.json),
    the REFERENCES and, when known, the human value (a fraction) as labelled horizontal lines."""
    fig, ax = probe_axes()
    for label, r in results.items():
        values = [r["layers"].get(layer, {}).get("shape_bias") for layer in LAYERS]
        # a layer without a shape or texture decision (or not probed) is a gap in the line
        ax.plot(range(len(LAYERS)), [math.nan if v is None else 100 * v for v in values], "o-", label=label)
    references = list(REFERENCES) + ([("humans (raw-data)", 100 * human)] if human is not None else [])
    for (name, value), style in zip(references, (":", "--", "-")):
        ax.axhline(value, color="gray" if name[0] != "h" else "firebrick", lw=1, ls=style)
        ax.text(len(LAYERS) - 0.55, value + 1, f"{name} {value:.1f}%", fontsize=7, ha="right", va="bottom")
    ax.set_xticks(range(len(LAYERS)), LAYERS)
    ax.set_xlim(-0.3, len(LAYERS) - 0.5)
    ax.set_ylim(0, 100)
    ax.set_xlabel("layer")
    ax.set_ylabel("shape bias (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if results:
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return atomic_savefig(fig, path)


# ----------------------------------------------------------------------------------------------
# The measurement
# ----------------------------------------------------------------------------------------------

def check_disjoint(stimuli: Sequence[Stimulus], *datasets: ImageFolderDataset) -> None:
    """ShapeBiasError if a stimulus file is also an image of the probes' data (by real path)."""
    seen = {os.path.realpath(path) for ds in datasets for path, _ in ds.samples}
    shared = [s.file for s in stimuli if os.path.realpath(s.path) in seen]
    if shared:
        raise ShapeBiasError(f"{len(shared)} stimuli are also training or validation images of the probes "
                             f"(first: {shared[0]}): no image seen in training may be a stimulus")


def load_heads(folder: str, layers: Sequence[str], device: torch.device) -> Dict[str, LinearProbe]:
    """Each layer's best corrected head (<folder>/<layer>_best.pth), in eval mode on ``device``."""
    heads = {}
    for layer in layers:
        head = LinearProbe(feature_dim(layer), len(CATEGORIES))
        head.load_state_dict(load_tensor_file(os.path.join(folder, f"{layer}_best.pth"), "probe head"))
        heads[layer] = head.to(device).eval()
    return heads


@torch.no_grad()
def classify_stimuli(opt, folder: str, stimuli: Sequence[Stimulus], trunk, device: torch.device,
                     heads: Mapping[str, LinearProbe], skip_log: SkipLog) -> Dict[str, List[Optional[str]]]:
    """{layer: the category each head gives each stimulus}, from the corrected features of its
    centre crop (as the probes' validation images); None for a stimulus dropped as grayscale or
    unreadable."""
    dataset = ImageFolderDataset(folder, center_crop_transform(opt.loadSize, opt.fineSize))
    index = {os.path.abspath(s.path): i for i, s in enumerate(stimuli)}
    wanted = [i for i, (path, _) in enumerate(dataset.samples) if os.path.abspath(path) in index]
    loader = DataLoader(IndexedSubset(dataset, wanted), batch_size=opt.batch_size, shuffle=False,
                        num_workers=opt.num_threads, collate_fn=collate_skip_bad)
    features, labels, _, _ = extract_features(trunk, loader, device, opt.mask_cent, torch.float32, skip_log=skip_log)
    predicted: Dict[str, List[Optional[str]]] = {layer: [None] * len(stimuli) for layer in heads}
    rows = [index[os.path.abspath(dataset.samples[j][0])] for j in labels.tolist()]
    for layer, head in heads.items():
        for row, k in zip(rows, head(features[layer].to(device)).argmax(1).tolist()):
            predicted[layer][row] = CATEGORIES[k]
    return predicted


def decisions_csv(stimuli: Sequence[Stimulus], predicted: Mapping[str, Sequence[Optional[str]]]) -> str:
    """decisions.csv: layer, file, shape, texture, predicted (empty: no decision), one row per
    layer and stimulus."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["layer", "file", "shape", "texture", "predicted"])
    for layer, decisions in predicted.items():
        writer.writerows([layer, s.file, s.shape, s.texture, p or ""] for s, p in zip(stimuli, decisions))
    return out.getvalue()


def shape_bias_json(stimuli: Sequence[Stimulus], predicted: Mapping[str, Sequence[Optional[str]]],
                    probe_results: Mapping) -> dict:
    """The shape_bias.json object: count_decisions per layer plus the head's val top-1 (its best
    epoch's, the head used), and the numbers of stimuli and of cue-conflict stimuli classified."""
    layers = {}
    for layer, decisions in predicted.items():
        layers[layer] = {**count_decisions(stimuli, decisions),
                         "val_top1": probe_results["layers"][layer]["best_val_top1"]}
        per_category = layers[layer].pop("per_category")
        layers[layer]["per_category"] = per_category  # last, as the schema lists it
    classified = [s for s, p in zip(stimuli, next(iter(predicted.values()))) if p is not None]
    return {"layers": layers, "num_stimuli": len(classified),
            "num_conflict": sum(s.shape != s.texture for s in classified)}


class Prepared(NamedTuple):
    stimuli: List[Stimulus]
    setup: ProbeSetup


def prepare(opt) -> Prepared:
    """The stimuli and the probes' start (evaluation.probes.set_up), checked before anything is
    written: a stimuli folder like the set, the 16 category folders, no stimulus among their images."""
    stimuli = read_stimuli(opt.stimuli)
    setup = set_up(opt)
    if setup.train_set.classes != list(CATEGORIES):
        raise ShapeBiasError(f"{opt.dataroot}: the probes need the 16 category folders {', '.join(CATEGORIES)} "
                             f"(make_geirhos16_dataset.py); found {', '.join(setup.train_set.classes)}")
    check_disjoint(stimuli, setup.train_set, setup.val_set)
    if len(stimuli) != PUBLISHED_NUM_STIMULI:
        print(f"note: {len(stimuli)} stimuli; the published set has {PUBLISHED_NUM_STIMULI}")
    return Prepared(stimuli, setup)


def measure(opt, prepared: Prepared) -> dict:
    """The measurement of test_shape_bias.py: the probes trained in opt.linear_checkpoints, then
    <out>/{shape_bias.json, decisions.csv, shape_bias.png} written (out = opt.shape_bias_dir) and
    the human value file found next to the stimuli folder copied. Returns shape_bias.json's object."""
    stimuli, (device, train_set, val_set, checkpoint, trunk) = prepared
    os.makedirs(opt.linear_checkpoints, exist_ok=True)
    skip_log = SkipLog()
    results, _ = train_and_record(opt, train_set, val_set, trunk, device, checkpoint, skip_log)
    heads = load_heads(opt.linear_checkpoints, opt.layers, device)
    predicted = classify_stimuli(opt, opt.stimuli, stimuli, trunk, device, heads, skip_log)
    summary = shape_bias_json(stimuli, predicted, results)
    write_outputs(opt, stimuli, predicted, summary)
    skip_log.report(opt.shape_bias_dir)
    return summary


def write_outputs(opt, stimuli: Sequence[Stimulus], predicted: Mapping, summary: Mapping) -> None:
    """shape_bias.json, decisions.csv, a copy of the human value file (when found) and shape_bias.png."""
    out = opt.shape_bias_dir
    atomic_write_text(os.path.join(out, "shape_bias.json"), json.dumps(summary, indent=2) + "\n")
    atomic_write_text(os.path.join(out, "decisions.csv"), decisions_csv(stimuli, predicted))
    human_file = os.path.join(os.path.dirname(os.path.abspath(opt.stimuli)), HUMAN_FILE)
    human = read_human(human_file)
    if human is not None:
        atomic_copy(human_file, os.path.join(out, HUMAN_FILE))
    plot_shape_bias({opt.name: summary}, os.path.join(out, "shape_bias.png"), human,
                    title=f"{opt.name}: shape bias of 16-way linear probes")
