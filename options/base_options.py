"""Options shared by every script that builds the colorization model."""
from __future__ import annotations

import argparse
from typing import Optional, Sequence


class BaseOptions:
    """Options of every script that runs the model: experiment, device, data, colour space and hints
    (the original's base options that do something, the fork's --dataroot, and our --seed).
    Training-only options are in TrainOptions, evaluation-only ones in TestOptions."""

    is_train = False

    def initialize(self, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        # experiment
        parser.add_argument("--name", type=str, default="experiment_name",
                            help="experiment name: models and logs go to <checkpoints_dir>/<name>/")
        parser.add_argument("--suffix", type=str, default="",
                            help="appended to --name as _<suffix>, formatted with the options, e.g. {lr}_{sample_p}")
        parser.add_argument("--checkpoints_dir", type=str, default="./checkpoints", help="where models are saved")
        parser.add_argument("--gpu_ids", type=str, default=None,
                            help="GPU id, e.g. 0; -1 for CPU. Default: GPU 0 when CUDA is available, else CPU")
        parser.add_argument("--seed", type=int, default=0,
                            help="seeds python, numpy, torch, data order, augmentation and hint sampling")
        parser.add_argument("--verbose", action="store_true", help="print the network and its parameter count")
        # data
        parser.add_argument("--dataroot", type=str, default=None,
                            help="image folder; default ./dataset/ilsvrc2012/<phase>/")
        parser.add_argument("--phase", type=str, default="val",
                            help="sub-folder of ./dataset/ilsvrc2012/ used when --dataroot is not given")
        parser.add_argument("--batch_size", type=int, default=25,
                            help="images per batch; under torchrun per process (the global batch is this x WORLD_SIZE)")
        parser.add_argument("--loadSize", type=int, default=256, help="resize images to this size first")
        parser.add_argument("--num_threads", type=int, default=4, help="DataLoader worker processes")
        # model
        parser.add_argument("--norm", type=str, default="batch", choices=["batch", "instance"],
                            help="normalisation layer; 'instance' is not compatible with the official weights")
        parser.add_argument("--which_epoch", type=str, default="latest", help="which checkpoint to load")
        # colour space and hints
        parser.add_argument("--ab_norm", type=float, default=110.0, help="ab is divided by this")
        parser.add_argument("--ab_max", type=float, default=110.0, help="extent of the ab quantisation grid")
        parser.add_argument("--ab_quant", type=float, default=10.0,
                            help="ab bin width; 2*ab_max/ab_quant+1 must be 23 (529 classes)")
        parser.add_argument("--l_norm", type=float, default=100.0, help="L is divided by this after centring")
        parser.add_argument("--l_cent", type=float, default=50.0, help="L centre")
        parser.add_argument("--mask_cent", type=float, default=0.5,
                            help="subtracted from the {0,1} hint mask; use 0 for the original caffemodel weights")
        parser.add_argument("--sample_Ps", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6, 7, 8, 9],
                            help="candidate hint patch sizes, drawn uniformly")
        parser.add_argument("--display_winsize", type=int, default=256, help="image width in the HTML pages (px)")
        # speed (util/perf.py); all off by default, so the default run is the fp32 eager computation
        parser.add_argument("--amp", action="store_true",
                            help="mixed precision: the generator in bfloat16 where supported, else float16 with a "
                                 "GradScaler; losses, colour conversion and metrics stay float32")
        parser.add_argument("--channels_last", action="store_true", help="NHWC memory layout for weights and inputs")
        parser.add_argument("--compile", action="store_true",
                            help="torch.compile the generator (eager with a one-line warning where unsupported)")
        return parser

    def make_parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
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
