"""Every loader of weights or state refuses code, and every result writer fails cleanly.

A checkpoint whose unpickling would create a marker file (pathlib.Path.touch, a harmless stand-in
for arbitrary code) is given to each script that reads one: each exits with status 2 and exactly
one line on stderr, and the marker is never created. A poisoned feature cache is ignored with one
warning and rebuilt. Truncated and mismatched checkpoints are one line naming the file and the keys.
A results folder that cannot be written is a one-line error (exit 1) that leaves the files of the
earlier run whole.
"""
import errno
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import colorize
import compare_models
import test_sweep
import train_linear_classifiers as tlc
import util.checkpoint
import util.fileio
from tests.bad_images import gradient
from tests.helpers import copy_checkpoint, load_test_script, poison
from util.checkpoint import load_tensor_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
test_script = load_test_script()


@pytest.fixture(scope="module")
def env(tmp_path_factory, random_generator):
    """Images: val/ (4 flat) and probes/{train,val}/{a,b}/ (2 classes); a good generator 'good';
    a poisoned one 'evil' (<ckpt>/evil/latest_net_G.pth) and the marker its unpickling would create."""
    root = tmp_path_factory.mktemp("safe_loading")
    for i in range(4):
        (root / "val").mkdir(exist_ok=True)
        Image.fromarray(np.roll(gradient(32, 32), 5 * i, axis=0)).save(root / "val" / f"{i}.png")
        for split in ("train", "val"):
            for cls, flip in (("a", False), ("b", True)):
                folder = root / "probes" / split / cls
                folder.mkdir(parents=True, exist_ok=True)
                image = gradient(32, 32)[:, ::-1] if flip else gradient(32, 32)
                Image.fromarray(np.roll(image, 3 * i, axis=1).copy()).save(folder / f"{i}.png")
    copy_checkpoint(random_generator, root / "ckpt", "good")
    marker = root / "MARKER_created_by_unpickling"
    poison(root / "ckpt" / "evil" / "latest_net_G.pth", marker)
    return root, marker


def run_script(*args):
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=300)


def one_line(stderr):
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def loader_commands(root):
    ckpt, evil = root / "ckpt", root / "ckpt" / "evil" / "latest_net_G.pth"
    common = ["--checkpoints_dir", ckpt, "--name", "evil", "--gpu_ids", "-1", "--num_threads", "0"]
    return {
        "train.py --load_model": ["train.py", "--dataroot", root / "probes" / "train", "--load_model", "--loadSize",
                                  "40", "--fineSize", "32", "--niter", "1", "--niter_decay", "0", *common],
        "test.py": ["test.py", "--dataroot", root / "val", "--results_dir", root / "res", "--loadSize", "32", *common],
        "test_sweep.py": ["test_sweep.py", "--dataroot", root / "val", "--results_dir", root / "res",
                          "--loadSize", "32", *common],
        "colorize.py --checkpoint": ["colorize.py", "-i", root / "val" / "0.png", "-o", root / "out.png",
                                     "--checkpoint", evil, "--gpu_ids", "-1"],
        "train_linear_classifiers.py": ["train_linear_classifiers.py", "--dataroot", root / "probes" / "train",
                                        "--dataroot_validation", root / "probes" / "val",
                                        "--linear_checkpoints", root / "lin", "--niter", "1", *common],
    }


@pytest.mark.parametrize("script", ["train.py --load_model", "test.py", "test_sweep.py", "colorize.py --checkpoint",
                                    "train_linear_classifiers.py"])
def test_every_loader_refuses_a_checkpoint_that_runs_code(env, script):
    root, marker = env
    proc = run_script(*loader_commands(root)[script])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    evil = root / "ckpt" / "evil" / "latest_net_G.pth"
    assert one_line(proc.stderr) == (f"error: {evil}: refused to load, the file is not a plain weights file "
                                     "(unpickling it would call getattr; only tensors and plain containers are "
                                     "loaded)")
    assert not marker.exists()
    assert not (root / "out.png").exists()


