"""Helpers shared by the tests: test.py as a module, tiny train.py command lines, files whose
unpickling runs code, a fake ILSVRC2012 tree, a labelled layout dataset for the probes, and
PATHs for the download scripts."""
import os
import pathlib
import shutil
import socket
from collections import OrderedDict

import numpy as np
import torch
from PIL import Image

from models.networks import define_G
from scripts.run_entry_points import load_script
from util.checkpoint import save_network

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


# ---- a labelled dataset the probes can learn: four colour layouts ----

LAYOUT_CLASSES = ("bright_bottom", "bright_top", "disc", "stripes")


def layout_image(cls: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One RGB image of class ``cls``: two colours in a class-specific layout, jittered and noisy."""
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
                        classes=LAYOUT_CLASSES, grayscale_train: int = 0) -> None:
    """<root>/train/<class>/*.png and <root>/val/<class>/*.png; ``grayscale_train`` extra gray
    images go into the first training class (the probes must drop them)."""
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
    """A random-init generator (torch seed ``seed``) saved as <checkpoints_dir>/<name>/latest_net_G.pth."""
    torch.manual_seed(seed)
    path = os.path.join(str(checkpoints_dir), name, "latest_net_G.pth")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_network(define_G(), path)
    return path


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
