"""test_sweep.py and evaluation/sweep.py: the 26 hint levels, batching, outputs, determinism (CPU, 32 px)."""
import csv
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import test_sweep
from data.datasets import eval_subset
from evaluation import sweep as sweep_engine
from models.networks import define_G
from models.pix2pix_model import Pix2PixModel
from tests.browser import assert_page_ok
from tests.helpers import copy_checkpoint
from tests.oracles import gray_baseline_psnr
from util.checkpoint import save_network
from util.hints import ColorizationBatch
from util.image import to_uint8
from util.metrics import psnr_uint8
from data.transforms import eval_transform
from evaluation.sweep import (PSNR_CAP_DB, REFERENCE_NPY, batch_psnr, cap_psnr, load_reference,
                        plot_sweep, read_csv, read_csv_baseline, summarize, sweep_hints)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The paper's 26 hint counts: the sweep must use them (test_sweep_outputs reads them from its files).
LEVELS = [0, 1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 32, 40, 50, 63, 79, 100, 126, 158, 200, 251, 316, 398, 501]
NAME = "sweep_model"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_data, random_generator):
    """data/: the shared sample data (data/val: 4 flat 40 px images); a random-init checkpoint
    <ckpt>/<NAME>/latest_net_G.pth."""
    root = tmp_path_factory.mktemp("sweep")
    (root / "data").symlink_to(tiny_data, target_is_directory=True)
    copy_checkpoint(random_generator, root / "ckpt", NAME)
    return root


def sweep_args(root, results, *extra):
    return ["--name", NAME, "--checkpoints_dir", str(root / "ckpt"), "--results_dir", str(results),
            "--dataroot", str(root / "data" / "val"), "--loadSize", "32", "--how_many", "3", "--gpu_ids", "-1",
            "--sample_Ps", "6", "--num_threads", "0", *extra]


