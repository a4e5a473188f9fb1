"""Options shared by every script that builds the colorization model."""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

from options import flags
from util.color import AB_MAX, AB_NORM, AB_QUANT, L_CENT, L_NORM


class BaseOptions:
    """Options of every script that runs the model: experiment, device, data, colour space and hints
    (the original's base options that do something, the fork's --dataroot, and our --seed).
    Training-only options are in TrainOptions, evaluation-only ones in TestOptions."""

    is_train = False
    #: description of the "image sizes" group: how this script resizes (and crops) its images
    size_notes = ""
    #: whether the script crops to --fineSize after resizing to --loadSize
    crops = False
    #: description of the "loading" group (--batch_size, --num_threads)
    loading_notes = ""

    def initialize(self, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        # experiment
        flags.add_checkpoint_flags(parser)
        parser.add_argument("--suffix", type=str, default="",
                            help="appended to --name as _<suffix>, formatted with the options, e.g. {lr}_{sample_p}")
        flags.add_flags(parser, "gpu_ids", "seed", "verbose")
        # data
        parser.add_argument("--dataroot", type=str, default=None,
                            help="image folder; default ./dataset/ilsvrc2012/<phase>/")
        parser.add_argument("--phase", type=str, default="val",
                            help="sub-folder of ./dataset/ilsvrc2012/ used when --dataroot is not given")
        flags.add_loader_flags(parser.add_argument_group("loading", self.loading_notes))
        flags.add_size_flags(parser.add_argument_group("image sizes", self.size_notes), fine=self.crops)
        # model
        flags.add_flags(parser, "norm")
        # colour space and hints
        parser.add_argument("--ab_norm", type=float, default=AB_NORM, help="ab is divided by this")
        parser.add_argument("--ab_max", type=float, default=AB_MAX, help="extent of the ab quantisation grid")
        parser.add_argument("--ab_quant", type=float, default=AB_QUANT,
                            help="ab bin width; 2*ab_max/ab_quant+1 must be 23 (529 classes)")
        parser.add_argument("--l_norm", type=float, default=L_NORM, help="L is divided by this after centring")
        parser.add_argument("--l_cent", type=float, default=L_CENT, help="L centre")
        flags.add_flags(parser, "mask_cent")
        parser.add_argument("--sample_Ps", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6, 7, 8, 9],
                            help="candidate hint patch sizes, drawn uniformly")
        parser.add_argument("--display_winsize", type=int, default=256, help="image width in the HTML pages (px)")
        flags.add_speed_flags(parser)
        return parser

    def make_parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(formatter_class=flags.HelpFormatter)
        return self.initialize(parser)

    def parse(self, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
        """Parse argv (None: sys.argv). Sets opt.isTrain and applies --suffix; no other logic."""
        parser = self.make_parser()
        opt = parser.parse_args(argv)
        opt.isTrain = self.is_train
        if opt.suffix:
            opt.name = opt.name + "_" + opt.suffix.format(**vars(opt))
        if round(2 * opt.ab_max / opt.ab_quant) + 1 != 23:
            parser.error(f"--ab_max {opt.ab_max} and --ab_quant {opt.ab_quant} give "
                         f"{round(2 * opt.ab_max / opt.ab_quant) + 1} bins per axis; the network needs 23")
        if min(opt.sample_Ps) < 1:
            parser.error("--sample_Ps must be positive")
        if opt.batch_size < 1:
            parser.error("--batch_size must be at least 1")
        self.check(opt, parser)
        self.parser = parser  # kept so that opt.txt can mark non-default values
        return opt

    def check(self, opt: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
        """Script-specific consistency checks; report with parser.error (one line, exit 2)."""
