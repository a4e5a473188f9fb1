"""Tests of colorize.py and inference/colorize.py on tiny images (CPU).

The generator is a seeded define_G() whose output layer is scaled up so that it predicts clearly
non-zero, spatially varying ab (a fresh init predicts ab ~ 1e-3, which would hide pipeline bugs).
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import colorize
from data.datasets import load_rgb
from models.networks import SIGGRAPHGenerator, define_G
from util.checkpoint import load_network, save_network
from util.color import lab_norm2rgb, rgb2lab, rgb2lab_norm
from inference.colorize import (BudgetError, Hint, HintError, check_budget, hints_from_json, network_size,
                                parse_hint)
from tests.helpers import save_vivid_generator, smooth_rgb
from util.image import to_uint8

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_vivid_generator(tmp_path_factory.mktemp("ckpt") / "net_G.pth")


def run(weights, *args):
    return colorize.main(["--checkpoint", str(weights), "--gpu_ids", "-1", *map(str, args)])



@pytest.fixture
def record_forward(monkeypatch):
    """Record (input_A, input_B, mask_B) of every generator call."""
    calls = []
    original = SIGGRAPHGenerator.forward

    def forward(self, input_A, input_B, mask_B):
        calls.append((input_A.clone(), input_B.clone(), mask_B.clone()))
        return original(self, input_A, input_B, mask_B)

    monkeypatch.setattr(SIGGRAPHGenerator, "forward", forward)
    return calls


def one_line_error(capsys):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# --- sizes and hint parsing (no network) ---------------------------------------------------------------

def test_network_size():
    assert network_size(199, 301, 32) == (32, 48)  # shorter side 32, aspect kept: 32 * 301/199 = 48.4 -> 48
    assert network_size(301, 199, 32) == (48, 32)
    assert network_size(256, 256, 250) == (248, 248)  # S rounded to the nearest multiple of 8
    assert network_size(100, 1000, 3) == (8, 80)  # at least 8
    assert network_size(199, 301, 0) == (200, 304)  # native: rounded up (padded)
    assert network_size(40, 48, 0) == (40, 48)
    assert network_size(1, 1, 0) == (8, 8)
    with pytest.raises(ValueError):
        network_size(10, 10, -1)


def test_parse_hints():
    assert parse_hint("10,20,#FF8000") == Hint(10, 20, (255, 128, 0), 1)
    assert parse_hint(" 3 , 4 ,#00ff00, 5") == Hint(3, 4, (0, 255, 0), 5)
    for text, message in (("1,2", "expected X,Y"), ("1,2,#ff0000,3,4", "expected X,Y"),
                          ("a,2,#ff0000", "X must be an integer"), ("1,2,#ff00", "#rrggbb"),
                          ("1,2,red", "#rrggbb"), ("-1,2,#ff0000", ">= 0"), ("1,2,#ff0000,0", "size must be >= 1")):
        with pytest.raises(HintError, match=message) as info:
            parse_hint(text)
        assert str(info.value).startswith(f"--hint {text}") and "\n" not in str(info.value)
    listed = [{"x": 1, "y": 2, "color": "#000000"}, {"x": 3, "y": 4, "color": "#ffffff", "size": 2}]
    expected = [Hint(1, 2, (0, 0, 0), 1), Hint(3, 4, (255, 255, 255), 2)]
    assert hints_from_json(listed) == expected and hints_from_json({"hints": listed}) == expected
    for bad, message in (({"points": []}, "expected a list"), ([{"x": 1, "y": 2}], "hint 0: missing color"),
                         ([{"x": 1, "y": 2, "color": "#000000", "colour": 1}], "unknown key"),
                         ([{"x": 1.5, "y": 2, "color": "#000000"}], "x must be an integer"),
                         ([{"x": True, "y": 2, "color": "#000000"}], "x must be an integer"),
                         ([[1, 2]], "expected an object")):
        with pytest.raises(HintError, match=message):
            hints_from_json(bad)


# --- inputs of every kind give an RGB output of the input's exact size ---------------------------------

def _gray(path):
    Image.fromarray(smooth_rgb(23, 37)[..., 0]).save(path)  # 'L'


def _odd_rgb(path):
    Image.fromarray(smooth_rgb(199, 301)).save(path)


def _rgba(path):
    rgba = np.dstack([smooth_rgb(30, 45), np.tile(np.linspace(0, 255, 45).astype(np.uint8), (30, 1))])
    rgba[:10, :, 3] = 0  # fully transparent rows
    Image.fromarray(rgba, "RGBA").save(path)


def _gray16(path):
    ramp = np.linspace(0, 65535, 33 * 27).reshape(27, 33).astype(np.uint16)
    image = Image.fromarray(ramp)
    assert image.mode == "I;16"
    image.save(path)


def _cmyk(path):
    cmyk = np.dstack([smooth_rgb(26, 31), smooth_rgb(26, 31, seed=1)[..., :1]])
    Image.fromarray(cmyk, "CMYK").save(path, quality=95)


@pytest.mark.parametrize("make, filename, size, load_size", [
    (_gray, "gray.png", (37, 23), 0),  # native size, odd: padded to 40 x 24 and cropped back
    (_odd_rgb, "odd.jpg", (301, 199), 32),
    (_rgba, "alpha.png", (45, 30), 32),
    (_gray16, "gray16.png", (33, 27), 32),
    (_cmyk, "cmyk.jpg", (31, 26), 32),
])
def test_any_input_gives_rgb_of_its_exact_size(weights, tmp_path, make, filename, size, load_size):
    source = tmp_path / filename
    make(source)
    target = tmp_path / "out" / "result.png"
    assert run(weights, "-i", source, "-o", target, "--load_size", load_size) == 0
    with Image.open(target) as out:
        assert out.mode == "RGB" and out.size == size
        rgb = np.asarray(out)
    assert np.ptp(rgb[..., 0].astype(int) - rgb[..., 2]) > 0  # coloured, not gray


def test_native_size_equals_generator_output(weights, tmp_path):
    """48 x 40 (multiples of 8), --load_size 0, no hints: the file is lab2rgb(L, out_reg) exactly."""
    source, target = tmp_path / "in.png", tmp_path / "out.png"
    Image.fromarray(smooth_rgb(40, 48)).save(source)
    assert run(weights, "-i", source, "-o", target, "--load_size", 0) == 0

    net = define_G()
    load_network(net, str(weights))
    net.eval()
    rgb = torch.from_numpy(np.array(load_rgb(str(source)))).permute(2, 0, 1)[None].float() / 255.0
    L = rgb2lab_norm(rgb)[:, :1]
    with torch.no_grad():
        _, out_reg = net(L, torch.zeros(1, 2, 40, 48), torch.zeros(1, 1, 40, 48) - 0.5)
    expected = to_uint8(lab_norm2rgb(torch.cat((L, out_reg), dim=1)).clamp(0, 1))[0]
    with Image.open(target) as out:
        got = np.asarray(out)
    np.testing.assert_array_equal(got, expected)  # PNG is lossless and the computation is the same
    gray = to_uint8(lab_norm2rgb(torch.cat((L, torch.zeros_like(out_reg)), dim=1)))[0]
    assert (np.abs(got.astype(int) - gray).max(axis=2) > 10).mean() > 0.5  # the prediction matters


# --- hints ---------------------------------------------------------------------------------------------

def _expected_ab(rgb):
    lab = rgb2lab(torch.tensor(rgb, dtype=torch.float64).view(1, 3, 1, 1) / 255.0).flatten()
    return torch.tensor([lab[1] / 110.0, lab[2] / 110.0], dtype=torch.float32)


def test_hint_sets_hint_channels_at_mapped_location(weights, tmp_path, record_forward):
    """120 x 80 input at --load_size 32 runs at 48 x 32: input pixel (x, y) -> (x * 0.4, y * 0.4)."""
    source = tmp_path / "in.png"
    Image.fromarray(smooth_rgb(80, 120)).save(source)
    assert run(weights, "-i", source, "-o", tmp_path / "out.png", "--load_size", 32,
               "--hint", "90,20,#ff0000", "--hint", "0,79,#0000ff,3") == 0
    (input_A, input_B, mask_B), = record_forward
    assert input_A.shape == (1, 1, 32, 48) and input_B.shape == (1, 2, 32, 48)
    expected_B = torch.zeros(1, 2, 32, 48)
    expected_mask = torch.zeros(1, 1, 32, 48)
    # red, 1 px: column floor(90.5 * 48/120) = 36, row floor(20.5 * 32/80) = 8
    expected_B[0, :, 8, 36] = _expected_ab((255, 0, 0))
    expected_mask[0, 0, 8, 36] = 1
    # blue, 3 px centred on (row 31, column 0): shifted inside the image -> rows 29..31, columns 0..2
    expected_B[0, :, 29:32, 0:3] = _expected_ab((0, 0, 255)).view(2, 1, 1)
    expected_mask[0, 0, 29:32, 0:3] = 1
    torch.testing.assert_close(input_B, expected_B)
    torch.testing.assert_close(mask_B, expected_mask - 0.5)  # default mask_cent 0.5: {-0.5, +0.5}


def test_hints_json_and_mask_cent_0(weights, tmp_path, record_forward):
    source = tmp_path / "in.png"
    Image.fromarray(smooth_rgb(40, 48)).save(source)
    hints_file = tmp_path / "hints.json"
    hints_file.write_text(json.dumps({"hints": [{"x": 5, "y": 6, "color": "#20c040"},
                                                {"x": 47, "y": 39, "color": "#ffff00", "size": 2}]}))
    assert run(weights, "-i", source, "-o", tmp_path / "out.png", "--load_size", 0,
               "--hints_json", hints_file, "--mask_cent", 0) == 0
    (_, input_B, mask_B), = record_forward
    assert set(mask_B.unique().tolist()) == {0.0, 1.0}  # uncentred, as the caffemodel weights expect
    assert mask_B.sum() == 1 + 4 and mask_B[0, 0, 6, 5] == 1 and mask_B[0, 0, 38:40, 46:48].eq(1).all()
    torch.testing.assert_close(input_B[0, :, 6, 5], _expected_ab((0x20, 0xC0, 0x40)))
    torch.testing.assert_close(input_B[0, :, 39, 47], _expected_ab((255, 255, 0)))


def test_bad_hints_are_one_line_errors(weights, tmp_path, capsys):
    source = tmp_path / "in.png"
    Image.fromarray(smooth_rgb(16, 24)).save(source)
    hints_file = tmp_path / "hints.json"
    hints_file.write_text(json.dumps([{"x": 1, "y": 1, "color": "#ff0000"}, {"x": 2, "y": 2, "color": "#zzzzzz"}]))
    out = tmp_path / "out.png"
    assert run(weights, "-i", source, "-o", out, "--hints_json", hints_file) == 2
    assert "hint 1: colour '#zzzzzz' is not of the form #rrggbb" in one_line_error(capsys)
    assert run(weights, "-i", source, "-o", out, "--hint", "1,2,#ff00") == 2
    assert "--hint 1,2,#ff00" in one_line_error(capsys)
    assert run(weights, "-i", source, "-o", out, "--hint", "24,3,#ff0000") == 2
    assert "(24, 3) is outside the 24x16 image" in one_line_error(capsys)
    (tmp_path / "broken.json").write_text("[{")
    assert run(weights, "-i", source, "-o", out, "--hints_json", tmp_path / "broken.json") == 2
    assert "not valid JSON" in one_line_error(capsys)
    assert not out.exists()


# --- folders, errors, checkpoints ----------------------------------------------------------------------

def test_folder_mirrors_tree_and_skips_bad_files(weights, tmp_path, capsys):
    src = tmp_path / "photos"
    (src / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(smooth_rgb(20, 28)).save(src / "a.jpg")
    Image.fromarray(smooth_rgb(20, 28)[..., 0]).save(src / "sub" / "b.png")
    Image.fromarray(smooth_rgb(17, 13)).save(src / "sub" / "deeper" / "c.bmp")
    Image.fromarray(smooth_rgb(16, 16)).save(src / "sub" / "c.jpg")
    Image.fromarray(smooth_rgb(16, 16)).save(src / "sub" / "c.png")  # same stem as c.jpg
    (src / "sub" / "broken.jpg").write_bytes(b"not an image")
    (src / "notes.txt").write_text("ignored")
    out = tmp_path / "colorized"
    assert run(weights, "-i", src, "-o", out, "--load_size", 16) == 0
    captured = capsys.readouterr()
    produced = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert produced == sorted(["a.png", os.path.join("sub", "b.png"), os.path.join("sub", "deeper", "c.png"),
                               os.path.join("sub", "c.jpg.png"), os.path.join("sub", "c.png.png"),
                               "skipped_images.txt"])
    assert (out / "skipped_images.txt").read_text() == f"{src / 'sub' / 'broken.jpg'}\n"
    with Image.open(out / "sub" / "deeper" / "c.png") as image:
        assert image.mode == "RGB" and image.size == (13, 17)
    assert "warning: skipping unreadable image" in captured.err and "broken.jpg" in captured.err
    assert captured.out.splitlines()[-2:] == [
        f"colorized 5 of 6 image(s) into {out}",
        f"skipped 1 unreadable image file(s); listed in {out / 'skipped_images.txt'}"]
    # An output folder inside the input folder is not read back as input on a second run.
    single = tmp_path / "single"
    single.mkdir()
    Image.fromarray(smooth_rgb(8, 8)).save(single / "x.png")
    for _ in range(2):
        assert run(weights, "-i", single, "-o", single / "out", "--load_size", 8) == 0
        assert "colorized 1 of 1 image(s)" in capsys.readouterr().out
    assert sorted(p.name for p in single.rglob("*.png")) == ["x.png", "x.png"]


def test_single_unreadable_file_fails_in_one_line(weights, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    proc = subprocess.run([sys.executable, "colorize.py", "-i", str(bad), "-o", str(tmp_path / "out.png"),
                           "--checkpoint", str(weights), "--gpu_ids", "-1"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unreadable image") and "bad.png" in lines[0]
    assert not (tmp_path / "out.png").exists()


def test_path_and_option_errors(weights, tmp_path, capsys):
    image = tmp_path / "in.png"
    Image.fromarray(smooth_rgb(16, 16)).save(image)
    folder = tmp_path / "folder"
    folder.mkdir()
    Image.fromarray(smooth_rgb(16, 16)).save(folder / "x.png")
    cases = [
        (["-i", tmp_path / "missing.png", "-o", tmp_path / "o.png"], "no such file or folder"),
        (["-i", image, "-o", folder], "is a folder"),
        (["-i", folder, "-o", image], "OUTPUT must be a folder"),
        (["-i", tmp_path / "empty_dir_that_is_missing", "-o", tmp_path / "o"], "no such file or folder"),
        (["-i", image, "-o", tmp_path / "o.unknown"], "cannot tell the image format"),
        (["-i", image, "-o", image], "would overwrite the input"),
        (["-i", image, "-o", tmp_path / "o.png", "--load_size", -8], "--load_size must be >= 0"),
        (["-i", image, "-o", tmp_path / "o.png", "--which_epoch", "3"], "only applies with --name"),
    ]
    for args, message in cases:
        assert run(weights, *args) == 2, args
        assert message in one_line_error(capsys)
    (tmp_path / "empty").mkdir()
    assert run(weights, "-i", tmp_path / "empty", "-o", tmp_path / "o") == 2
    assert "no images found" in one_line_error(capsys)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a weight file")
    for checkpoint, message in ((tmp_path / "nope.pth", "no such checkpoint file"),
                                (junk, "junk.pth: refused to load")):
        assert colorize.main(["-i", str(image), "-o", str(tmp_path / "o.png"), "--checkpoint", str(checkpoint),
                              "--gpu_ids", "-1"]) == 2
        assert message in one_line_error(capsys)
    with pytest.raises(SystemExit) as info:  # exactly one of --checkpoint / --name
        colorize.main(["-i", str(image), "-o", str(tmp_path / "o.png"), "--checkpoint", str(weights), "--name", "x"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_name_which_epoch_jpeg_output_and_instance_norm(weights, tmp_path, capsys):
    image = tmp_path / "in.png"
    Image.fromarray(smooth_rgb(24, 16)).save(image)
    run_dir = tmp_path / "ckpts" / "exp"
    run_dir.mkdir(parents=True)
    (run_dir / "3_net_G.pth").write_bytes(weights.read_bytes())
    out = tmp_path / "out.jpg"
    assert colorize.main(["-i", str(image), "-o", str(out), "--name", "exp", "--checkpoints_dir",
                          str(tmp_path / "ckpts"), "--which_epoch", "3", "--gpu_ids", "-1", "--load_size", "16"]) == 0
    with Image.open(out) as result:
        assert result.format == "JPEG" and result.size == (16, 24)
    assert colorize.main(["-i", str(image), "-o", str(out), "--name", "exp", "--checkpoints_dir",
                          str(tmp_path / "ckpts"), "--gpu_ids", "-1"]) == 2  # latest_net_G.pth does not exist
    assert os.path.join("exp", "latest_net_G.pth") in one_line_error(capsys)
    # --norm instance: a model trained with instance norm loads; the batch-norm file does not fit it.
    torch.manual_seed(0)
    instance = tmp_path / "instance.pth"
    save_network(define_G(norm="instance"), str(instance))
    assert colorize.main(["-i", str(image), "-o", str(tmp_path / "i.png"), "--checkpoint", str(instance),
                          "--norm", "instance", "--gpu_ids", "-1", "--load_size", "16"]) == 0
    assert run(weights, "-i", image, "-o", tmp_path / "i.png", "--norm", "instance") == 2
    assert "unexpected keys" in one_line_error(capsys)


# --- bounded work: the network size cap and the memory budget ----------------------------------------

def test_network_size_cap_and_budget():
    assert network_size(3, 2000, 256, max_side=2048) == (8, 2048)  # 256 x 170,664 uncapped
    assert network_size(2000, 3, 256, max_side=2048) == (2048, 8)
    assert network_size(3, 2000, 256) == (256, 170664)  # no cap given: the plain rule
    assert network_size(199, 301, 32, max_side=40) == (24, 40)  # 32 x 48 -> longer 40, shorter 40 * 199/301
    assert network_size(199, 301, 32, max_side=44) == (24, 40)  # the cap rounded down to a multiple of 8
    assert network_size(199, 301, 32, max_side=48) == (32, 48)  # within the cap: unchanged
    assert network_size(1000, 1000, 4096, max_side=2048) == (2048, 2048)
    assert network_size(199, 301, 0, max_side=16) == (200, 304)  # native size: the budget bounds it instead
    check_budget(3, 2000, 256, 2048, 0.05)  # 8 x 2048 x 2400 B + 6000 x 128 B = 40 MB
    with pytest.raises(BudgetError, match=r"3000x2000 image at network 3000x2000 needs about 15 GB, over the "
                                          r"budget of 4 GB \(--max_memory_gb\); use a --load_size such as 256"):
        check_budget(2000, 3000, 0, 2048, 4.0)
    with pytest.raises(BudgetError, match="the image itself is too large"):
        check_budget(9000, 9000, 8, 2048, 4.0)  # 81 M input pixels x 128 B = 10 GB at any network size


def _strip(path, height, width):
    Image.fromarray(smooth_rgb(height, width)).save(path)


def test_strips_and_a_large_photo_run_bounded_or_skip_in_one_line(weights, tmp_path, capsys):
    """3 x 2000 and 2000 x 3 strips run with the network capped (--max_side); at --load_size 0 a
    photo over the budget is skipped with one line and the folder run goes on."""
    src = tmp_path / "in"
    src.mkdir()
    _strip(src / "a_wide.png", 3, 2000)
    _strip(src / "b_tall.png", 2000, 3)
    _strip(src / "c_small.png", 16, 24)
    out = tmp_path / "out"
    assert run(weights, "-i", src, "-o", out, "--load_size", 32, "--max_side", 512) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("a_wide.png (2000x3, network 512x8)") and lines[1].endswith("(3x2000, network 8x512)")
    assert lines[-1] == f"colorized 3 of 3 image(s) into {out}"
    for name, size in (("a_wide", (2000, 3)), ("b_tall", (3, 2000)), ("c_small", (24, 16))):
        with Image.open(out / f"{name}.png") as image:
            assert image.size == size

    photos = tmp_path / "photos"
    photos.mkdir()
    _strip(photos / "a_photo.png", 200, 300)  # "large" for a budget of 0.05 GB: 304 x 200 x 2400 B = 0.15 GB
    _strip(photos / "b_small.png", 16, 24)
    out0 = tmp_path / "out0"
    assert run(weights, "-i", photos, "-o", out0, "--load_size", 0, "--max_memory_gb", 0.05) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"warning: skipping {photos / 'a_photo.png'}: a 300x200 image at network 304x200 needs about 0.15 GB, over "
        "the budget of 0.05 GB (--max_memory_gb); use a --load_size such as 256 instead of 0 (the native size)"]
    assert captured.out.splitlines()[-1] == (f"colorized 1 of 2 image(s) into {out0}; 1 could not be colorized "
                                             "(see the warnings above)")
    assert sorted(p.name for p in out0.iterdir()) == ["b_small.png"]
    # a single file over the budget: a one-line error, exit status 1, nothing written
    assert run(weights, "-i", photos / "a_photo.png", "-o", tmp_path / "c.png", "--load_size", 0,
               "--max_memory_gb", 0.05) == 1
    assert "needs about 0.15 GB" in one_line_error(capsys) and not (tmp_path / "c.png").exists()
    assert run(weights, "-i", photos / "a_photo.png", "-o", tmp_path / "c.png", "--max_memory_gb", 0) == 2
    assert "--max_memory_gb must be > 0" in one_line_error(capsys)


def test_speed_flags(weights, tmp_path, monkeypatch, capsys):
    """--amp (with --channels_last) gives an image close to fp32's; --compile (here failing on its
    first call) falls back to eager with one warning and fp32's exact bytes."""
    import util.perf

    source = tmp_path / "in.png"
    Image.fromarray(smooth_rgb(40, 48)).save(source)

    def result(*flags_):
        target = tmp_path / ("out" + "".join(flags_) + ".png")
        assert run(weights, "-i", source, "-o", target, "--load_size", 32, *flags_) == 0
        with Image.open(target) as image:
            return np.asarray(image).astype(int)
    fp32 = result()
    amp = result("--amp", "--channels_last")
    assert np.abs(amp - fp32).mean() < 2.0 and np.abs(amp - fp32).max() < 40  # bfloat16 weights and activations

    class Exploding(torch.nn.Module):
        def forward(self, *args):
            raise RuntimeError("backend exploded")
    monkeypatch.setattr(util.perf, "compile_unsupported_reason", lambda device: None)
    monkeypatch.setattr(torch, "compile", lambda net, **kwargs: Exploding())
    capsys.readouterr()
    np.testing.assert_array_equal(result("--compile"), fp32)
    assert [line for line in capsys.readouterr().err.splitlines() if "--compile" in line] == [
        "warning: --compile: compiling failed (RuntimeError: backend exploded); running in eager mode"]
