"""Tests for pretrained_models/download_siggraph_model.sh against local servers only.

The machine running the tests may have no internet access: every run sets
SIGGRAPH_MODEL_BASE_URL to a localhost address, or runs with a stand-in downloader that only
records the URLs it is given, so the real server is never contacted.
"""

import http.server
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import BASH, DOWNLOADERS, all_files, free_port, make_path, recording_downloader

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "pretrained_models" / "download_siggraph_model.sh"
RETRAINED = Path("checkpoints/siggraph_retrained/latest_net_G.pth")
CAFFE = Path("checkpoints/siggraph_caffemodel/latest_net_G.pth")

pytestmark = pytest.mark.skipif(BASH is None or not DOWNLOADERS,
                                reason="needs bash and curl or wget")


def run_script(cwd, base_url, path, *args, timeout=60):
    env = {"PATH": path, "HOME": str(cwd), "DOWNLOAD_TIMEOUT": "5", "NO_PROXY": "*", "no_proxy": "*", "LC_ALL": "C"}
    if base_url is not None:
        env["SIGGRAPH_MODEL_BASE_URL"] = base_url
    return subprocess.run([BASH, str(SCRIPT), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def work(tmp_path):
    d = tmp_path / "repo"
    d.mkdir()
    return d


def test_script_is_executable_and_fetches_the_berkeley_models_by_default(tmp_path, work):
    """Without SIGGRAPH_MODEL_BASE_URL the script asks its downloader for the original's two files
    (the original's pretrained_models/download_siggraph_model.sh) and saves what it gets."""
    assert os.access(SCRIPT, os.X_OK)
    path, log = recording_downloader(tmp_path)
    r = run_script(work, None, path)
    assert r.returncode == 0, r.stderr
    default = "http://colorization.eecs.berkeley.edu/siggraph/models"
    assert log.read_text().splitlines() == [default + "/pytorch.pth", default + "/caffemodel.pth"]
    assert (work / RETRAINED).read_text() == "body of " + default + "/pytorch.pth"
    assert (work / CAFFE).read_text() == "body of " + default + "/caffemodel.pth"


@pytest.mark.parametrize("downloader", DOWNLOADERS)
def test_offline_failure_leaves_nothing(tmp_path, work, downloader):
    url = "http://127.0.0.1:%d" % free_port()  # closed port
    start = time.monotonic()
    r = run_script(work, url, make_path(tmp_path, downloader))
    assert time.monotonic() - start < 30
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("download_siggraph_model.sh: could not download ")
    assert url + "/pytorch.pth" in lines[0] and "nothing was written" in lines[0]
    assert all_files(work) == []  # not even the checkpoints/ folders


@pytest.mark.parametrize("downloader", DOWNLOADERS)
def test_success_rerun_and_force(tmp_path, work, http_server, downloader):
    url, folder = http_server
    retrained, caffe = os.urandom(3000), os.urandom(2000)
    (folder / "pytorch.pth").write_bytes(retrained)
    (folder / "caffemodel.pth").write_bytes(caffe)
    path = make_path(tmp_path, downloader)

    r = run_script(work, url + "/", path)  # a trailing slash is tolerated
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert (work / RETRAINED).read_bytes() == retrained
    assert (work / CAFFE).read_bytes() == caffe
    assert all_files(work) == ["checkpoints", "checkpoints/siggraph_caffemodel",
                               str(CAFFE), "checkpoints/siggraph_retrained", str(RETRAINED)]
    assert (work / RETRAINED).stat().st_mode & 0o777 == 0o666 & ~_umask()

    # rerun: both files are kept as they are
    mtimes = [(work / p).stat().st_mtime_ns for p in (RETRAINED, CAFFE)]
    (folder / "pytorch.pth").write_bytes(b"new retrained")
    r = run_script(work, url, path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("skipping") == 2
    assert [(work / p).stat().st_mtime_ns for p in (RETRAINED, CAFFE)] == mtimes
    assert (work / RETRAINED).read_bytes() == retrained

    # --force downloads again
    r = run_script(work, url, path, "--force")
    assert r.returncode == 0, r.stderr
    assert (work / RETRAINED).read_bytes() == b"new retrained"
    assert (work / CAFFE).read_bytes() == caffe


@pytest.mark.parametrize("downloader", DOWNLOADERS)
def test_http_error_keeps_first_file_only(tmp_path, work, http_server, downloader):
    url, folder = http_server
    path = make_path(tmp_path, downloader)
    (folder / "pytorch.pth").write_bytes(b"weights")  # caffemodel.pth -> 404
    r = run_script(work, url, path)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and url + "/caffemodel.pth" in lines[0], r.stderr
    assert all_files(work) == ["checkpoints", "checkpoints/siggraph_retrained", str(RETRAINED)]

    # a failed --force download leaves the existing file intact
    (folder / "pytorch.pth").unlink()
    r = run_script(work, url, path, "--force")
    assert r.returncode != 0
    assert (work / RETRAINED).read_bytes() == b"weights"
    assert all_files(work) == ["checkpoints", "checkpoints/siggraph_retrained", str(RETRAINED)]


def test_no_downloader(tmp_path, work):
    r = run_script(work, "http://127.0.0.1:1", make_path(tmp_path, None))
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1 and "curl" in r.stderr
    assert all_files(work) == []


def test_bad_arguments(tmp_path, work):
    path = make_path(tmp_path, DOWNLOADERS[0])
    r = run_script(work, "http://127.0.0.1:1", path, "--bogus")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run([BASH, str(SCRIPT)], cwd=work, capture_output=True, text=True,
                       env={"PATH": path, "SIGGRAPH_MODEL_BASE_URL": "http://127.0.0.1:1",
                            "DOWNLOAD_TIMEOUT": "soon"}, timeout=30)
    assert r.returncode == 2 and "DOWNLOAD_TIMEOUT" in r.stderr
    assert all_files(work) == []


class TruncatingHandler(http.server.BaseHTTPRequestHandler):
    """Announces 1 MB, sends 64 KiB, then closes (truncated) or waits (stalled)."""

    stall = None  # threading.Event: when set on the class, hold the connection until it is set

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000000")
        self.end_headers()
        self.wfile.write(b"x" * 65536)  # more than a downloader's write buffer
        self.wfile.flush()
        if self.stall is not None:
            self.stall.wait(30)

    def log_message(self, *args):
        pass


@pytest.fixture
def truncating_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TruncatingHandler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % httpd.server_address[1]
    if TruncatingHandler.stall is not None:
        TruncatingHandler.stall.set()
        TruncatingHandler.stall = None
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("downloader", DOWNLOADERS)
def test_truncated_download_leaves_nothing(tmp_path, work, truncating_server, downloader):
    r = run_script(work, truncating_server, make_path(tmp_path, downloader))
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert all_files(work) == []


@pytest.mark.parametrize("downloader", DOWNLOADERS)
def test_interrupted_download_leaves_nothing(tmp_path, work, truncating_server, downloader):
    TruncatingHandler.stall = threading.Event()
    env = {"PATH": make_path(tmp_path, downloader),
           "SIGGRAPH_MODEL_BASE_URL": truncating_server}
    proc = subprocess.Popen([BASH, str(SCRIPT)], cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        # wait until the temporary file has received the first bytes
        deadline = time.monotonic() + 20
        part = []
        while time.monotonic() < deadline:
            part = [p for p in work.rglob(".latest_net_G.pth.part.*") if p.stat().st_size > 0]
            if part:
                break
            time.sleep(0.05)
        assert part, "the download never started"
        os.killpg(proc.pid, signal.SIGINT)  # like Ctrl-C in a terminal
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode != 0
    assert all_files(work) == []


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
