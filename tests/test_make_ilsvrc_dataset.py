"""Tests for make_ilsvrc_dataset.py on a small fake ILSVRC2012 tree (zero-byte files)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import make_ilsvrc_dataset as mk  # noqa: E402
from tests.helpers import ILSVRC_TEST_INDS, WNIDS, ilsvrc_val_name, make_ilsvrc_source  # noqa: E402

SCRIPT = REPO / "make_ilsvrc_dataset.py"
SORTED = sorted(WNIDS)


def snapshot(root):
    """(relative path, link target or None, lstat size, lstat mtime_ns) of everything in root."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):  # does not follow directory symlinks
        for name in dirnames + filenames + ["."]:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            target = os.readlink(p) if os.path.islink(p) else None
            out.append((os.path.relpath(p, root), target, st.st_size, st.st_mtime_ns))
    return sorted(out)


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    """Complete fake source: 12 classes, val images 0..999 plus the test-split indices."""
    root = tmp_path_factory.mktemp("src")
    return make_ilsvrc_source(root, list(range(1000)) + ILSVRC_TEST_INDS.tolist())


def run(args):
    return mk.main([str(a) for a in args])


def run_subprocess(args, cwd):
    return subprocess.run(
        [sys.executable, str(SCRIPT)] + [str(a) for a in args],
        cwd=cwd, capture_output=True, text=True, timeout=60,
    )


def assert_one_line_error(stderr):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("make_ilsvrc_dataset.py: error: "), stderr
    assert "Traceback" not in stderr


def test_resource_file():
    assert ILSVRC_TEST_INDS.dtype == np.int64 and ILSVRC_TEST_INDS.shape == (10000,)
    assert (np.diff(ILSVRC_TEST_INDS) > 0).all()
    assert ILSVRC_TEST_INDS.min() == 25274 and ILSVRC_TEST_INDS.max() == 49999
    assert mk.TEST_INDS_PATH == REPO / "resources" / "ilsvrclin12_val_inds.npy"


def test_full_layout_rerun_and_source_untouched(src, tmp_path, capsys):
    src_before = snapshot(src)
    out = tmp_path / "out dir"
    assert run(["--in_path", src, "--out_path", out]) == 0
    printed = capsys.readouterr().out
    assert "11011 created, 0 already present" in printed
    assert "12 classes" in printed

    assert sorted(os.listdir(out)) == ["test", "train", "train_small", "val"]
    # train: a single symlink to the whole training folder
    assert os.path.islink(out / "train")
    assert os.readlink(out / "train") == str(src / "train")
    # train_small: real directory, first 10 classes in sorted order
    ts = out / "train_small"
    assert ts.is_dir() and not ts.is_symlink()
    assert sorted(os.listdir(ts)) == SORTED[:10]
    for w in SORTED[:10]:
        assert os.readlink(ts / w) == str(src / "train" / w)
    # val: the first 1000 validation images
    val = out / "val" / "imgs"
    assert sorted(os.listdir(val)) == [ilsvrc_val_name(i) for i in range(1000)]
    for name in os.listdir(val):
        assert os.readlink(val / name) == str(src / "val" / name)
    # test: exactly the npy indices
    test = out / "test" / "imgs"
    assert sorted(os.listdir(test)) == [ilsvrc_val_name(i) for i in ILSVRC_TEST_INDS]
    for name in os.listdir(test):
        assert os.readlink(test / name) == str(src / "val" / name)
    assert set(os.listdir(test)).isdisjoint(os.listdir(val))
    assert (val / ilsvrc_val_name(0)).read_bytes() == b""  # links resolve

    # rerun: nothing changes at all
    out_before = snapshot(out)
    assert run(["--in_path", src, "--out_path", out]) == 0
    assert "0 created, 11011 already present" in capsys.readouterr().out
    assert snapshot(out) == out_before
    assert snapshot(src) == src_before


def test_num_classes_subset_and_rerun(src, tmp_path, capsys):
    src_before = snapshot(src)
    out = tmp_path / "out"
    assert run(["--in_path", src, "--out_path", out, "--num_classes", "3"]) == 0
    assert "11006 created, 0 already present" in capsys.readouterr().out  # 3 + 3 + 11000
    for sub in ("train", "train_small"):
        d = out / sub
        assert d.is_dir() and not d.is_symlink()
        assert sorted(os.listdir(d)) == SORTED[:3]
        for w in SORTED[:3]:
            assert os.readlink(d / w) == str(src / "train" / w)
    assert not any(n.startswith(".") for n in os.listdir(out))  # no temp dirs left
    assert len(os.listdir(out / "val" / "imgs")) == 1000
    assert len(os.listdir(out / "test" / "imgs")) == 10000

    out_before = snapshot(out)
    assert run(["--in_path", src, "--out_path", out, "--num_classes", "3"]) == 0
    assert "0 created, 11006 already present" in capsys.readouterr().out
    assert snapshot(out) == out_before

    # a different subset (or all classes) into the same out_path: one-line error, no change
    for extra in (["--num_classes", "5"], []):
        assert run(["--in_path", src, "--out_path", out] + extra) == 2
        err = capsys.readouterr().err
        assert_one_line_error(err)
        assert "--num_classes" in err
        assert snapshot(out) == out_before
    assert snapshot(src) == src_before


