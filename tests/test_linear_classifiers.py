"""Linear probes (models/probes.py, evaluation/probes.py, train_linear_classifiers.py/.sh) on tiny
generated data (evaluation/layout_dataset.py: classes a random generator's features separate; CPU).
"""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import train_linear_classifiers as tlc
from data.datasets import SkippedImage
from data.samplers import SeededViews
from evaluation import feature_cache
from evaluation.layout_dataset import CLASSES, make_layout_dataset, save_random_generator
from evaluation.probe_results import METRICS
from models import probes
from models.networks import define_G
from tests.oracles import block_outputs_with_hooks
from util.checkpoint import save_network
from util.metrics import topk_correct

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def probe_args(data, ckpt_dir, out, *extra):
    return ["--name", "rand", "--checkpoints_dir", str(ckpt_dir), "--dataroot", str(data / "train"),
            "--dataroot_validation", str(data / "val"), "--linear_checkpoints", str(out), "--gpu_ids", "-1",
            "--loadSize", "32", "--fineSize", "32", "--batch_size", "16", "--num_threads", "0", *extra]


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("probes")
    data = root / "data"
    make_layout_dataset(data, grayscale_train=1)
    save_random_generator(root / "ckpt", "rand")
    return root, data


class BackboneCounter:
    """Counts FrozenTrunk forward calls (the backbone) while the probes run."""

    def __init__(self, monkeypatch):
        self.calls = 0
        original = probes.FrozenTrunk.forward

        def counting(module, *args, **kwargs):
            self.calls += 1
            return original(module, *args, **kwargs)

        monkeypatch.setattr(probes.FrozenTrunk, "forward", counting)


@pytest.fixture(scope="module")
def corrected_run(setup):
    root, data = setup
    out = root / "corrected"
    assert tlc.main(probe_args(data, root / "ckpt", out, "--niter", "30")) == 0
    return out


# ----------------------------------------------------------------------------------------------
# Features
# ----------------------------------------------------------------------------------------------

def test_truncated_forward_equals_hooks_on_full_forward():
    torch.manual_seed(0)
    net = define_G().eval()
    with torch.no_grad():  # non-trivial BN running statistics, so eval-mode BN is not the identity
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.01, 0.01)
                module.running_var.uniform_(0.5, 2.0)
    rgb = torch.randint(0, 256, (2, 3, 40, 48), dtype=torch.uint8)
    A, hint_B, mask_B, keep = probes.backbone_inputs(rgb, mask_cent=0.5)
    assert keep.all() and torch.all(hint_B == 0) and torch.all(mask_B == -0.5)
    hooked = block_outputs_with_hooks(net, A, hint_B, mask_B)
    trunk = probes.FrozenTrunk(net, probes.LAYERS)
    with torch.no_grad():
        truncated = trunk(A, hint_B, mask_B)
    assert list(truncated) == list(probes.LAYERS)
    expected_shapes = {"conv1": (2, 64, 40, 48), "conv2": (2, 128, 20, 24), "conv3": (2, 256, 10, 12),
                       "conv4": (2, 512, 5, 6), "conv5": (2, 512, 5, 6)}
    for layer in probes.LAYERS:
        assert truncated[layer].shape == expected_shapes[layer]
        assert torch.equal(truncated[layer], hooked[layer]), layer
    # A subset stops after the deepest block asked for.
    assert len(probes.FrozenTrunk(net, ["conv2"]).blocks) == 2
    trunk.train()
    assert not trunk.training and not any(p.requires_grad for p in trunk.parameters())


def test_fork_pooling_dims_at_176():
    torch.manual_seed(0)
    trunk = probes.FrozenTrunk(define_G(), probes.LAYERS)
    rgb = torch.randint(0, 256, (1, 3, 176, 176), dtype=torch.uint8)
    with torch.no_grad():
        outputs = trunk(*probes.backbone_inputs(rgb, 0.5)[:3])
    fork = {layer: probes.pool_fork(outputs[layer], layer) for layer in probes.LAYERS}
    assert [fork[layer].shape[1] for layer in probes.LAYERS] == [9216, 9216, 9216, 8192, 8192]
    assert [probes.feature_dim(layer) for layer in probes.LAYERS] == [9216, 9216, 9216, 8192, 8192]
    # Pool-then-upsample: conv3 at 176 px (44 x 44) is pooled to 2 x 2, then interpolated to 6 x 6
    # with aligned corners, so the corner cell is the top-left 16 x 16 mean.
    conv3 = fork["conv3"].view(1, 256, 6, 6)
    top_left = outputs["conv3"][:, :, :16, :16].mean(dim=(2, 3))
    assert torch.allclose(conv3[:, :, 0, 0], top_left, atol=1e-6)
    corrected = {layer: probes.pool_corrected(outputs[layer], layer) for layer in probes.LAYERS}
    assert [corrected[layer].shape[1] for layer in probes.LAYERS] == [9216, 9216, 9216, 8192, 8192]
    with pytest.raises(ValueError, match="at least 64 px"):
        probes.pool_fork(torch.zeros(1, 256, 12, 12), "conv3")