def test_the_poisoned_checkpoint_really_runs_code(tmp_path):
    """Guard for the tests above: unrestricted unpickling of such a file does create the marker."""
    marker = tmp_path / "marker"
    poison(tmp_path / "evil.pth", marker)
    with pytest.raises(util.checkpoint.CheckpointError, match="refused to load"):
        load_tensor_file(str(tmp_path / "evil.pth"))
    assert not marker.exists()
    torch.load(tmp_path / "evil.pth", weights_only=False)
    assert marker.exists()


def test_poisoned_feature_cache_is_ignored_and_rebuilt(env, tmp_path):
    """The cache is derived data: a cache file that would run code is not loaded (no marker), one
    warning per file says so, and the features are extracted again and cached over it."""
    root, _ = env
    marker = tmp_path / "cache_marker"
    out = tmp_path / "lin"
    args = ["train_linear_classifiers.py", "--name", "good", "--checkpoints_dir", root / "ckpt",
            "--dataroot", root / "probes" / "train", "--dataroot_validation", root / "probes" / "val",
            "--linear_checkpoints", out, "--gpu_ids", "-1", "--loadSize", "32", "--fineSize", "32",
            "--niter", "1", "--layers", "conv1", "--num_threads", "0"]
    assert tlc.main([str(a) for a in args[1:]]) == 0
    caches = sorted((out / "feature_cache").iterdir())
    assert [p.name.split("_")[0] for p in caches] == ["train", "val"]
    for path in caches:  # the right key, so only the refusal stops it from being used
        entry = load_tensor_file(str(path))
        poison(path, marker, {"key": entry["key"], "labels": entry["labels"]})
    proc = run_script(*args)
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"warning: ignoring the feature cache, extracting again: {path}: refused to load, the file is not a plain "
        "weights file (unpickling it would call getattr; only tensors and plain containers are loaded)"
        for path in caches]
    assert proc.stdout.count("features: 8 extracted") == 2
    for path in caches:  # rebuilt: plain tensors again
        assert set(load_tensor_file(str(path))) == {"key", "features", "labels", "num_grayscale", "unreadable"}
    assert json.loads((out / "results.json").read_text())["data"]["features_from_cache"] == {"train": False,
                                                                                           "val": False}


