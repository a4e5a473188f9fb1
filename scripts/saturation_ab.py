r"""Controlled A/B of the saturation loss: the same phase trained twice, lambda_sat 0 vs > 0.

    python scripts/saturation_ab.py --dataroot DATA/train --val DATA/val --init CKPT.pth \
        --out ./checkpoints/sat_ab -- --loadSize 64 --fineSize 48 --niter 2 --batch_size 8

Both runs start from the same weights (--init; fresh initialisation if omitted), use the same seed,
data order, hints and number of steps (regression phase, sample_p 1/8, as phases 3-4), and differ
only in --lambda_sat. Then both models colorize every image of --val in eval mode at --loadSize
with the same hints, and the mean HSV saturation of their predictions is printed as one JSON line:
{"lambda_sat": ..., "saturation_baseline": ..., "saturation_with_term": ..., ...}.
Flags after "--" go to train.py for both runs.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from typing import Optional, Sequence

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.datasets import ImageFolderDataset, collate_skip_bad  # noqa: E402
from data.transforms import eval_transform  # noqa: E402
from models.pix2pix_model import Pix2PixModel  # noqa: E402
from options import flags  # noqa: E402
from options.train_options import TrainOptions  # noqa: E402
from training.loop import EarlyExit, UnusableInput, train  # noqa: E402
from util.checkpoint import CheckpointError  # noqa: E402
from util.distributed import DistInfo  # noqa: E402
from util.hints import get_colorization_data  # noqa: E402
from util.metrics import mean_hsv_saturation  # noqa: E402
from util.runtime import make_deterministic, resolve_device  # noqa: E402


def train_run(flags):
    """Train one run in this process as train.py would. Returns (options, device), or None after a
    failure (its one-line message printed)."""
    options = TrainOptions()
    opt = options.parse(flags)
    if opt.deterministic:
        make_deterministic()
    device = resolve_device(opt.gpu_ids)
    try:
        train(opt, options.parser, DistInfo(), device)
    except (UnusableInput, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return None
    except EarlyExit:  # its message is already printed
        return None
    return opt, device


@torch.no_grad()
def evaluate_saturation(opt, device: torch.device, val_root: str, sample_p: float, seed: int) -> float:
    """Mean HSV saturation of the eval-mode predictions (fake_reg) over every image of val_root."""
    model = Pix2PixModel(opt, device)
    model.load_networks("latest")
    model.eval()
    data = ImageFolderDataset(val_root, eval_transform(opt.loadSize), require_classes=False)
    loader = torch.utils.data.DataLoader(data, batch_size=8, collate_fn=collate_skip_bad)
    gen = torch.Generator(device=device).manual_seed(seed)
    values = []
    for images, _labels, _bad in loader:
        if images.shape[0] == 0:
            continue
        batch = get_colorization_data(images.to(device).float() / 255, ab_thresh=0.0, p=sample_p,
                                      sample_Ps=opt.sample_Ps, mask_cent=opt.mask_cent, generator=gen)
        model.set_input(batch)
        model.forward()
        values.append(mean_hsv_saturation(model.get_current_visuals()["fake_reg"]))
    return float(torch.cat(values).mean())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=flags.HelpFormatter)
    parser.add_argument("--dataroot", required=True, help="training folder (<root>/<class>/<img>)")
    parser.add_argument("--val", required=True, help="evaluation folder (flat or nested)")
    parser.add_argument("--out", default="./checkpoints/saturation_ab", help="checkpoints of both runs go here")
    parser.add_argument("--init", default=None, help="starting weights for both runs (default: fresh init)")
    parser.add_argument("--lambda_sat", type=float, default=1e-4, help="weight of S_reg in run B")
    parser.add_argument("--lr", type=float, default=1e-5, help="learning rate of both runs (phase 3: 1e-5)")
    parser.add_argument("--eval_sample_p", type=float, default=0.125,
                        help="hint density when evaluating (1 = no hints)")
    flags.add_flags(parser, "seed")  # both trainings and the evaluation
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    args = build_parser().parse_args(own)

    results = {"lambda_sat": args.lambda_sat}
    for label, lam in (("baseline", 0.0), ("with_term", args.lambda_sat)):
        name = f"lambda_sat_{lam:g}"
        if args.init:
            os.makedirs(os.path.join(args.out, name), exist_ok=True)
            shutil.copyfile(args.init, os.path.join(args.out, name, "latest_net_G.pth"))
        flags = ["--dataroot", args.dataroot, "--checkpoints_dir", args.out, "--name", name,
                 "--sample_p", "0.125", "--niter_decay", "0", "--lr", str(args.lr), "--seed", str(args.seed),
                 "--lambda_sat", str(lam), "--no_html"] + (["--load_model"] if args.init else []) + train_args
        trained = train_run(flags)
        if trained is None:
            return 1
        opt, device = trained
        results[f"saturation_{label}"] = evaluate_saturation(opt, device, args.val, args.eval_sample_p, args.seed)
    results["difference"] = results["saturation_with_term"] - results["saturation_baseline"]
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
