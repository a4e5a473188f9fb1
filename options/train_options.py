"""Options of train.py (one training phase)."""
from __future__ import annotations

import argparse

from options.base_options import BaseOptions


def add_model_training_flags(parser: argparse.ArgumentParser) -> None:
    """The training options that models.Pix2PixModel reads. Evaluation runs the model with their
    defaults (TestOptions), so the model reads every option directly."""
    parser.add_argument("--init_type", type=str, default="normal",
                        choices=["normal", "xavier", "kaiming", "orthogonal"], help="weight initialisation")
    parser.add_argument("--classification", action="store_true",
                        help="train the trunk with the classification loss (phases 1-2); default: regression")
    parser.add_argument("--lambda_A", type=float, default=1.0, help="weight of the cross-entropy (class) loss")
    parser.add_argument("--lambda_sat", type=float, default=0.0,
                        help="weight of the saturation penalty S_reg (0: the original loss; the study uses 1e-4)")
    parser.add_argument("--avg_loss_alpha", type=float, default=0.986,
                        help="EMA factor of the printed losses (bias-corrected, updated per print)")
    # data-parallel training under torchrun (util/distributed.py)
    parser.add_argument("--sync_bn", action="store_true",
                        help="under torchrun: batch-norm statistics over the global batch (SyncBatchNorm)")


def model_training_defaults() -> dict:
    """{dest: default} of add_model_training_flags: what evaluation runs the model with."""
    parser = argparse.ArgumentParser(add_help=False)
    add_model_training_flags(parser)
    return vars(parser.parse_args([]))


class TrainOptions(BaseOptions):
    """Optimisation, schedule, loss weights and logging frequencies.

    Frequencies are counted in images, as in the original; an event fires whenever the image
    count crosses a multiple of its frequency, so batch sizes that do not divide it still fire.
    """

    is_train = True
    crops = True
    size_notes = ("each image is resized by one of six ways drawn at random (shorter side to --loadSize keeping\n"
                  "the aspect ratio, or squashed to --loadSize x --loadSize; Lanczos, bilinear or bicubic), then\n"
                  "RandomResizedCrop to --fineSize, a multiple of 8 (data/transforms.py train_transform)")
    loading_notes = "under torchrun --batch_size is per process: the global batch is batch_size x WORLD_SIZE"

    def initialize(self, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser = super().initialize(parser)
        parser.set_defaults(phase="train")
        parser.add_argument("--max_dataset_size", type=int, default=None,
                            help="use at most this many images per epoch (a fresh random subset each epoch); "
                                 "under torchrun over all processes together")
        add_model_training_flags(parser)
        parser.add_argument("--load_model", action="store_true",
                            help="load <checkpoints_dir>/<name>/<which_epoch>_net_G.pth at start")
        parser.add_argument("--sample_p", type=float, default=1.0,
                            help="hint count is geometric with this parameter: mean (1-p)/p; 1 means no hints")
        parser.add_argument("--niter", type=int, default=100, help="epochs at the starting learning rate")
        parser.add_argument("--niter_decay", type=int, default=100, help="epochs of linear decay to zero")
        parser.add_argument("--epoch_count", type=int, default=0,
                            help="number of the first epoch (also enters the 'lambda' LR rule)")
        parser.add_argument("--lr", type=float, default=0.0001, help="Adam learning rate")
        parser.add_argument("--beta1", type=float, default=0.9, help="Adam beta1 (beta2 is 0.999)")
        parser.add_argument("--lr_policy", type=str, default="lambda", choices=["lambda", "step", "plateau"],
                            help="learning rate policy, stepped once per epoch")
        parser.add_argument("--lr_decay_iters", type=int, default=50, help="'step' policy: x0.1 every this many epochs")
        parser.add_argument("--print_freq", type=int, default=200, help="print and log the losses every this many images")
        parser.add_argument("--display_freq", type=int, default=10000,
                            help="save the current visuals to the training HTML page every this many images")
        parser.add_argument("--save_latest_freq", type=int, default=5000,
                            help="save latest_net_G.pth every this many images")
        parser.add_argument("--save_epoch_freq", type=int, default=1,
                            help="at the end of every this-many-th epoch save latest and <epoch>_net_G.pth")
        parser.add_argument("--no_html", action="store_true", help="do not write the training HTML page (visuals and loss curves)")
        # reliability
        parser.add_argument("--resume", action="store_true",
                            help="continue exactly from <checkpoints_dir>/<name>/resume_state.pth (weights, optimizer, "
                                 "schedule, position in the epoch, RNG states), written every --save_latest_freq "
                                 "images, at each epoch end and on SIGTERM/SIGINT; starts afresh if there is none")
        parser.add_argument("--deterministic", action="store_true",
                            help="deterministic algorithms only (slower on CUDA): with --resume a killed run ends "
                                 "bit-identical to an uninterrupted one")
        parser.add_argument("--max_nonfinite", type=int, default=10,
                            help="stop after this many consecutive steps with a non-finite loss or gradient "
                                 "(each is skipped: the weights are not updated)")
        return parser

    def check(self, opt: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
        if not 0.0 < opt.sample_p <= 1.0:
            parser.error(f"--sample_p must be in (0, 1] (got {opt.sample_p})")
        if opt.max_dataset_size is not None and opt.max_dataset_size < 1:
            parser.error("--max_dataset_size must be at least 1")
        if opt.fineSize % 8:
            parser.error(f"--fineSize must be a multiple of 8 (got {opt.fineSize})")
        if opt.fineSize > opt.loadSize:
            parser.error(f"--fineSize {opt.fineSize} is larger than --loadSize {opt.loadSize}")
        if max(opt.sample_Ps) > opt.fineSize:
            parser.error(f"--sample_Ps must not exceed --fineSize {opt.fineSize}")
        if opt.niter + opt.niter_decay <= opt.epoch_count:
            parser.error("--niter + --niter_decay must be larger than --epoch_count (no epoch to train)")
        for flag in ("print_freq", "display_freq", "save_latest_freq", "save_epoch_freq", "max_nonfinite"):
            if getattr(opt, flag) < 1:
                parser.error(f"--{flag} must be at least 1")
