"""Shared test setup: make the repository importable however pytest is started; the shared
fixtures (sample data, a random-init checkpoint, a local HTTP server)."""
import functools
import http.server
import os
import sys
import threading

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import pytest  # noqa: E402


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

    from tests.helpers import save_random_generator

    with torch.random.fork_rng():  # the caller's random state is left as it was
        return save_random_generator(tmp_path_factory.mktemp("random_generator"), "rand")


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