def test_num_classes_11_train_small_has_10(src, tmp_path):
    out = tmp_path / "out"
    assert run(["--in_path", src, "--out_path", out, "--num_classes", "11"]) == 0
    assert sorted(os.listdir(out / "train")) == SORTED[:11]
    assert sorted(os.listdir(out / "train_small")) == SORTED[:10]
    # all classes after a subset run: train is a real directory, not the expected symlink
    before = snapshot(out)
    assert run(["--in_path", src, "--out_path", out]) == 2
    assert snapshot(out) == before


def test_subprocess_relative_paths(src, tmp_path):
    out_rel = "dataset with space/ilsvrc2012"
    cwd = tmp_path / "work"
    cwd.mkdir()
    r = run_subprocess(["--in_path", src, "--out_path", out_rel, "--num_classes", "12"], cwd)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert "11022 created, 0 already present" in r.stdout
    out = cwd / out_rel
    assert sorted(os.listdir(out / "train")) == SORTED
    # links are absolute, so they still resolve from another directory
    assert os.readlink(out / "test" / "imgs" / ilsvrc_val_name(int(ILSVRC_TEST_INDS[0]))).startswith("/")
    assert os.path.exists(out / "train" / SORTED[0] / ("%s_0.JPEG" % SORTED[0]))


def test_missing_in_path_subprocess(tmp_path):
    r = run_subprocess(["--in_path", tmp_path / "no such dir", "--out_path", tmp_path / "o"],
                       tmp_path)
    assert r.returncode == 2
    assert_one_line_error(r.stderr)
    assert "no such dir" in r.stderr
    assert not (tmp_path / "o").exists()


def test_conflicts_modify_nothing(src, tmp_path, capsys):
    src_before = snapshot(src)
    out = tmp_path / "out"
    img = out / "val" / "imgs"
    img.mkdir(parents=True)
    (img / ilsvrc_val_name(4)).write_bytes(b"not a link")
    before = snapshot(out)
    assert run(["--in_path", src, "--out_path", out]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert ilsvrc_val_name(4) in err and "nothing was modified" in err
    assert snapshot(out) == before

    # a symlink pointing somewhere else
    (img / ilsvrc_val_name(4)).unlink()
    os.symlink(str(src / "val" / ilsvrc_val_name(5)), img / ilsvrc_val_name(4))
    before = snapshot(out)
    assert run(["--in_path", src, "--out_path", out]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert "is a symlink to" in err
    assert snapshot(out) == before

    # the correct link is accepted and the rest is filled in
    (img / ilsvrc_val_name(4)).unlink()
    os.symlink(str(src / "val" / ilsvrc_val_name(4)), img / ilsvrc_val_name(4))
    assert run(["--in_path", src, "--out_path", out]) == 0
    assert "11010 created, 1 already present" in capsys.readouterr().out

    # an interrupted run (some links missing) is completed by a rerun
    for i in range(10):
        (img / ilsvrc_val_name(i)).unlink()
    assert run(["--in_path", src, "--out_path", out]) == 0
    assert "10 created, 11001 already present" in capsys.readouterr().out

    # out_path is a file
    f = tmp_path / "a file"
    f.write_bytes(b"")
    assert run(["--in_path", src, "--out_path", f]) == 2
    assert_one_line_error(capsys.readouterr().err)
    # out_path inside in_path
    assert run(["--in_path", src, "--out_path", src / "links"]) == 2
    assert_one_line_error(capsys.readouterr().err)
    assert snapshot(src) == src_before


@pytest.mark.parametrize("n", ["0", "13", "-1"])
def test_num_classes_out_of_range(src, tmp_path, capsys, n):
    out = tmp_path / "out"
    assert run(["--in_path", src, "--out_path", out, "--num_classes", n]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert "between 1 and 12" in err
    assert not out.exists()


def test_bad_sources(tmp_path, capsys):
    def check(src, *words):
        out = tmp_path / "out"
        assert run(["--in_path", src, "--out_path", out]) == 2
        err = capsys.readouterr().err
        assert_one_line_error(err)
        for w in words:
            assert w in err, err
        assert not out.exists()

    # val split incomplete: 2 missing, the first one named
    s = make_ilsvrc_source(tmp_path / "a", [i for i in range(1000) if i not in (7, 500)])
    check(s, "2 of the 1000", ilsvrc_val_name(7))
    # test split missing entirely
    s = make_ilsvrc_source(tmp_path / "b", range(1000))
    check(s, "10000 of the 10000", ilsvrc_val_name(int(ILSVRC_TEST_INDS[0])))
    # no val folder
    s = make_ilsvrc_source(tmp_path / "c", [])
    os.rmdir(s / "val")
    check(s, "validation folder not found")
    # no train folder / no class folders in it
    s = tmp_path / "d"
    (s / "val").mkdir(parents=True)
    check(s, "training folder not found")
    (s / "train").mkdir()
    (s / "train" / "README.txt").write_bytes(b"")
    check(s, "no class sub-folders")