def test_grayscale_images_are_dropped_with_their_labels():
    torch.manual_seed(0)
    trunk = probes.FrozenTrunk(define_G(), ["conv1"])
    rgb = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    rgb[1] = 100  # grayscale
    feats, keep = probes.batch_features(trunk, rgb, 0.0, probes.pool_corrected)
    assert keep.tolist() == [True, False, True] and feats["conv1"].shape == (2, 9216)
    feats, keep = probes.batch_features(trunk, torch.full((2, 3, 16, 16), 7, dtype=torch.uint8), 0.0,
                                        probes.pool_corrected)
    assert feats is None and keep.tolist() == [False, False]


def test_topk_counts_hits_with_k_capped_at_the_class_count():
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.6, 0.1, 0.3]])
    labels = torch.tensor([1, 1, 0, 2])  # ranks of the labels: 1, 2, 3, 2
    hits = topk_correct(scores, labels, (1, 2, 5))  # k = 5 > 3 classes counts every sample
    assert hits.dtype == torch.int64 and hits.tolist() == [1, 3, 4]


def test_seeded_views_reproducible_and_rng_untouched(setup):
    _, data = setup
    from data.datasets import ImageFolderDataset
    from data.transforms import train_transform

    dataset = ImageFolderDataset(str(data / "train"), train_transform(32, 24))
    views = SeededViews(dataset, [0, 5], views=2, seed=3, salt="train")
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = [views[i][0] for i in range(len(views))]
    assert torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(a, b[0]) for a, b in zip(first, [views[i] for i in range(4)]))
    assert not torch.equal(first[0], first[2])  # another view of the same image
    views.set_epoch(1)
    assert not torch.equal(first[0], views[0][0])


# ----------------------------------------------------------------------------------------------
# Corrected protocol end to end
# ----------------------------------------------------------------------------------------------

def test_corrected_beats_chance_and_writes_outputs(corrected_run):
    results = json.loads((corrected_run / "results.json").read_text())
    assert results["protocol"] == "corrected" and results["num_classes"] == 4
    assert results["classes"] == list(CLASSES) and results["best_criterion"] == "val_top1"
    assert list(results["layers"]) == list(probes.LAYERS)
    for layer, r in results["layers"].items():
        assert set(r) >= {"val_top1", "val_top5", "train_top1", "val_loss", "train_loss", "best_epoch", "dim"}
        assert r["dim"] == probes.feature_dim(layer) and 0 <= r["val_top1"] <= r["val_top5"] <= 1
        assert r["val_top5"] == 1.0  # 4 classes: top-5 covers all
    # Chance is 0.25 (4 balanced classes, 16 validation images). Random conv features of the
    # lightness layout give >= 0.875 on conv2..conv4 here; require 0.75 on the best layer.
    assert max(r["val_top1"] for r in results["layers"].values()) >= 0.75
    assert results["data"]["grayscale_dropped"] == {"train": 1, "val": 0}
    assert results["data"]["train_samples"] == 32 and results["data"]["val_samples"] == 16
    # One JSON line per epoch with every metric of every layer.
    log = read_jsonl(corrected_run / "log.jsonl")
    assert [r["epoch"] for r in log] == list(range(30))
    assert set(log[0]["layers"]["conv3"]) == set(METRICS)
    assert log[0]["lr"] == pytest.approx(1e-3) and log[-1]["lr"] < 1e-5  # cosine decay
    assert log[-1]["layers"] == {layer: {m: results["layers"][layer][m] for m in METRICS}
                                 for layer in probes.LAYERS}
    # Best and last heads: standardisation + linear, loadable safely.
    for layer in probes.LAYERS:
        for which in ("best", "last"):
            state = torch.load(corrected_run / f"{layer}_{which}.pth", weights_only=True)
            assert list(state) == ["mean", "std", "linear.weight", "linear.bias"]
            assert state["linear.weight"].shape == (4, probes.feature_dim(layer))
    with Image.open(corrected_run / "accuracy_by_layer.png") as img:
        assert img.size[0] > 300
    # TensorBoard scalars only when tensorboard is installed (it is optional).
    if importlib.util.find_spec("tensorboard") is None:
        assert not (corrected_run / "tensorboard").exists()
    else:
        assert any(f.startswith("events.out.tfevents") for f in os.listdir(corrected_run / "tensorboard"))
    assert "protocol: corrected" in (corrected_run / "opt.txt").read_text()


