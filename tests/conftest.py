"""Shared test setup: make the repository importable however pytest is started; temporary
folders in memory where there is room; the shared fixtures (sample data, a random-init
checkpoint, a module's scratch folder, a local HTTP server)."""
import functools
import glob
import http.server
import os
import shutil
import sys
import threading

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import pytest  # noqa: E402

#: Room a tmpfs needs to hold the tests' temporary folders: their peak is ~8 GB (the SMOKE study's
#: checkpoints, 6.5 GB, while it runs, plus the session's and modules' shared folders).
TMPFS_MIN_BYTES = 12e9


def session_running_in(path):
    """Whether a live pytest session has its temporary folder under ``path`` (pytest keeps a
    .lock file holding its pid in the folder while the session runs)."""
    for lock in glob.glob(os.path.join(path, "pytest-of-*", "pytest-*", ".lock")):
        try:
            with open(lock) as f:
                os.kill(int(f.read().strip()), 0)
            return True
        except PermissionError:  # alive, another user's
            return True
        except (OSError, ValueError):  # gone, or unreadable: a stale lock
            continue
    return False


def memory_temp_root(path="/dev/shm"):
    """``path`` if it is a tmpfs where the tests can write and run files, that holds
    TMPFS_MIN_BYTES (free space and available memory both) and that no other pytest session is
    filling, else None."""
    if not os.path.isdir(path) or not os.access(path, os.W_OK | os.X_OK) or session_running_in(path):
        return None
    st = os.statvfs(path)
    if st.f_flag & getattr(os, "ST_NOEXEC", 0):  # tests run scripts they write in their folders
        return None
    try:
        with open("/proc/meminfo") as f:
            available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return None
    return path if min(st.f_bavail * st.f_frsize, available) >= TMPFS_MIN_BYTES else None


def pytest_configure(config):
    """The training tests write GBs of weight files (0.1-0.4 GB per checkpoint or resume point):
    on a tmpfs they never reach the disk (on a 2-core AMD EPYC VM: test_train.py 90 s -> 57 s, the
    SMOKE study 90 s -> 63 s). --basetemp or PYTEST_DEBUG_TEMPROOT choose the place instead."""
    if config.option.basetemp is None and "PYTEST_DEBUG_TEMPROOT" not in os.environ:
        root = memory_temp_root()
        if root is not None:
            os.environ["PYTEST_DEBUG_TEMPROOT"] = root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """The sample dataset cut from scikit-image's photos at 40 px: train/ (12 images in 6 classes),
    train_small/ and val/ (4 images); read-only for the tests that share it."""
    from scripts import make_sample_dataset

    root = tmp_path_factory.mktemp("tiny_data")
    make_sample_dataset.main(["--out_path", str(root), "--size", "40", "--per_image", "2", "--val_per_image", "2"])
    return root


@pytest.fixture(scope="session")
def random_generator(tmp_path_factory):
    """Path of a latest_net_G.pth holding a random-init generator (define_G() after
    torch.manual_seed(0)), saved once: copy it (tests.helpers.copy_checkpoint), never modify it."""
    import torch

    from evaluation.layout_dataset import save_random_generator

    with torch.random.fork_rng():  # the caller's random state is left as it was
        return save_random_generator(tmp_path_factory.mktemp("random_generator"), "rand")


@pytest.fixture(scope="module")
def module_tmp(request, tmp_path_factory):
    """A scratch folder for one test module's shared runs, removed when the module ends without a
    failure (weight files are large; a failed module's folder stays for inspection)."""
    path = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    failures = request.session.testsfailed
    yield path
    if request.session.testsfailed == failures:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def eval_env(tmp_path_factory, tiny_data, random_generator):
    """A folder for one test module's evaluation runs: data/ (the shared sample data, read-only;
    data/val holds 4 flat 40 px crops) and ckpt/m/latest_net_G.pth (random_generator's weights)."""
    from tests.helpers import copy_checkpoint

    root = tmp_path_factory.mktemp("eval_env")
    (root / "data").symlink_to(tiny_data, target_is_directory=True)
    copy_checkpoint(random_generator, root / "ckpt", "m")
    return root


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_server(tmp_path):
    """A local HTTP server serving tmp_path/srv; yields (base_url, folder)."""
    folder = tmp_path / "srv"
    folder.mkdir()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % httpd.server_address[1], folder
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def reference_run(tiny_data, tmp_path_factory):
    """Folder of one default train.py run (float32, eager, seed 0) of 2 steps on tiny_data:
    tests.helpers.reference_train_args, name "ref" (latest_net_G.pth, loss_log.jsonl; read-only).
    Tests that rerun it, with or without one flag changed, compare against it instead of training
    it again (each train.py step of the 34 M-parameter generator costs seconds on 2 cores)."""
    import train
    from tests.helpers import reference_train_args

    ckpt = tmp_path_factory.mktemp("reference_run")
    assert train.main(reference_train_args(tiny_data, ckpt, "ref")) == 0
    return ckpt / "ref"
