"""The bad-image corpus (tests/bad_images.py) through load_rgb, every transform and every script.

Each script must convert the readable files as load_rgb documents, skip the others with exactly
one warning line each on stderr (nothing else there: no traceback, no PIL warning), and end with
``skipped N unreadable image file(s); listed in <folder>/skipped_images.txt``. The scripts run as
subprocesses where stderr as a whole is the point, with one DataLoader worker
(``--num_threads 1``) so that the skip records cross a process boundary.
"""
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import colorize
import test_sweep
import train_linear_classifiers as tlc
from data.datasets import SKIPPED_LIST_NAME, UnreadableImageError, load_rgb
from data.transforms import center_crop_transform, eval_transform, train_transform
from tests.bad_images import gradient, make_corpus, names
from tests.helpers import copy_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARNING = "warning: skipping unreadable image "


@pytest.fixture(scope="module")
def env(tmp_path_factory, random_generator):
    """The corpus (flat, in 'corpus/'), and a seeded random generator checkpoint 'rand'."""
    root = tmp_path_factory.mktemp("bad_images")
    corpus = make_corpus(str(root / "corpus"))
    copy_checkpoint(random_generator, root / "ckpt", "rand")
    return root, corpus


def run_script(*args, timeout=300):
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def assert_clean_stderr(stderr, folder, bad):
    """stderr holds exactly one warning per bad file (any order) and nothing else."""
    lines = stderr.splitlines()
    assert "Traceback" not in stderr
    assert sorted(lines) == sorted(lines_for(folder, bad)), stderr
    return lines


def lines_for(folder, bad):
    """The expected warning line of each bad file: the path and a one-line reason."""
    out = []
    for name in bad:
        try:
            load_rgb(os.path.join(folder, name))
        except UnreadableImageError as e:
            out.append(f"{WARNING}{e}")
    assert len(out) == len(bad)
    return out


def skip_line(folder, count):
    return f"skipped {count} unreadable image file(s); listed in {os.path.join(folder, SKIPPED_LIST_NAME)}"


def test_load_rgb_converts_or_refuses_every_case(env):
    root, corpus = env
    assert len(names(corpus, "skip")) == 5 and len(names(corpus, "ok", True)) == 6
    assert len(names(corpus, "ok", False)) == 4
    assert os.path.getsize(root / "corpus" / "bomb_huge.png") < 100_000  # the bombs stay cheap
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name, expect in corpus.items():
            path = str(root / "corpus" / name)
            if expect.status == "skip":
                with pytest.raises(UnreadableImageError) as info:
                    load_rgb(path)
                assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value), name
                continue
            image = load_rgb(path)
            assert image.mode == "RGB" and image.size == expect.size, name
            expect.check(np.asarray(image))
    assert [str(w.message) for w in caught] == []  # PIL's palette and decompression-bomb warnings included
    reasons = {n: str(pytest.raises(UnreadableImageError, load_rgb, str(root / "corpus" / n)).value)
               for n in names(corpus, "skip")}
    assert "empty file (0 bytes)" in reasons["empty.jpg"]
    assert "not an image file PIL can identify" in reasons["text.jpg"]
    assert "decompression bomb" in reasons["bomb.png"] and "decompression bomb" in reasons["bomb_huge.png"]


def test_every_readable_case_fits_every_transform(env):
    """The 1 x 1 and smaller-than-the-crop images too: each transform upsamples what it must."""
    root, corpus = env
    torch.manual_seed(0)
    for name in names(corpus, "ok"):
        image = load_rgb(str(root / "corpus" / name))
        for transform, shape in ((train_transform(40, 32), (3, 32, 32)), (eval_transform(32), (3, 32, 32)),
                                 (center_crop_transform(40, 32), (3, 32, 32)),
                                 (train_transform(256, 176), (3, 176, 176))):
            out = transform(image)
            assert out.dtype == torch.uint8 and tuple(out.shape) == shape, (name, transform)


