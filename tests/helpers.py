"""Helpers shared by the tests: test.py as a module, tiny train.py command lines, files whose
unpickling runs code, a fake ILSVRC2012 tree and
PATHs for the download scripts."""
import os
import pathlib
import shutil
import socket
from collections import OrderedDict

import numpy as np
import torch

from scripts.run_entry_points import load_script

REPO = pathlib.Path(__file__).resolve().parent.parent


def load_test_script():
    """The top-level test.py as a module (scripts.run_entry_points.load_script: "import test"
    could find the standard library's test package instead)."""
    return load_script("test.py")


#: test.py's per-image metrics, in the order of metrics.json.
METRIC_KEYS = ["psnr", "ssim", "colorfulness", "saturation", "colorfulness_real", "saturation_real", "auc",
               "ciede2000", "entropy"]


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


# ---- a fake ILSVRC2012 tree (zero-byte files) for make_ilsvrc_dataset.py ----

ILSVRC_TEST_INDS = np.load(REPO / "resources" / "ilsvrclin12_val_inds.npy")
# created in this (unsorted) order; sorted order is n0000001 .. n0000012
WNIDS = ["n0000007", "n0000012", "n0000003", "n0000001", "n0000010", "n0000005",
         "n0000002", "n0000011", "n0000009", "n0000004", "n0000008", "n0000006"]


def ilsvrc_val_name(i):
    return "ILSVRC2012_val_%08d.JPEG" % (i + 1)


def make_ilsvrc_source(root, val_indices, wnids=WNIDS):
    """Fake ILSVRC2012 root (with a space in its name) holding the given val indices; class k
    of ``wnids`` has 1 + k % 2 training files."""
    src = root / "ILSVRC 2012 src"
    for k, w in enumerate(wnids):
        d = src / "train" / w
        d.mkdir(parents=True)
        for j in range(1 + k % 2):
            (d / ("%s_%d.JPEG" % (w, j))).write_bytes(b"jpg")
    val = src / "val"
    val.mkdir(parents=True)
    for i in val_indices:
        (val / ilsvrc_val_name(i)).touch()
    return src


def copy_checkpoint(source, checkpoints_dir, name, filename="latest_net_G.pth"):
    """Copy the weight file ``source`` to <checkpoints_dir>/<name>/<filename>; returns that path."""
    dest = pathlib.Path(checkpoints_dir) / name / filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest)
    return dest


def probe_args(data, ckpt_dir, out, *extra):
    """train_linear_classifiers.py flags: checkpoint 'rand' on a layout dataset, 32 px, CPU."""
    return ["--name", "rand", "--checkpoints_dir", str(ckpt_dir), "--dataroot", str(data / "train"),
            "--dataroot_validation", str(data / "val"), "--linear_checkpoints", str(out), "--gpu_ids", "-1",
            "--loadSize", "32", "--fineSize", "32", "--batch_size", "16", "--num_threads", "0", *extra]


# ---- the download scripts (pretrained_models/*.sh), run with a PATH of our choosing ----

BASH = shutil.which("bash")
DOWNLOADERS = [d for d in ("curl", "wget") if shutil.which(d)]
TOOLS = ["dirname", "basename", "mkdir", "mktemp", "rm", "rmdir", "mv", "chmod", "sed"]


def make_path(tmp_path, downloader):
    """A PATH holding the basic tools plus only the chosen downloader (or none)."""
    bindir = tmp_path / ("bin-%s" % downloader)
    bindir.mkdir()
    for tool in TOOLS + ([downloader] if downloader else []):
        os.symlink(shutil.which(tool), bindir / tool)
    return str(bindir)


def recording_downloader(tmp_path):
    """(PATH, log): the basic tools plus a stand-in ``curl`` that appends each URL it is asked for
    to ``log`` and saves the text 'body of <URL>' as the download. No network."""
    path = make_path(tmp_path, None)
    log = tmp_path / "requested_urls.txt"
    fake = pathlib.Path(path) / "curl"
    fake.write_text(f"""#!{BASH}
url="${{@: -1}}"
while [ $# -gt 0 ]; do [ "$1" = --output ] && out="$2"; shift; done
echo "$url" >> '{log}'
printf 'body of %s' "$url" > "$out"
""")
    fake.chmod(0o755)
    return path, log


def all_files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smooth_rgb(height, width, seed=0):
    """A smooth random colour image, H x W x 3 uint8 (colorize.py and app tests)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, size=(max(2, height // 8), max(2, width // 8), 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))


def save_vivid_generator(path):
    """Save a seeded define_G() whose output layer is scaled up 500x, so that it predicts clearly
    non-zero, spatially varying ab (a fresh init predicts ab ~ 1e-3, which would hide pipeline
    bugs and make hints invisible); returns ``path``."""
    from models.networks import define_G
    from util.checkpoint import save_network

    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = define_G()
    with torch.no_grad():
        net.model_out[0].weight.mul_(500.0)
    save_network(net, str(path))
    return path


#: train.py flags (after tiny_train_args') of conftest's reference_run: 2 steps of a seeded random
#: subset of 8 of the 12 sample images, hints at 1/8, losses logged after each step, no page.
REFERENCE_FLAGS = ("--sample_p", "0.125", "--print_freq", "4", "--max_dataset_size", "8", "--no_html")


def reference_train_args(data_root, ckpt, name, *extra):
    """conftest's reference_run's train.py flags, written to <ckpt>/<name>, plus ``extra``."""
    return tiny_train_args(data_root, ckpt, name, *REFERENCE_FLAGS, *extra)