def test_rerun_reuses_cache_without_backbone(setup, corrected_run, tmp_path, monkeypatch):
    root, data = setup
    reference = json.loads((corrected_run / "results.json").read_text())
    cache_files = sorted(os.listdir(corrected_run / "feature_cache"))
    assert len(cache_files) == 2 and cache_files[0].startswith("train_") and cache_files[1].startswith("val_")
    entry = torch.load(corrected_run / "feature_cache" / cache_files[0], weights_only=True)
    assert entry["features"]["conv1"].dtype == torch.bfloat16 and entry["features"]["conv1"].shape == (32, 9216)

    counter = BackboneCounter(monkeypatch)
    rerun = tmp_path / "rerun"
    args = probe_args(data, root / "ckpt", rerun, "--niter", "30", "--cache_dir", str(corrected_run / "feature_cache"))
    assert tlc.main(args) == 0
    assert counter.calls == 0
    results = json.loads((rerun / "results.json").read_text())
    assert results["layers"] == reference["layers"]
    assert results["data"]["features_from_cache"] == {"train": True, "val": True}

    assert tlc.main(args + ["--no_cache", "--niter", "1"]) == 0  # bypass: the backbone runs (3 + 1 batches of 16)
    assert counter.calls == 4 and len(os.listdir(corrected_run / "feature_cache")) == 2  # nothing written

    counter.calls = 0  # another layer set is another key: extracted (and cached) anew
    assert tlc.main(args + ["--layers", "conv1", "conv3", "--niter", "2"]) == 0
    assert counter.calls == 4 and len(os.listdir(corrected_run / "feature_cache")) == 4
    assert list(json.loads((rerun / "results.json").read_text())["layers"]) == ["conv1", "conv3"]

    counter.calls = 0  # 2 augmented views per training image: 66 images in 5 batches, val reused
    assert tlc.main(args + ["--layers", "conv1", "conv3", "--niter", "1", "--train_augment", "2"]) == 0
    assert counter.calls == 5 and len(os.listdir(corrected_run / "feature_cache")) == 5
    data_info = json.loads((rerun / "results.json").read_text())["data"]
    assert data_info["train_samples"] == 64 and data_info["grayscale_dropped"]["train"] == 2
    assert data_info["features_from_cache"] == {"train": False, "val": True}


def test_cache_key_tracks_checkpoint_data_and_transform(tmp_path):
    base = dict(checkpoint="c.pth", checkpoint_sha1="a", dataroot="d", files_sha1="f", num_files=3,
                indices_sha1="i", transform={"kind": "train_random", "views": 1, "seed": 0}, layers=["conv1"],
                mask_cent=0.5, dtype="bfloat16")
    path = feature_cache.cache_path(str(tmp_path), "train", feature_cache.cache_key(**base))
    for change in (dict(checkpoint_sha1="b"), dict(files_sha1="g"), dict(transform={"kind": "train_random", "views": 2,
                   "seed": 0}), dict(layers=["conv1", "conv2"]), dict(mask_cent=0.0), dict(dtype="float32"),
                   dict(indices_sha1="j")):
        assert feature_cache.cache_path(str(tmp_path), "train", feature_cache.cache_key(**{**base, **change})) != path
    # A file holding another key, or garbage, is a miss.
    key = feature_cache.cache_key(**base)
    feature_cache.save_cache(path, feature_cache.cache_key(**{**base, "files_sha1": "g"}), {"conv1": torch.zeros(1, 2)},
                      torch.zeros(1, dtype=torch.long), 0, [])
    assert feature_cache.load_cache(path, key) is None
    with open(path, "wb") as f:
        f.write(b"not a torch file")
    assert feature_cache.load_cache(path, key) is None
    feature_cache.save_cache(path, key, {"conv1": torch.ones(1, 2)}, torch.zeros(1, dtype=torch.long), 0,
                      [SkippedImage("/d/x.jpg", "empty file (0 bytes)")])
    entry = feature_cache.load_cache(path, key)
    assert torch.equal(entry["features"]["conv1"], torch.ones(1, 2))
    assert entry["unreadable"] == [["/d/x.jpg", "empty file (0 bytes)"]]