def test_train_py_uses_converts_and_skips(env, tmp_path):
    """Two epochs of one batch, loaded by a worker: 6 colour images trained on, 4 gray or flat ones
    dropped by the grayscale filter (not counted as unreadable), 5 unreadable files warned about
    once each over the run."""
    root, corpus = env
    data = tmp_path / "train"
    (data / "mixed").mkdir(parents=True)
    for name in corpus:
        os.symlink(root / "corpus" / name, data / "mixed" / name)
    proc = run_script("train.py", "--dataroot", data, "--checkpoints_dir", tmp_path / "ckpt", "--name", "run",
                      "--gpu_ids", "-1", "--loadSize", "24", "--fineSize", "16", "--batch_size", "16",
                      "--num_threads", "1", "--niter", "2", "--niter_decay", "0", "--no_html")
    assert proc.returncode == 0, proc.stderr
    assert_clean_stderr(proc.stderr, data / "mixed", names(corpus, "skip"))
    for epoch in (0, 1):
        assert f"epoch {epoch}: skipped 5 unreadable image(s) and 4 grayscale image(s)" in proc.stdout
    run = tmp_path / "ckpt" / "run"
    assert proc.stdout.splitlines()[-1] == skip_line(run, 5)
    assert (run / SKIPPED_LIST_NAME).read_text().splitlines() == [str(data / "mixed" / n)
                                                                   for n in names(corpus, "skip")]
    assert (run / "latest_net_G.pth").is_file()


def test_test_py_evaluates_readable_and_lists_skipped(env, tmp_path):
    root, corpus = env
    proc = run_script("test.py", "--dataroot", root / "corpus", "--checkpoints_dir", root / "ckpt", "--name", "rand",
                      "--results_dir", tmp_path, "--loadSize", "16", "--how_many", "100", "--gpu_ids", "-1",
                      "--num_threads", "1", "--batch_size", "16")
    assert proc.returncode == 0, proc.stderr
    assert_clean_stderr(proc.stderr, root / "corpus", names(corpus, "skip"))
    web = tmp_path / "rand" / "val_latest"
    assert proc.stdout.splitlines()[-1] == skip_line(web, 5)
    report = json.loads((web / "metrics.json").read_text())
    assert report["num_images"] == 10 and report["num_skipped"] == 5 and report["skipped"] == names(corpus, "skip")
    for setting in report["settings"]:  # grayscale images are evaluated, not dropped
        assert sorted(image["path"] for image in setting["images"]) == names(corpus, "ok")
        assert all(np.isfinite(image["ssim"]) for image in setting["images"])
    assert (web / SKIPPED_LIST_NAME).read_text().splitlines() == [str(root / "corpus" / n)
                                                                  for n in names(corpus, "skip")]


def test_test_sweep_py_sweeps_readable_and_lists_skipped(env, tmp_path, capsys):
    root, corpus = env
    assert test_sweep.main(["--dataroot", str(root / "corpus"), "--checkpoints_dir", str(root / "ckpt"),
                            "--name", "rand", "--results_dir", str(tmp_path), "--loadSize", "16",
                            "--how_many", "100", "--gpu_ids", "-1", "--num_threads", "1",
                            "--batch_size", "16"]) == 0
    captured = capsys.readouterr()
    assert_clean_stderr(captured.err, root / "corpus", names(corpus, "skip"))
    out = tmp_path / "rand" / "sweep_latest"
    assert captured.out.splitlines()[-1] == skip_line(out, 5)
    record = json.loads((out / "sweep.json").read_text())
    assert sorted(record["paths"]) == names(corpus, "ok") and record["skipped"] == names(corpus, "skip")
    assert np.isfinite(record["psnr"]).all()


def test_colorize_folder_writes_readable_at_their_displayed_size(env, tmp_path):
    root, corpus = env
    out = tmp_path / "out"
    proc = run_script("colorize.py", "-i", root / "corpus", "-o", out, "--checkpoint",
                      root / "ckpt" / "rand" / "latest_net_G.pth", "--gpu_ids", "-1", "--load_size", "16")
    assert proc.returncode == 0, proc.stderr
    assert_clean_stderr(proc.stderr, root / "corpus", names(corpus, "skip"))
    assert proc.stdout.splitlines()[-2:] == [f"colorized 10 of 15 image(s) into {out}", skip_line(out, 5)]
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted([os.path.splitext(n)[0] + ".png" for n in names(corpus, "ok")] + [SKIPPED_LIST_NAME])
    for name in names(corpus, "ok"):
        with Image.open(out / (os.path.splitext(name)[0] + ".png")) as image:
            assert image.mode == "RGB" and image.size == corpus[name].size, name  # EXIF: the rotated size


