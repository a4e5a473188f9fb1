"""Options of the evaluation scripts (test.py, test_sweep.py): the model is always loaded from
<checkpoints_dir>/<name>/<which_epoch>_net_G.pth and run in eval mode."""
from __future__ import annotations

import argparse

from options.base_options import BaseOptions
from options.train_options import model_training_defaults


class TestOptions(BaseOptions):
    is_train = False
    size_notes = "each image is squashed to --loadSize x --loadSize (bilinear), a multiple of 8"

    def initialize(self, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser = super().initialize(parser)
        # batch_size 1: the original's test.py evaluates one image at a time.
        parser.set_defaults(phase="val", batch_size=1)
        # Not flags here: the model is built with the training defaults (the weights are then loaded).
        parser.set_defaults(**model_training_defaults())
        parser.add_argument("--results_dir", type=str, default="./results/", help="pages and metrics go here")
        parser.add_argument("--how_many", type=int, default=200, help="number of images to evaluate")
        return parser

    def check(self, opt: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
        if opt.how_many < 1:
            parser.error("--how_many must be at least 1")
        if opt.loadSize % 8:
            parser.error(f"--loadSize must be a multiple of 8 (got {opt.loadSize})")
        if max(opt.sample_Ps) > opt.loadSize:
            parser.error(f"--sample_Ps must not exceed --loadSize {opt.loadSize}")