def bad_checkpoints(folder):
    """A truncated copy of a good checkpoint and one with a stray and a missing key:
    (path, what the one-line error must say)."""
    good = folder / "good" / "latest_net_G.pth"
    data = good.read_bytes()
    truncated = folder / "truncated" / "latest_net_G.pth"
    truncated.parent.mkdir(parents=True, exist_ok=True)
    truncated.write_bytes(data[: len(data) // 2])
    state = torch.load(good, weights_only=True)
    del state["model8.1.weight"]
    state["model9.9.weight"] = torch.zeros(1)
    mismatched = folder / "mismatched" / "latest_net_G.pth"
    mismatched.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, mismatched)
    return {"truncated": (truncated, f"error: {truncated}: cannot read checkpoint (RuntimeError: PytorchStreamReader "
                                     "failed reading zip archive: failed finding central directory)"),
            "mismatched": (mismatched, f"error: {mismatched}: does not fit the network; missing keys: model8.1.weight; "
                                       "unexpected keys: model9.9.weight")}


@pytest.fixture(scope="module")
def bad(env, tmp_path_factory):
    root, _ = env
    folder = tmp_path_factory.mktemp("bad_ckpt")
    shutil.copytree(root / "ckpt" / "good", folder / "good")
    return folder, bad_checkpoints(folder)


@pytest.mark.parametrize("kind", ["truncated", "mismatched"])
def test_truncated_and_mismatched_checkpoints_are_one_line(env, bad, kind, capsys):
    root, _ = env
    folder, cases = bad
    path, message = cases[kind]
    assert test_script.main(["--dataroot", str(root / "val"), "--checkpoints_dir", str(folder), "--name", kind,
                             "--results_dir", str(folder / "res"), "--gpu_ids", "-1", "--num_threads", "0"]) == 2
    assert one_line(capsys.readouterr().err) == message
    assert colorize.main(["-i", str(root / "val" / "0.png"), "-o", str(folder / "o.png"), "--checkpoint", str(path),
                          "--gpu_ids", "-1"]) == 2
    assert one_line(capsys.readouterr().err) == message
    assert not (folder / "o.png").exists() and not (folder / "res").exists()


# -- result files that cannot be written -----------------------------------------------------------------

def eval_args(root, results, *extra):
    """test.py / test_sweep.py arguments for the good model on 2 images of val/ at 16 px."""
    return ["--dataroot", str(root / "val"), "--checkpoints_dir", str(root / "ckpt"), "--name", "good",
            "--results_dir", str(results), "--loadSize", "16", "--how_many", "2", "--gpu_ids", "-1",
            "--num_threads", "0", *extra]


@pytest.fixture(scope="module")
def earlier(env, tmp_path_factory):
    """Complete earlier runs of test.py, test_sweep.py, the probes and compare_models: {script:
    (arguments, output folder)}. Tests that make their writes fail must leave these folders as
    they are."""
    root, _ = env
    out = tmp_path_factory.mktemp("earlier")
    runs = {"test.py": (test_script.main, eval_args(root, out / "res"), out / "res" / "good" / "val_latest"),
            "test_sweep.py": (test_sweep.main, eval_args(root, out / "res"), out / "res" / "good" / "sweep_latest"),
            "train_linear_classifiers.py": (
                tlc.main, ["--name", "good", "--checkpoints_dir", str(root / "ckpt"), "--dataroot",
                           str(root / "probes" / "train"), "--dataroot_validation", str(root / "probes" / "val"),
                           "--linear_checkpoints", str(out / "lin"), "--gpu_ids", "-1", "--loadSize", "16",
                           "--fineSize", "16", "--niter", "1", "--layers", "conv1", "--num_threads", "0"],
                out / "lin"),
            "compare_models.py": (compare_models.main, ["--names", "good", "--results_dir", str(out / "res"),
                                                        "--out", str(out / "cmp")], out / "cmp")}
    for main, args, _ in runs.values():  # in this order: compare_models reads the other two's results
        assert main(args) == 0
    return runs


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def read_only_runner():
    """A command prefix under which the results folder (chmod 555) really is read-only, or None:
    root ignores directory permissions unless it drops CAP_DAC_OVERRIDE (setpriv)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        return None
    probe = subprocess.run(["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps",
                            "-dac_override,-dac_read_search", "--", "true"], capture_output=True)
    if probe.returncode != 0:
        return None
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps",
            "-dac_override,-dac_read_search", "--"]


def test_test_py_read_only_results_folder_is_one_line_and_keeps_earlier_results(earlier):
    runner = read_only_runner()
    if runner is None:
        pytest.skip("running as root without a working setpriv: no way to make a folder read-only for root")
    _, args, web = earlier["test.py"]
    before = snapshot(web)
    for folder in (web, web / "images"):
        folder.chmod(0o555)
    try:
        proc = subprocess.run([*runner, sys.executable, "test.py", *args, "--seed", "1"],
                              cwd=REPO, capture_output=True, text=True, timeout=300)
    finally:
        for folder in (web, web / "images"):
            folder.chmod(0o755)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = one_line(proc.stderr)
    assert line.startswith(f"error: cannot write the results in {web}: [Errno 13] Permission denied: "), line
    assert snapshot(web) == before


def no_space(fd):
    """os.fsync on a full disk: every atomic write fails after writing its temporary file."""
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("script", ["test.py", "test_sweep.py", "train_linear_classifiers.py", "compare_models.py"])
def test_full_disk_is_one_line_and_keeps_earlier_results(earlier, script, capsys, monkeypatch):
    main, args, folder = earlier[script]
    before = snapshot(folder)
    capsys.readouterr()
    monkeypatch.setattr(util.fileio.os, "fsync", no_space)
    assert main(args + (["--seed", "1"] if script != "compare_models.py" else [])) == 1
    err = capsys.readouterr().err
    assert one_line(err).startswith("error: cannot write ") and f" {folder}: " in err, err
    assert err.rstrip().endswith("[Errno 28] No space left on device"), err
    assert snapshot(folder) == before  # earlier results whole, no temporary file left behind


def test_compare_models_leaves_out_broken_result_files(earlier, tmp_path, capsys):
    """A truncated metrics.json or a foreign sweep.csv is one warning, shown as missing, not a crash."""
    _, _, sweep_dir = earlier["test_sweep.py"]
    results = tmp_path / "res"
    shutil.copytree(sweep_dir, results / "fine" / "sweep_latest")
    (results / "broken" / "val_latest").mkdir(parents=True)
    (results / "broken" / "val_latest" / "metrics.json").write_text('{"name": "broken", "settin')
    (results / "broken" / "sweep_latest").mkdir(parents=True)
    (results / "broken" / "sweep_latest" / "sweep.csv").write_text("a,b\n1,2\n")
    assert compare_models.main(["--names", "fine", "broken", "--results_dir", str(results),
                                "--out", str(tmp_path / "cmp")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert "Traceback" not in "\n".join(err)
    assert err[0].startswith(f"warning: {results / 'broken' / 'val_latest' / 'metrics.json'}: cannot read (")
    assert err[1] == (f"warning: {results / 'broken' / 'sweep_latest' / 'sweep.csv'}: not a sweep.csv "
                      "(KeyError: 'num_points'); left out of the report")
    assert err[2:] == ["note: fine: no metrics results found", "note: broken: no metrics, sweep results found"]
    assert "fine" in (tmp_path / "cmp" / "index.html").read_text()


def test_test_sweep_py_checks_the_results_folder_before_sweeping(earlier, capsys, monkeypatch):
    _, args, folder = earlier["test_sweep.py"]
    before = snapshot(folder)

    def refused(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(folder))

    def never(*a, **k):
        raise AssertionError("swept although the results could not be written")

    monkeypatch.setattr(util.fileio.tempfile, "TemporaryFile", refused)
    monkeypatch.setattr(test_sweep, "run_sweep", never)
    capsys.readouterr()
    assert test_sweep.main(args) == 1
    assert one_line(capsys.readouterr().err) == (f"error: cannot write the results in {folder}: "
                                                 f"[Errno 13] Permission denied: '{folder}'")
    assert snapshot(folder) == before


def test_colorize_full_disk_keeps_the_earlier_output(env, tmp_path, capsys, monkeypatch):
    """A single file: one line, exit 1. A folder: one warning per file that cannot be written, exit 1
    when none could. Earlier outputs stay whole either way."""
    root, _ = env
    args = ["--checkpoint", str(root / "ckpt" / "good" / "latest_net_G.pth"), "--gpu_ids", "-1", "--load_size", "16"]
    out = tmp_path / "o.png"
    assert colorize.main(["-i", str(root / "val" / "0.png"), "-o", str(out), *args]) == 0
    folder = tmp_path / "folder"
    assert colorize.main(["-i", str(root / "val"), "-o", str(folder), *args]) == 0
    before, before_folder = out.read_bytes(), snapshot(folder)
    capsys.readouterr()
    monkeypatch.setattr(util.fileio.os, "fsync", no_space)
    assert colorize.main(["-i", str(root / "val" / "1.png"), "-o", str(out), *args]) == 1
    assert one_line(capsys.readouterr().err) == f"error: {out}: cannot write ([Errno 28] No space left on device)"
    assert out.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["folder", "o.png"]  # no temporary file
    assert colorize.main(["-i", str(root / "val"), "-o", str(folder), *args]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"warning: skipping {folder / f'{i}.png'}: cannot write ([Errno 28] No space left on device)"
                   for i in range(4)]
    assert snapshot(folder) == before_folder