# ----------------------------------------------------------------------------------------------
# Fork protocol
# ----------------------------------------------------------------------------------------------

def test_fork_protocol_layout(tmp_path):
    data = tmp_path / "data"
    make_layout_dataset(data, per_class_train=2, per_class_val=1, size=64)
    save_random_generator(tmp_path / "ckpt", "rand")
    out = tmp_path / "fork"
    args = probe_args(data, tmp_path / "ckpt", out, "--protocol", "fork", "--niter", "2", "--loadSize", "64",
                      "--fineSize", "64", "--batch_size", "3", "--max_dataset_size", "5", "--layers", "conv1",
                      "conv4")
    assert tlc.main(args) == 0
    names = sorted(os.listdir(out))
    for block in ("model1", "model4"):
        assert {f"{block}_best.pth", f"{block}_e0.pth", f"{block}_e1.pth"} <= set(names)
        state = torch.load(out / f"{block}_e1.pth", weights_only=True)
        assert list(state) == ["0.weight", "0.bias"]
        dim = 9216 if block == "model1" else 8192
        assert state["0.weight"].shape == (4, dim) and state["0.bias"].shape == (4,)
    assert not any(n.startswith(("model2", "model3", "model5", "conv")) for n in names)
    results = json.loads((out / "results.json").read_text())
    assert results["protocol"] == "fork" and results["num_classes"] == 4 and results["best_criterion"] == "val_loss"
    # 5 images per epoch -> ceil(5 / 3) = 2 batches of 3: 6 training and 4 (all) validation images.
    assert results["data"]["train_samples_per_epoch"] == 6 and results["data"]["val_samples_per_epoch"] == 4
    log = read_jsonl(out / "log.jsonl")
    assert len(log) == 2 and set(log[1]["layers"]) == {"conv1", "conv4"}
    for r in results["layers"].values():
        # Double softmax: cross-entropy of 4-way probabilities is confined to [log(e + 3) - 1, log(e + 3)]
        # per batch; the 0.0-seeded average over 2 batches scales it by 2/3.
        low, high = np.log(np.e + 3) - 1, np.log(np.e + 3)
        assert 2 / 3 * low - 1e-6 <= r["train_loss"] <= 2 / 3 * high + 1e-6
        # Every accuracy is a mean over [0.0, batch 1, batch 2] (the fork's seeded list).
        assert r["train_top1"] <= 2 / 3 + 1e-9 and r["train_top5"] == pytest.approx(2 / 3)
    assert (out / "accuracy_by_layer.png").is_file()


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------

def test_mismatched_class_sets_one_line_error(setup, tmp_path, capsys):
    root, data = setup
    make_layout_dataset(tmp_path / "other", per_class_train=1, per_class_val=1, classes=("bright_top", "disc", "zebra",
                                                                                     "stripes"))
    args = probe_args(data, root / "ckpt", tmp_path / "out")
    args[args.index("--dataroot_validation") + 1] = str(tmp_path / "other" / "val")
    assert tlc.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: train and validation class sets differ (4 vs 4 classes)")
    assert "only in" in err[0] and "bright_bottom" in err[0] and "zebra" in err[0]
    assert not (tmp_path / "out").exists()  # checked before any output is written


