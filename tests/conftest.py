"""Shared test setup: make the repository importable however pytest is started; the shared
fixtures (sample data, a local HTTP server)."""
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
