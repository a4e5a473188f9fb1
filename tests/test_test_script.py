"""End-to-end tests of test.py (HTML page + metrics.json) on tiny real photos, CPU, in-process."""
import json
import math
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from evaluation import intrinsic
from models.networks import define_G
from tests.browser import assert_page_ok, page_width
from tests.helpers import METRIC_KEYS, load_test_script
from tests.oracles import gray_baseline_psnr
from util import metrics
from util.checkpoint import save_network

test_script = load_test_script()

LABELS = ["gray", "hint", "hint_ab", "fake_entr", "real", "fake_reg", "real_ab", "fake_ab_reg"]
KEYS = METRIC_KEYS


@pytest.fixture(scope="module")
def env(eval_env):
    """Tiny val photos (data/val: 4 flat 40x40 crops) and a seeded random-init checkpoint 'm'."""
    return eval_env


def run(env, results, *extra, dataroot=None, name="m"):
    args = ["--dataroot", str(dataroot or env / "data" / "val"), "--checkpoints_dir", str(env / "ckpt"),
            "--name", name, "--results_dir", str(results), "--loadSize", "32", "--how_many", "3",
            "--gpu_ids", "-1", "--num_threads", "0", *extra]
    return test_script.main(args)


def read_json(web_dir):
    with open(web_dir / "metrics.json") as f:
        return json.load(f, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


@pytest.fixture(scope="module")
def base(env):
    """The reference run: flat folder, 3 images, seed 0."""
    results = env / "res_a"
    assert run(env, results) == 0
    return results / "m" / "val_latest"


def test_metrics_json_record(base):
    report = read_json(base)
    assert report["name"] == "m" and report["which_epoch"] == "latest" and report["seed"] == 0
    assert report["how_many"] == 3 and report["num_images"] == 3
    assert report["num_skipped"] == 0 and report["skipped"] == []
    assert report["loadSize"] == 32 and report["mask_cent"] == 0.5 and report["device"] == "cpu"
    assert list(report["metrics"]) == KEYS
    assert [s["sample_p"] for s in report["settings"]] == [1.0, 0.125, 0.03125]


def test_metrics_json_per_image_values_and_summaries(base):
    settings = read_json(base)["settings"]
    paths = ["chelsea_000.png", "chelsea_001.png", "coffee_000.png"]  # first 3 in sorted order
    for setting in settings:
        assert setting["num_images"] == 3
        assert [image["path"] for image in setting["images"]] == paths
        assert [image["index"] for image in setting["images"]] == [0, 1, 2]
        for key in KEYS:
            values = [image[key] for image in setting["images"]]
            assert all(isinstance(v, float) and math.isfinite(v) for v in values), (key, values)
            mean, se = metrics.mean_and_se(values)
            assert setting[key] == {"mean": mean, "se": se}
        assert all(0 <= image["auc"] <= 1 and -1 <= image["ssim"] <= 1 for image in setting["images"])
        assert all(0 < image["entropy"] <= math.log(529) + 1e-6 for image in setting["images"])


def test_page_one_section_per_image_and_setting_with_the_8_visuals(base):
    """Title, one anchored section per (image, setting) with the 8 visuals in order; opt.txt."""
    html = (base / "index.html").read_text()
    assert "<title>Experiment = m, Phase = val, Epoch = latest</title>" in html
    for index in range(3):
        for tag in ("1p000", "0p125", "0p031"):
            anchor = f"{index:08d}_{tag}"
            assert f'id="{anchor}"' in html
            positions = [html.index(f'src="images/{anchor}_{label}.png"') for label in LABELS]
            assert positions == sorted(positions)
            for label in LABELS:
                assert (base / "images" / f"{anchor}_{label}.png").is_file()
    assert html.index('id="00000000_0p031"') < html.index('id="00000001_1p000"')  # image-major, as the original
    assert "PSNR " in html and "SSIM " in html
    assert (base / "opt.txt").is_file()


def test_metrics_recomputed_from_the_saved_pngs(base):
    """Every metric but entropy is a function of <id>_real.png and <id>_fake_reg.png; PSNR by hand.

    The hand computation sums the squared errors in another order than util.metrics.psnr_uint8, so
    the two differ in the last bits (1 ulp measured on an AMD EPYC machine): rel 1e-12 is ~1e4 ulp,
    while one pixel value off by 1 level moves the PSNR of a 32 x 32 image by ~1e-7 relative.
    """
    report = read_json(base)
    for setting in report["settings"]:
        for image in setting["images"]:
            anchor = intrinsic.image_id(image["index"], setting["sample_p"])
            real = np.asarray(Image.open(base / "images" / f"{anchor}_real.png"))
            fake = np.asarray(Image.open(base / "images" / f"{anchor}_fake_reg.png"))
            mse = np.mean((real.astype(np.float64) - fake.astype(np.float64)) ** 2)
            assert image["psnr"] == pytest.approx(20 * math.log10(255 / math.sqrt(mse)), rel=1e-12, abs=0)
            recomputed = intrinsic.image_metrics(real[None], fake[None], torch.tensor([image["entropy"]]))[0]
            assert list(recomputed) == KEYS
            assert recomputed == pytest.approx({key: image[key] for key in KEYS}, rel=1e-12, abs=1e-12)


def test_same_seed_identical_files_other_seed_changes_only_hinted_settings(base, env, capsys):
    assert run(env, env / "res_b") == 0  # another results folder: nothing of it leaks into the files
    out = capsys.readouterr().out
    for setting in read_json(base)["settings"]:  # the original's printout
        line = "p=%.3f: %.2f+/-%.2f" % (setting["sample_p"], setting["psnr"]["mean"], setting["psnr"]["se"])
        assert line + "\n" in out
    again = env / "res_b" / "m" / "val_latest"
    assert (again / "metrics.json").read_bytes() == (base / "metrics.json").read_bytes()
    assert (again / "index.html").read_bytes() == (base / "index.html").read_bytes()
    assert run(env, env / "res_c", "--seed", "5") == 0
    other = env / "res_c" / "m" / "val_latest"
    first, second = read_json(base)["settings"], read_json(other)["settings"]
    assert first[0]["images"] == second[0]["images"]  # p = 1: no hints, nothing random
    for tag in ("0p125", "0p031"):
        hints = [(base / "images" / f"{i:08d}_{tag}_hint_ab.png").read_bytes() != (
            other / "images" / f"{i:08d}_{tag}_hint_ab.png").read_bytes() for i in range(3)]
        assert any(hints), tag
    assert first[2]["images"] != second[2]["images"]


def test_nested_folder_batched_short_folder_and_unreadable_file(base, env, tmp_path, capsys):
    """A nested copy of the flat folder plus a broken file, --batch_size 2, --how_many beyond the folder."""
    nested = tmp_path / "nested"
    val = sorted((env / "data" / "val").iterdir())
    for sub, files in (("a", val[:2]), ("b", val[2:])):
        (nested / sub).mkdir(parents=True)
        for f in files:
            shutil.copy(f, nested / sub / f.name)
    (nested / "b" / "zz_broken.png").write_bytes(b"not a png")  # sorts last: indices 0..3 as in the flat run
    rc = run(env, tmp_path / "res", "--how_many", "10", "--batch_size", "2", dataroot=nested)
    captured = capsys.readouterr()
    assert rc == 0
    assert "--how_many 10" in captured.out and "holds 5 images" in captured.out
    web = tmp_path / "res" / "m" / "val_latest"
    listing = web / "skipped_images.txt"
    assert captured.out.splitlines()[-1] == f"skipped 1 unreadable image file(s); listed in {listing}"
    assert listing.read_text() == f"{nested / 'b' / 'zz_broken.png'}\n"
    assert captured.err == (f"warning: skipping unreadable image {nested / 'b' / 'zz_broken.png'}: "
                            "not an image file PIL can identify\n")
    report = read_json(web)
    assert report["num_images"] == 4 and report["num_skipped"] == 1 and report["skipped"] == ["b/zz_broken.png"]
    assert all(s["num_images"] == 4 for s in report["settings"])
    paths = [image["path"] for image in report["settings"][0]["images"]]
    assert paths == ["a/chelsea_000.png", "a/chelsea_001.png", "b/coffee_000.png", "b/coffee_001.png"]
    # Hints are drawn per image from (seed, index): the same as the flat, unbatched run, byte for byte;
    # the outputs agree up to the summation order of the batched forward pass.
    for name in sorted(os.listdir(base / "images")):
        if name.endswith(("_hint.png", "_hint_ab.png", "_real.png")):
            assert (web / "images" / name).read_bytes() == (base / "images" / name).read_bytes(), name
    for flat, batched in zip(read_json(base)["settings"], report["settings"]):
        for x, y in zip(flat["images"], batched["images"][:3]):
            assert x["index"] == y["index"]
            for key in KEYS:
                assert x[key] == pytest.approx(y[key], rel=1e-3, abs=1e-3), key


def test_identical_images_give_null_psnr(env, tmp_path, capsys):
    """Black images and a net whose regression output is exactly 0: real == fake_reg, PSNR = +inf."""
    black = tmp_path / "black"
    black.mkdir()
    for i in range(2):
        Image.new("RGB", (40, 40)).save(black / f"{i}.png")
    torch.manual_seed(0)
    net = define_G()
    torch.nn.init.zeros_(net.model_out[0].weight)
    torch.nn.init.zeros_(net.model_out[0].bias)
    save_network(net, str(env / "ckpt" / "zero" / "latest_net_G.pth"))
    assert run(env, tmp_path / "res", dataroot=black, name="zero") == 0
    assert "p=1.000: inf+/-nan" in capsys.readouterr().out
    text = (tmp_path / "res" / "zero" / "val_latest" / "metrics.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    for setting in read_json(tmp_path / "res" / "zero" / "val_latest")["settings"]:
        assert setting["psnr"] == {"mean": None, "se": None}
        assert setting["gray_baseline"]["psnr"] == {"mean": None, "se": None}  # black: gray == real
        assert setting["ssim"] == {"mean": 1.0, "se": 0.0} and setting["auc"] == {"mean": 1.0, "se": 0.0}
        assert setting["ciede2000"] == {"mean": 0.0, "se": 0.0}
        assert all(image["psnr"] is None for image in setting["images"])


def test_missing_checkpoint_and_missing_folder_are_one_line_errors(env, tmp_path, capsys):
    assert run(env, tmp_path, name="nope") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "latest_net_G.pth" in err[0]
    assert run(env, tmp_path, dataroot=tmp_path / "absent") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "absent" in err[0]


def test_page_loads_in_a_browser(base):
    assert_page_ok(base / "index.html", min_images=3 * 3 * len(LABELS))


def test_page_fits_a_1400_px_window(base):
    """The 8 visuals of a row at the default 256 px fit a 1400 x 900 window: no horizontal scrolling."""
    scroll, inner, images = page_width(base / "index.html", 1400, 900)
    assert inner == 1400 and scroll <= inner, (scroll, inner)
    assert len(images) == 3 * 3 * len(LABELS)
    assert all(width > 0 for _src, width in images), [src for src, width in images if width <= 0][:5]


def test_model_colour_and_page_options_are_used(env, tmp_path, monkeypatch, capsys):
    """--which_epoch picks the file and names the folder, --phase too; --suffix renames; the colour
    and hint options reach the batch; --display_winsize sizes the page; --verbose prints the net."""
    os.makedirs(env / "ckpt" / "m_s", exist_ok=True)
    shutil.copy(env / "ckpt" / "m" / "latest_net_G.pth", env / "ckpt" / "m_s" / "7_net_G.pth")
    seen = []
    real = intrinsic.get_colorization_data
    monkeypatch.setattr(intrinsic, "get_colorization_data", lambda rgb, **kw: seen.append(kw) or real(rgb, **kw))
    assert run(env, tmp_path, "--which_epoch", "7", "--suffix", "s", "--phase", "holdout", "--mask_cent", "0",
               "--ab_norm", "100", "--l_norm", "90", "--l_cent", "45", "--sample_Ps", "2", "3",
               "--display_winsize", "123", "--verbose", "--how_many", "1") == 0
    assert "SIGGRAPHGenerator(" in capsys.readouterr().out
    web = tmp_path / "m_s" / "holdout_7"
    report = read_json(web)
    assert report["name"] == "m_s" and report["which_epoch"] == "7" and report["mask_cent"] == 0
    assert len(seen) == 3  # one image, three settings
    for kw in seen:
        assert (kw["mask_cent"], kw["ab_norm"], kw["l_norm"], kw["l_cent"], list(kw["sample_Ps"])) == (0, 100, 90, 45, [2, 3])
    assert "width:123px" in (web / "index.html").read_text()


def generated_photos(folder, count=3, size=32, seed=0):
    """``count`` smooth random colour images (size x size PNGs: 4 x 4 random colours, bicubic)."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    photos = []
    for i in range(count):
        small = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
        photo = small.resize((size, size), Image.Resampling.BICUBIC)
        photo.save(folder / f"{i}.png")
        photos.append(np.asarray(photo))
    return photos


def test_gray_baseline_equals_skimage_on_generated_images(env, tmp_path, capsys):
    """The no-colour baseline in metrics.json, per image and setting, against skimage's float64
    Lab -> ab = 0 -> sRGB with the same truncation to uint8 (tests/oracles.py). The float32 and
    float64 colour conversions differ by ~1e-6, which moves a truncated value by 1 level at a few
    pixels: measured at most 0.019 dB (mean 0.006) over 15 such 32 x 32 images. Another gray (the
    mean of R, G and B) is 0.78-1.2 dB off, another image or a colorized one more."""
    photos = generated_photos(tmp_path / "photos")  # 32 px at --loadSize 32: no resizing
    assert run(env, tmp_path / "res", dataroot=tmp_path / "photos") == 0
    out = capsys.readouterr().out
    web = tmp_path / "res" / "m" / "val_latest"
    report = read_json(web)
    assert report["baseline"]["key"] == "gray_baseline" and report["baseline"]["metrics"] == [
        "psnr", "ssim", "colorfulness", "saturation", "auc", "ciede2000"]
    expected = [gray_baseline_psnr(photo) for photo in photos]
    for setting in report["settings"]:
        images = setting["images"]
        got = [image["gray_baseline"]["psnr"] for image in images]
        np.testing.assert_allclose(got, expected, rtol=0, atol=0.05)
        mean, se = metrics.mean_and_se(got)
        summary = setting["gray_baseline"]
        assert summary["label"] == "no colour (gray, ab = 0)" and summary["psnr"] == {"mean": mean, "se": se}
        assert summary["colorfulness"]["mean"] < 1 and summary["saturation"]["mean"] < 0.01  # (1 level at most)
        for image in images:  # scored from the very PNGs the page shows
            anchor = intrinsic.image_id(image["index"], setting["sample_p"])
            real, gray = (np.asarray(Image.open(web / "images" / f"{anchor}_{label}.png"))
                          for label in ("real", "gray"))
            recomputed = intrinsic.baseline_metrics(real[None], gray[None])[0]
            assert recomputed == pytest.approx(image["gray_baseline"], rel=1e-12, abs=1e-12)
    assert f"no colour (gray, ab = 0): {metrics.mean_and_se(got)[0]:.2f}+/-" in out
    html = (web / "index.html").read_text()
    assert html.index("no colour (gray, ab = 0)") < html.index('id="00000000_1p000"')  # the summary comes first
    assert f"{report['settings'][0]['gray_baseline']['psnr']['mean']:.3f}" in html