def test_missing_checkpoint_and_empty_folder_one_line_errors(setup, tmp_path, capsys):
    root, data = setup
    assert tlc.main(probe_args(data, tmp_path / "nowhere", tmp_path / "out")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such checkpoint file" in err[0] and err[0].startswith("error: ")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    args = probe_args(data, root / "ckpt", tmp_path / "out")
    args[args.index("--dataroot") + 1] = str(tmp_path / "empty")
    assert tlc.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no images found" in err[0]
    with pytest.raises(SystemExit) as exit_info:  # the fork's pooling needs 64 px crops
        tlc.main(probe_args(data, root / "ckpt", tmp_path / "out", "--protocol", "fork"))
    assert exit_info.value.code == 2 and "--fineSize >= 64" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# The study's shell script
# ----------------------------------------------------------------------------------------------

def test_shell_script_smoke_two_models_present(tmp_path):
    data = tmp_path / "data"
    make_layout_dataset(data, per_class_train=4, per_class_val=2, size=32)
    save_random_generator(tmp_path / "ckpt", "siggraph_caffemodel", seed=0)
    save_random_generator(tmp_path / "ckpt", "siggraph_reg2_sat", seed=1)
    env = dict(os.environ, PYTHON=sys.executable, DATAROOT=str(data / "train"), DATAROOT_VALIDATION=str(data / "val"),
               CHECKPOINTS_DIR_PRETRAINED=str(tmp_path / "ckpt"), CHECKPOINTS_DIR_SATURATION=str(tmp_path / "ckpt"),
               CHECKPOINTS_DIR_STYLIZED=str(tmp_path / "stylized"), CHECKPOINTS_DIR_COCO=str(tmp_path / "coco"),
               OUT_ROOT="probes", NITER="3", GPU_IDS="-1",
               EXTRA_ARGS="--loadSize 32 --fineSize 32 --batch_size 16 --num_threads 0")
    proc = subprocess.run(["bash", os.path.join(REPO, "train_linear_classifiers.sh")], cwd=tmp_path,
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        f"skipping stylized: no checkpoint at {tmp_path}/stylized/siggraph_reg2/latest_net_G.pth",
        f"skipping coco: no checkpoint at {tmp_path}/coco/siggraph_reg2/latest_net_G.pth"]
    out = tmp_path / "probes"
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["pretrained", "saturation"]
    for model, mask_cent in (("pretrained", 0.0), ("saturation", 0.5)):
        results = json.loads((out / model / "results.json").read_text())
        assert results["mask_cent"] == mask_cent and results["epochs"] == 3 and results["protocol"] == "corrected"
        assert list(results["layers"]) == list(probes.LAYERS)
        assert (out / model / "accuracy_by_layer.png").is_file()
    summary = (out / "summary.md").read_text()
    assert "| pretrained | corrected |" in summary and "| saturation | corrected |" in summary
    assert (out / "summary.png").is_file()


def test_which_epoch_dtype_subsets_lr_seed_and_head_batch(setup, tmp_path, monkeypatch):
    """The remaining flags each have their effect: --which_epoch picks the file, --cache_dtype the
    stored dtype, --max_dataset_size_validation the number of validation images, --lr 0 leaves the
    heads at their seeded init, --seed and --head_batch_size change the training."""
    root, data = setup
    ckpt = tmp_path / "ck"
    torch.manual_seed(0)
    save_network(define_G(), str(ckpt / "rand" / "3_net_G.pth"))  # only epoch 3 exists
    cache = tmp_path / "cache"

    def run(out, *extra):
        args = probe_args(data, ckpt, tmp_path / out, "--which_epoch", "3", "--layers", "conv2", "--niter", "2",
                          "--cache_dir", str(cache), "--cache_dtype", "float32", "--max_dataset_size_validation", "5",
                          *extra)
        assert tlc.main(args) == 0
        return json.loads((tmp_path / out / "results.json").read_text())

    frozen = run("frozen", "--lr", "0", "--seed", "1")
    assert frozen["data"]["val_samples"] == 5 and frozen["checkpoint"].endswith("3_net_G.pth")
    entry = torch.load(cache / sorted(os.listdir(cache))[0], weights_only=True)
    assert entry["features"]["conv2"].dtype == torch.float32
    last = torch.load(tmp_path / "frozen" / "conv2_last.pth", weights_only=True)
    torch.manual_seed(12345)  # the head's init must come from --seed, not the global RNG
    again = run("frozen_again", "--lr", "0", "--seed", "1")
    assert all(torch.equal(v, torch.load(tmp_path / "frozen_again" / "conv2_last.pth", weights_only=True)[k])
               for k, v in last.items())
    assert again["layers"]["conv2"]["val_loss"] == frozen["layers"]["conv2"]["val_loss"]
    # lr 0: nothing is learned, every epoch is the same
    log = read_jsonl(tmp_path / "frozen" / "log.jsonl")
    assert len(log) == 2 and json.dumps(log[0]["layers"]["conv2"]["val_loss"]) == json.dumps(log[1]["layers"]["conv2"]["val_loss"])

    counter = BackboneCounter(monkeypatch)
    a = run("a", "--seed", "1")
    c = run("c", "--seed", "1", "--head_batch_size", "7")
    assert counter.calls == 0  # both from the float32 cache written by the first run
    b = run("b", "--seed", "2")
    assert counter.calls > 0  # the seed also draws the augmented training views: a new cache entry
    assert a["layers"]["conv2"]["val_loss"] != b["layers"]["conv2"]["val_loss"]
    assert a["layers"]["conv2"]["val_loss"] != c["layers"]["conv2"]["val_loss"]
    assert a["layers"]["conv2"]["val_loss"] != frozen["layers"]["conv2"]["val_loss"]
