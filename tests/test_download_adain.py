"""pretrained_models/download_adain_models.sh against local servers or a stand-in downloader only
(no internet needed)."""
import os
import subprocess

import pytest

from tests.helpers import BASH, DOWNLOADERS, all_files, free_port, make_path, recording_downloader

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pretrained_models",
                      "download_adain_models.sh")
FILES = ["pretrained_models", "pretrained_models/adain", "pretrained_models/adain/decoder.pth",
         "pretrained_models/adain/vgg_normalised.pth"]

pytestmark = pytest.mark.skipif(BASH is None or not DOWNLOADERS, reason="needs bash and curl or wget")


def run(cwd, base_url, path, *args):
    env = {"PATH": path, "HOME": str(cwd), "DOWNLOAD_TIMEOUT": "5", "NO_PROXY": "*", "no_proxy": "*", "LC_ALL": "C"}
    if base_url is not None:
        env["ADAIN_MODEL_BASE_URL"] = base_url
    return subprocess.run([BASH, SCRIPT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_fetches_the_pytorch_adain_release_by_default(tmp_path):
    """Without ADAIN_MODEL_BASE_URL the script asks its downloader for naoto0804/pytorch-AdaIN's
    release files (those bethgelab/stylize-datasets uses) and saves what it gets."""
    assert os.access(SCRIPT, os.X_OK)
    work = tmp_path / "repo"
    work.mkdir()
    path, log = recording_downloader(tmp_path)
    r = run(work, None, path)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    release = "https://github.com/naoto0804/pytorch-AdaIN/releases/download/v0.0.0"
    assert log.read_text().splitlines() == [release + "/vgg_normalised.pth", release + "/decoder.pth"]
    assert all_files(work) == FILES
    assert (work / FILES[3]).read_text() == "body of " + release + "/vgg_normalised.pth"
    assert (work / FILES[2]).read_text() == "body of " + release + "/decoder.pth"


@pytest.mark.parametrize("downloader", DOWNLOADERS)
def test_offline_is_one_line_and_leaves_nothing(tmp_path, downloader):
    work = tmp_path / "repo"
    work.mkdir()
    url = "http://127.0.0.1:%d" % free_port()
    r = run(work, url, make_path(tmp_path, downloader))
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("download_adain_models.sh: could not download ")
    assert url + "/vgg_normalised.pth" in lines[0] and "nothing was written" in lines[0]
    assert all_files(work) == []


def test_download_rerun_and_names(tmp_path, http_server):
    url, folder = http_server
    (folder / "vgg_normalised.pth").write_bytes(b"v" * 1000)
    (folder / "decoder.pth").write_bytes(b"d" * 500)
    work = tmp_path / "repo"
    work.mkdir()
    path = make_path(tmp_path, DOWNLOADERS[0])
    r = run(work, url, path)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert all_files(work) == FILES
    assert (work / FILES[3]).read_bytes() == b"v" * 1000 and (work / FILES[2]).read_bytes() == b"d" * 500
    r = run(work, url, path)
    assert r.returncode == 0 and r.stdout.count("already exists, skipping") == 2