def tree(folder):
    """{relative path: (size, mtime_ns)} of every file below folder."""
    out = {}
    for dirpath, _dirs, files in os.walk(folder):
        for f in files:
            st = os.stat(os.path.join(dirpath, f))
            out[os.path.relpath(os.path.join(dirpath, f), folder)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def first_run(setup):
    """One default run; returns (results folder, stdout, checkpoint tree before, after)."""
    before = tree(setup / "ckpt")
    results = setup / "results_a"
    assert test_sweep.main(sweep_args(setup, results)) == 0
    return results / NAME / "sweep_latest", before, tree(setup / "ckpt")


def test_reference_csv_matches_the_npy_and_the_published_curve():
    assert REFERENCE_NPY == os.path.join(REPO, "resources", "psnrs_siggraph.npy")  # shipped, not /work/shared
    psnrs = np.load(REFERENCE_NPY)
    assert psnrs.shape == (1000, 26) and np.isfinite(psnrs).all()
    points, mean, se = read_csv(os.path.join(REPO, "resources", "psnrs_siggraph.csv"))
    assert points == LEVELS
    np.testing.assert_allclose(mean, psnrs.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(se, psnrs.std(axis=0, ddof=1) / np.sqrt(1000), atol=1e-6)
    assert abs(mean[0] - 24.435) < 1e-3 and abs(mean[-1] - 32.139) < 1e-3  # the reference curve's first and last points
    assert abs(se[0] - 0.142) < 1e-3 and abs(se[-1] - 0.139) < 1e-3
    ref_points, ref_mean, ref_se = load_reference()
    assert ref_points == LEVELS
    np.testing.assert_allclose(ref_mean, mean, atol=1e-6)


def test_summary_and_psnr_cap():
    mean, se = summarize(np.array([[20.0, 30.0]]))
    assert mean.tolist() == [20.0, 30.0] and se.tolist() == [0.0, 0.0]  # one image: SE 0
    mean, se = summarize(np.array([[20.0], [22.0]]))
    assert mean[0] == 21.0 and se[0] == pytest.approx(np.std([20, 22], ddof=1) / np.sqrt(2))
    capped = cap_psnr(np.array([np.inf, 101.0, 35.5]))
    assert capped.tolist() == [PSNR_CAP_DB, PSNR_CAP_DB, 35.5]
    same = np.zeros((1, 4, 4, 3), np.uint8)
    assert np.isinf(psnr_uint8(same, same)[0]) and cap_psnr(psnr_uint8(same, same))[0] == PSNR_CAP_DB


def _model(setup):
    opt = test_sweep.SweepOptions().parse(sweep_args(setup, setup / "unused"))
    model = Pix2PixModel(opt, torch.device("cpu"))
    model.setup()
    model.eval()
    return model


def _image(setup):
    path = sorted((setup / "data" / "val").iterdir())[0]
    arr = np.asarray(Image.open(path).convert("RGB").resize((32, 32)), dtype=np.float32) / 255
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def _row(batch, i):
    return ColorizationBatch(batch.A[i:i + 1], batch.B[i:i + 1], batch.hint_B[i:i + 1], batch.mask_B[i:i + 1],
                             batch.keep[i:i + 1])


def test_batched_levels_equal_one_level_at_a_time(setup):
    """The 26 copies in one batch give the same PSNRs as 26 single-image passes with the same hints,
    and the same as test.py's route (set_input, forward, visuals 'real' vs 'fake_reg')."""
    model, rgb = _model(setup), _image(setup)
    batch = sweep_hints(rgb, LEVELS, sample_Ps=[6], mask_cent=0.5, generator=torch.Generator().manual_seed(3))
    masks = (batch.mask_B + 0.5).flatten(1)
    assert masks.shape[0] == 26 and masks[0].sum() == 0 and masks[1].sum() == 36  # 0 hints, one 6x6 patch
    covered = masks.sum(1)  # each copy has its own independent hints, so only bounds hold
    assert (covered <= 36 * torch.tensor(LEVELS)).all() and covered[-1] > 0.9 * 32 * 32
    batched = batch_psnr(model, batch)
    some = [0, 1, 9, 18, 25]  # single passes of the 34M-parameter net are slow on CPU: a few levels
    single = np.array([batch_psnr(model, _row(batch, i))[0] for i in some])
    np.testing.assert_allclose(batched[some], single, rtol=0, atol=1e-3)  # uint8 PSNR: ~1e-3 dB across kernels
    model.set_input(batch)
    model.test(compute_losses=False)
    visuals = model.get_current_visuals()
    np.testing.assert_allclose(batched, psnr_uint8(to_uint8(visuals["real"]), to_uint8(visuals["fake_reg"])),
                               rtol=0, atol=1e-9)

    class HintCopier(torch.nn.Module):
        """Predicts the hint colours (0 elsewhere): PSNR then depends strongly on the hint count."""

        def forward(self, A, hint_B, mask_B):
            return None, hint_B

    model.netG = HintCopier()
    batched = batch_psnr(model, batch)
    single = np.array([batch_psnr(model, _row(batch, i))[0] for i in range(26)])
    # The same per-image function; only the batch size differs: bounded as above. Rows mixed up
    # would be off by decibels (the last assertion).
    np.testing.assert_allclose(batched, single, rtol=0, atol=1e-3)
    assert batched[-1] > batched[0] + 3  # all hints >> no hints: rows are not mixed up


def test_sweep_outputs(first_run):
    out_dir = first_run[0]
    assert sorted(os.listdir(out_dir)) == ["index.html", "sweep.csv", "sweep.json", "sweep.png"]
    with open(out_dir / "sweep.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["num_points", "psnr_mean", "psnr_se", "gray_psnr_mean", "gray_psnr_se"] and len(rows) == 27
    assert [int(r[0]) for r in rows[1:]] == LEVELS
    record = json.loads((out_dir / "sweep.json").read_text())
    psnr = np.array(record["psnr"])
    assert psnr.shape == (3, 26) and np.isfinite(psnr).all() and (psnr > 5).all()
    assert record["num_points"] == LEVELS and record["num_images"] == 3 and record["skipped"] == []
    assert len(record["paths"]) == 3 and all(p.endswith(".png") for p in record["paths"])
    assert (record["name"], record["which_epoch"], record["loadSize"], record["sample_Ps"], record["seed"],
            record["mask_cent"], record["how_many"]) == (NAME, "latest", 32, [6], 0, 0.5, 3)
    np.testing.assert_allclose(record["psnr_mean"], psnr.mean(0))
    np.testing.assert_allclose(record["psnr_se"], psnr.std(0, ddof=1) / np.sqrt(3))
    _, mean, se = read_csv(out_dir / "sweep.csv")
    np.testing.assert_allclose(mean, psnr.mean(0), atol=1e-6)
    with Image.open(out_dir / "sweep.png") as png:
        assert png.size[0] >= 400


def test_sweep_gray_baseline_equals_skimage(setup, first_run):
    """The no-colour baseline of every swept image (sweep.json) against skimage's float64 Lab ->
    ab = 0 -> sRGB with the same uint8 truncation (tests/oracles.py) on the same 32 px images
    (tolerance: see test_test_script's oracle test); sweep.csv repeats its mean and SE on every
    row, the page states it."""
    out_dir = first_run[0]
    record = json.loads((out_dir / "sweep.json").read_text())
    transform = eval_transform(32)
    photos = [transform(Image.open(setup / "data" / "val" / path).convert("RGB")).permute(1, 2, 0).numpy()
              for path in record["paths"]]
    np.testing.assert_allclose(record["gray_psnr"], [gray_baseline_psnr(photo) for photo in photos], rtol=0, atol=0.05)
    mean, se = summarize(np.array(record["gray_psnr"])[:, None])
    assert (record["gray_psnr_mean"], record["gray_psnr_se"]) == pytest.approx((mean[0], se[0]), rel=1e-12)
    with open(out_dir / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["gray_psnr_mean"], r["gray_psnr_se"]) for r in rows} == {(f"{mean[0]:.6f}", f"{se[0]:.6f}")}
    assert read_csv_baseline(out_dir / "sweep.csv") == pytest.approx((mean[0], se[0]), abs=1e-6)
    assert read_csv_baseline(os.path.join(REPO, "resources", "psnrs_siggraph.csv")) is None  # no such columns
    assert f"no colour (gray, ab = 0), the same images and metric: {mean[0]:.2f} ± {se[0]:.2f} dB" in (
        out_dir / "index.html").read_text()


def test_sweep_leaves_the_checkpoint_folder_untouched(first_run):
    """Nothing copied, nothing rewritten."""
    out_dir, before, after = first_run
    assert before == after and list(before) == [os.path.join(NAME, "latest_net_G.pth")]
    assert not any(f.endswith(".pth") for f in os.listdir(out_dir))


def test_sweep_page(first_run):
    out_dir = first_run[0]
    assert_page_ok(out_dir / "index.html", min_images=1)
    html = (out_dir / "index.html").read_text()
    assert html.count("<tr>") == 27 and "SIGGRAPH17 (reference)" in html and "24.43 ± 0.14" in html


def test_rerun_is_identical_and_batch_size_does_not_matter(setup, first_run, capsys):
    out_dir = first_run[0]
    results = setup / "results_b"
    assert test_sweep.main(sweep_args(setup, results)) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-2].startswith("mean PSNR [dB] at 0: ") and printed[-2].count(": ") == 26
    assert printed[-1] == f"results in {results / NAME / 'sweep_latest'}"
    again = results / NAME / "sweep_latest"
    for name in ("sweep.csv", "sweep.json"):
        assert (again / name).read_bytes() == (out_dir / name).read_bytes()
    # Hints are drawn image by image, so several images per forward pass change nothing.
    assert test_sweep.main(sweep_args(setup, setup / "results_c", "--batch_size", "3")) == 0
    batched = json.loads((setup / "results_c" / NAME / "sweep_latest" / "sweep.json").read_text())
    first = json.loads((out_dir / "sweep.json").read_text())
    assert batched["paths"] == first["paths"]
    np.testing.assert_allclose(batched["psnr"], first["psnr"], rtol=0, atol=1e-3)


def test_seed_picks_the_subset(setup, first_run):
    first = json.loads((first_run[0] / "sweep.json").read_text())
    names = sorted(os.listdir(setup / "data" / "val"))
    assert first["paths"] == [names[i] for i in eval_subset(len(names), 3, seed=0)]  # fixed and ordered
    assert eval_subset(len(names), 3, seed=0) != eval_subset(len(names), 3, seed=1)
    results = setup / "results_seed"
    assert test_sweep.main(sweep_args(setup, results, "--seed", "1")) == 0
    other = json.loads((results / NAME / "sweep_latest" / "sweep.json").read_text())
    assert other["paths"] == [names[i] for i in eval_subset(len(names), 3, seed=1)] != first["paths"]


def test_identical_images_unreadable_files_and_small_folders(setup, tmp_path, capsys):
    """A black image colorized by a model that predicts no colour is reproduced exactly (infinite
    PSNR): it is capped at 100 dB and every output stays finite. A broken file is skipped with a
    warning; a folder smaller than --how_many is used whole."""
    data = tmp_path / "data"
    data.mkdir()
    Image.new("RGB", (40, 40)).save(data / "a_black.png")
    Image.open(sorted((setup / "data" / "val").iterdir())[0]).save(data / "b_photo.png")
    (data / "c_broken.png").write_bytes(b"not an image")
    torch.manual_seed(0)
    net = define_G()
    with torch.no_grad():
        net.model_out[0].weight.zero_()
        net.model_out[0].bias.zero_()  # out_reg = tanh(0) = 0: grayscale output
    save_network(net, str(tmp_path / "ckpt" / "gray" / "latest_net_G.pth"))
    args = ["--name", "gray", "--checkpoints_dir", str(tmp_path / "ckpt"), "--results_dir", str(tmp_path / "res"),
            "--dataroot", str(data), "--loadSize", "32", "--how_many", "10", "--gpu_ids", "-1", "--num_threads", "0"]
    assert test_sweep.main(args) == 0
    captured = capsys.readouterr()
    assert "holds 3 images, fewer than --how_many 10; using all of them" in captured.out
    out_dir = tmp_path / "res" / "gray" / "sweep_latest"
    assert captured.err.startswith(f"warning: skipping unreadable image {data / 'c_broken.png'}: ")
    listing = out_dir / "skipped_images.txt"
    assert captured.out.splitlines()[-1] == f"skipped 1 unreadable image file(s); listed in {listing}"
    record = json.loads((out_dir / "sweep.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert record["paths"] == ["a_black.png", "b_photo.png"] and record["skipped"] == ["c_broken.png"]
    assert record["psnr"][0] == [PSNR_CAP_DB] * 26 and record["num_capped"] == 26
    assert max(record["psnr"][1]) < PSNR_CAP_DB
    _, mean, se = read_csv(out_dir / "sweep.csv")
    assert np.isfinite(mean).all() and np.isfinite(se).all() and (mean > 50).all()
    assert_page_ok(out_dir / "index.html", min_images=1)


def test_plot_several_models(tmp_path):
    path = plot_sweep([("a", LEVELS, np.linspace(25, 32, 26), np.full(26, 0.1)),
                       ("b", LEVELS[:5], [24, 25, 26, 27, 28], [0.2] * 5)], str(tmp_path / "many.png"), reference=False)
    with Image.open(path) as png:
        assert png.format == "PNG"


def test_plot_draws_each_baseline_as_a_labelled_line(tmp_path, monkeypatch):
    """Each no-colour baseline is a horizontal line in the legend beside the curves and the reference."""
    from matplotlib.axes import Axes

    legends = []
    original = Axes.legend
    monkeypatch.setattr(Axes, "legend", lambda ax, *a, **k: legends.append(
        [(t, ln) for ln, t in zip(*ax.get_legend_handles_labels())]) or original(ax, *a, **k))
    plot_sweep([("a", LEVELS, np.linspace(25, 32, 26), np.full(26, 0.1))], str(tmp_path / "b.png"),
               baselines=[("no colour (gray, ab = 0)", 21.5)])
    entries = dict(legends[0])
    assert list(entries) == ["SIGGRAPH17 (reference)", "a", "no colour (gray, ab = 0)"]
    assert set(entries["no colour (gray, ab = 0)"].get_ydata()) == {21.5}  # flat at the baseline


@pytest.mark.parametrize("case", ["checkpoint", "dataroot"])
def test_missing_inputs_are_one_line_errors(setup, tmp_path, capsys, case):
    args = sweep_args(setup, tmp_path / "res")
    if case == "checkpoint":
        args += ["--which_epoch", "7"]
    else:
        args += ["--dataroot", str(tmp_path / "nowhere")]
    assert test_sweep.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert ("7_net_G.pth: no such checkpoint file" if case == "checkpoint" else "dataset folder not found") in err[0]
    assert not (tmp_path / "res").exists()


def test_colour_hint_and_page_options_reach_the_sweep(setup, tmp_path, monkeypatch):
    """--mask_cent (0 for the caffemodel weights), the Lab constants and --sample_Ps reach the hint
    batches; --which_epoch picks the checkpoint and names the output folder."""
    import shutil

    os.makedirs(setup / "ckpt" / "other", exist_ok=True)
    shutil.copy(setup / "ckpt" / NAME / "latest_net_G.pth", setup / "ckpt" / "other" / "5_net_G.pth")
    seen = []
    real = sweep_engine.sweep_hints
    monkeypatch.setattr(sweep_engine, "sweep_hints", lambda rgb, counts, **kw: seen.append(kw) or real(rgb, counts, **kw))
    args = sweep_args(setup, tmp_path, "--mask_cent", "0", "--ab_norm", "100", "--l_norm", "90", "--l_cent", "45",
                      "--how_many", "1", "--which_epoch", "5")
    args[args.index(NAME)] = "other"
    assert test_sweep.main(args) == 0
    assert len(seen) == 1
    assert (seen[0]["mask_cent"], seen[0]["ab_norm"], seen[0]["l_norm"], seen[0]["l_cent"], list(seen[0]["sample_Ps"])) \
        == (0, 100, 90, 45, [6])
    record = json.loads((tmp_path / "other" / "sweep_5" / "sweep.json").read_text())
    assert record["mask_cent"] == 0 and record["checkpoint"].endswith("5_net_G.pth")
