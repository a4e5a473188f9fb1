"""A tiny labelled image folder that linear probes can separate, and a random generator to probe:
what the probes' tests and benchmark (benchmarks/bench_probes.py) run on, generated in seconds.

The classes differ in their lightness layout (the network sees L only, with no hints): bright top /
dark bottom, the reverse, a bright disc, vertical stripes. A randomly initialised generator
(torch.manual_seed, define_G) already gives features a linear probe separates.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from models.networks import define_G
from util.checkpoint import save_network

CLASSES = ("bright_bottom", "bright_top", "disc", "stripes")


def layout_image(cls: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One size x size RGB image of class ``cls``: two colours in a class-specific layout, jittered
    and noisy (Gaussian noise of std 8 per channel)."""
    yy, xx = np.mgrid[0:size, 0:size] / size

    def colour(rgb):
        return np.clip(np.array(rgb) + rng.integers(-25, 26, 3), 0, 255)

    if cls in ("bright_top", "bright_bottom"):
        split = rng.uniform(0.35, 0.65)
        inside = yy < split if cls == "bright_top" else yy >= split
        fg, bg = colour((235, 220, 60)), colour((40, 50, 170))  # yellow (L ~ 88) on blue (L ~ 30)
    elif cls == "disc":
        cy, cx, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.3)
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        fg, bg = colour((90, 230, 90)), colour((150, 30, 40))
    else:
        period = rng.uniform(0.12, 0.25)
        inside = ((xx + rng.uniform(0, 1)) / period).astype(int) % 2 == 0
        fg, bg = colour((230, 80, 220)), colour((40, 160, 160))
    img = np.where(inside[..., None], fg, bg) + rng.normal(0, 8, (size, size, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def make_layout_dataset(root, per_class_train: int = 8, per_class_val: int = 4, size: int = 32, seed: int = 0,
                        classes: Sequence[str] = CLASSES, grayscale_train: int = 0) -> None:
    """<root>/train/<class>/NNN.png and <root>/val/<class>/NNN.png (size x size px, drawn from a
    generator seeded with ``seed``); ``grayscale_train`` extra gray images go into the first
    training class (the probes must drop them)."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class_train), ("val", per_class_val)):
        for cls in classes:
            folder = os.path.join(str(root), split, cls)
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                layout_image(cls, size, rng).save(os.path.join(folder, f"{i:03d}.png"))
    for i in range(grayscale_train):
        Image.new("RGB", (size, size), (128, 128, 128)).save(os.path.join(str(root), "train", classes[0], f"gray{i}.png"))


def save_random_generator(checkpoints_dir, name: str, seed: int = 0) -> str:
    """A generator initialised from torch.manual_seed(seed), saved as
    <checkpoints_dir>/<name>/latest_net_G.pth; returns that path."""
    torch.manual_seed(seed)
    path = os.path.join(str(checkpoints_dir), name, "latest_net_G.pth")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_network(define_G(), path)
    return path
