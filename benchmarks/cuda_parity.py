"""Parity of the generator and losses with the original code on a CUDA device (or any device).

    python benchmarks/cuda_parity.py --device cuda

Rebuilds the golden weights (tests/data/golden_siggraph.npz), runs the eval-mode forward and the
losses on the device with TF32 off and on, and prints the largest differences from the original's
CPU outputs as JSON lines. Figures only; the CPU assertions live in tests/test_golden.py.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from models.pix2pix_model import Pix2PixModel  # noqa: E402
from options.train_options import TrainOptions  # noqa: E402
from tests.golden_oracle import GOLDEN, LOSS_NAMES, rebuild_weight  # noqa: E402
from util.hints import ColorizationBatch  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    golden = dict(np.load(GOLDEN))
    lab = torch.from_numpy(golden["lab_norm"]).to(device)
    batch = ColorizationBatch(A=lab[:, :1], B=lab[:, 1:], hint_B=torch.from_numpy(golden["hint_B"]).to(device),
                              mask_B=torch.from_numpy(golden["mask_B_centred"]).to(device), keep=None)
    for tf32 in (False, True):
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
        for cls in ("cls", "reg"):
            flags = ["--gpu_ids", "-1"] + (["--classification"] if cls == "cls" else [])
            with contextlib.redirect_stdout(sys.stderr):  # the model's notices; stdout is for the JSON lines
                model = Pix2PixModel(TrainOptions().parse(flags), device)
            model.netG.load_state_dict({k: rebuild_weight(k, tuple(v.shape)) for k, v in model.netG.state_dict().items()})
            model.eval()
            model.set_input(batch)
            with torch.no_grad():
                model.forward()
                model.compute_losses()
            ref = lambda k: torch.from_numpy(golden[f"{cls}_eval_{k}"]).to(device)  # noqa: E731
            losses = model.get_current_loss_values()
            row = {"device": str(device), "tf32": tf32, "mode": cls,
                   "out_class_max_abs": (model.fake_B_class - ref("out_class")).abs().max().item(),
                   "out_reg_max_abs": (model.fake_B_reg - ref("out_reg")).abs().max().item(),
                   "loss_max_rel": max(abs(losses[n] - float(golden[f"{cls}_eval_loss_{n}"]))
                                       / abs(float(golden[f"{cls}_eval_loss_{n}"])) for n in LOSS_NAMES)}
            print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
