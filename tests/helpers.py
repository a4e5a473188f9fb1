"""Helpers shared by the tests: test.py as a module, tiny train.py command lines and files whose
unpickling runs code."""
import os
import pathlib
from collections import OrderedDict

import torch

from scripts.run_entry_points import load_script


def load_test_script():
    """The top-level test.py as a module (scripts.run_entry_points.load_script: "import test"
    could find the standard library's test package instead)."""
    return load_script("test.py")


def tiny_train_args(data_root, ckpt, name, *extra):
    """train.py flags for one tiny epoch on the shared sample data (32 px crops, batch 4, CPU)."""
    return ["--dataroot", str(data_root / "train"), "--checkpoints_dir", str(ckpt), "--name", name,
            "--gpu_ids", "-1", "--loadSize", "40", "--fineSize", "32", "--batch_size", "4", "--num_threads", "0",
            "--niter", "1", "--niter_decay", "0", *extra]


class TouchOnUnpickle:
    """Unpickling an instance calls pathlib.Path(marker).touch(): code execution, harmless and visible."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def poison(path, marker, obj=None):
    """Write a torch file holding ``obj`` (default: a one-tensor state_dict) plus the payload."""
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    payload = OrderedDict(obj if obj is not None else {"model1.0.weight": torch.zeros(64, 4, 3, 3)})
    payload["payload"] = TouchOnUnpickle(marker)
    torch.save(payload, str(path))