@pytest.mark.parametrize("name", ["truncated.jpg", "empty.jpg", "text.jpg", "bomb.png", "bomb_huge.png"])
def test_colorize_single_bad_file_is_one_line_exit_1(env, tmp_path, capsys, name):
    root, _ = env
    source = root / "corpus" / name
    assert colorize.main(["-i", str(source), "-o", str(tmp_path / "o.png"), "--checkpoint",
                          str(root / "ckpt" / "rand" / "latest_net_G.pth"), "--gpu_ids", "-1"]) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [line.replace(WARNING, "error: unreadable image ")
                                         for line in lines_for(root / "corpus", [name])]
    assert not (tmp_path / "o.png").exists() and not (tmp_path / SKIPPED_LIST_NAME).exists()


def test_colorize_single_bomb_subprocess_no_pil_warning(env, tmp_path):
    """As a process: PIL's DecompressionBombWarning must not reach stderr beside the error."""
    root, _ = env
    proc = run_script("colorize.py", "-i", root / "corpus" / "bomb.png", "-o", tmp_path / "o.png", "--checkpoint",
                      root / "ckpt" / "rand" / "latest_net_G.pth", "--gpu_ids", "-1")
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: unreadable image {root / 'corpus' / 'bomb.png'}: ")


def _layout(folder, count, seed):
    """``count`` colourful gradient images of the second probe class (a different lightness layout)."""
    folder.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(np.roll(gradient(48, 48), 7 * (i + seed), axis=1)[:, ::-1].copy()).save(folder / f"{i}.png")


def test_probes_skip_and_remember_skipped_files_in_the_cache(env, tmp_path, capfd):
    root, corpus = env
    data = tmp_path / "data"
    for split in ("train", "val"):
        (data / split / "corpus").mkdir(parents=True)
        for name in corpus:
            os.symlink(root / "corpus" / name, data / split / "corpus" / name)
        _layout(data / split / "other", 3, seed=len(split))
    out = tmp_path / "probes"

    def cli(folder, threads, *extra):
        return ["--name", "rand", "--checkpoints_dir", str(root / "ckpt"), "--dataroot", str(data / "train"),
                "--dataroot_validation", str(data / "val"), "--linear_checkpoints", str(folder), "--gpu_ids", "-1",
                "--batch_size", "8", "--niter", "1", "--layers", "conv1", "conv2", "--num_threads", str(threads),
                *extra]

    bad = [data / split / "corpus" / n for split in ("train", "val") for n in names(corpus, "skip")]
    for attempt in ("extract", "cache"):  # the cached rerun (in-process) reports the same files
        if attempt == "extract":
            proc = run_script("train_linear_classifiers.py", *cli(out, 1, "--loadSize", "40", "--fineSize", "32"))
            returncode, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
        else:
            returncode = tlc.main(cli(out, 0, "--loadSize", "40", "--fineSize", "32"))
            stdout, stderr = capfd.readouterr()
        assert returncode == 0, stderr
        assert "Traceback" not in stderr
        assert sorted(stderr.splitlines()) == sorted(
            lines_for(data / "train" / "corpus", names(corpus, "skip"))
            + lines_for(data / "val" / "corpus", names(corpus, "skip"))), attempt
        assert stdout.splitlines()[-1] == skip_line(out, 10), attempt
        assert (out / SKIPPED_LIST_NAME).read_text().splitlines() == sorted(map(str, bad))
        results = json.loads((out / "results.json").read_text())["data"]
        assert results["unreadable_dropped"] == {"train": 5, "val": 5}
        assert results["grayscale_dropped"] == {"train": 4, "val": 4}
        assert results["features_from_cache"] == {"train": attempt == "cache", "val": attempt == "cache"}
        assert results["train_samples"] == 6 + 3 and results["val_samples"] == 6 + 3
    # The fork's protocol reads the images every epoch: the same files skipped, the same counts.
    fork = tmp_path / "fork"
    assert tlc.main(cli(fork, 0, "--protocol", "fork", "--loadSize", "64", "--fineSize", "64")) == 0
    stdout, stderr = capfd.readouterr()
    assert len(stderr.splitlines()) == 10 and stdout.splitlines()[-1] == skip_line(fork, 10)
    results = json.loads((fork / "results.json").read_text())["data"]
    assert results["unreadable_dropped"] == {"train": 5, "val": 5}
    assert results["grayscale_dropped"] == {"train": 4, "val": 4}
