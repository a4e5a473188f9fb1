"""The shape-bias measurement on generated data: the arithmetic against hand-computed cases, the
stimuli reader on a tree like rgeirhos/texture-vs-shape's, the human trials, the 16-class layout
builder on a fake ILSVRC2012 tree with the real WordNet IDs, the download script against a local
server, and test_shape_bias.py end to end (then its report page in headless Chromium)."""
import csv
import json
import os
import re
import subprocess
import sys
import tarfile

import pytest

import compare_models
import make_geirhos16_dataset as mk
import test_shape_bias as tsb
from dataset_builders.geirhos16 import CATEGORIES, load_category_wnids
from evaluation.shape_bias import (HUMAN_FILE, ShapeBiasError, Stimulus, count_decisions, human_shape_bias,
                                   read_human, read_stimuli)
from scripts.make_study_smoke_data import write_cue_conflict_stimuli, write_fake_ilsvrc16
from scripts.run_entry_points import load_script
from tests.browser import assert_page_ok
from tests.helpers import BASH, DOWNLOADERS, TOOLS, copy_checkpoint, free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOWNLOAD = os.path.join(REPO, "scripts", "download_cue_conflict.sh")
ST512 = "style-transfer-preprocessed-512"
TRIALS_HEADER = "subj,session,trial,rt,object_response,category,condition,imagename\n"


def stim(shape, texture, n=1):
    return Stimulus(f"{shape}/{shape}{n}-{texture}1.png", "", shape, texture)


# ---- the arithmetic ----------------------------------------------------------------------------

def test_shape_bias_arithmetic_by_hand():
    """Same-category stimuli count only towards their own accuracy; a decision for a third
    category (or none) is neither shape nor texture."""
    stimuli = [stim("cat", "dog"), stim("cat", "dog", 2), stim("cat", "elephant"), stim("dog", "cat"),
               stim("dog", "knife"), stim("car", "oven"), stim("knife", "knife"), stim("knife", "knife", 2),
               stim("bear", "bear")]
    predicted = ["cat", "dog", "bird", "cat", "knife", None, "knife", "dog", None]
    r = count_decisions(stimuli, predicted)
    # 6 conflicts: shape decisions 1 (cat), texture 3 (dog, cat, knife), neither 2 (bird, none)
    assert r["shape_bias"] == pytest.approx(1 / 4)
    assert r["shape_fraction"] == pytest.approx(1 / 6) and r["texture_fraction"] == pytest.approx(3 / 6)
    assert r["same_category_accuracy"] == pytest.approx(1 / 3)  # knife right, knife -> dog, bear -> none
    per = r["per_category"]
    assert list(per) == list(CATEGORIES)
    assert per["cat"] == {"shape": 1, "texture": 1, "conflict": 3, "shape_bias": 0.5}
    assert per["dog"] == {"shape": 0, "texture": 2, "conflict": 2, "shape_bias": 0.0}
    assert per["car"] == {"shape": 0, "texture": 0, "conflict": 1, "shape_bias": None}
    assert per["knife"]["conflict"] == 0 and per["bear"]["conflict"] == 0  # same-category ones are not conflicts


def test_no_shape_or_texture_decision_has_no_shape_bias():
    r = count_decisions([stim("cat", "dog"), stim("oven", "car")], ["bird", "bird"])
    assert r["shape_bias"] is None and r["shape_fraction"] == 0.0 and r["texture_fraction"] == 0.0
    assert r["same_category_accuracy"] is None


# ---- the stimuli -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def published_like(tmp_path_factory):
    """Generated files in the published tree: 16 folders of 80, 1,280 in all, 80 same-category."""
    folder = tmp_path_factory.mktemp("stimuli") / ST512
    assert write_cue_conflict_stimuli(str(folder), size=2) == 1280
    return folder


def test_reader_on_the_published_tree(published_like):
    stimuli = read_stimuli(str(published_like))
    assert len(stimuli) == 1280 and sum(s.shape == s.texture for s in stimuli) == 80
    assert sorted(os.listdir(published_like)) == list(CATEGORIES)
    for category in CATEGORIES:
        assert sum(s.shape == category for s in stimuli) == 80
        assert sum(s.texture == category for s in stimuli if s.shape != s.texture) == 75  # 5 from each other shape
    first = stimuli[0]
    assert first.file == "airplane/airplane1-airplane2.png" and (first.shape, first.texture) == ("airplane", "airplane")
    assert os.path.isfile(first.path) and [s.file for s in stimuli] == sorted(s.file for s in stimuli)
    assert stimuli[2].file == "airplane/airplane1-bicycle1.png" and stimuli[2].texture == "bicycle"


@pytest.mark.parametrize("change, message", [
    (lambda f: os.rename(f / "truck", f / "lorry"), "expected the 16 folders"),
    (lambda f: (f / "cow").mkdir(), "found airplane, bear"),
    (lambda f: os.rename(f / "cat" / "cat1-airplane1.png", f / "cat" / "cat1-airplane1.jpg"), "cat/cat1-airplane1.jpg"),
    (lambda f: os.rename(f / "cat" / "cat1-airplane1.png", f / "cat" / "dog1-airplane1.png"), "cat/dog1-airplane1.png"),
    (lambda f: os.rename(f / "cat" / "cat1-airplane1.png", f / "cat" / "cat1-cow1.png"), "cat/cat1-cow1.png"),
    (lambda f: (f / "cat" / "more").mkdir(), "cat/more is not named"),
])
def test_reader_refuses_a_folder_unlike_the_set(tmp_path, change, message):
    folder = tmp_path / ST512
    write_cue_conflict_stimuli(str(folder), per_category=2, same_per_category=1, size=2)
    read_stimuli(str(folder))  # the subset is accepted
    change(folder)
    with pytest.raises(ShapeBiasError, match="does not look like the cue-conflict set") as info:
        read_stimuli(str(folder))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_refused_stimuli_are_one_line_and_nothing_is_written(tmp_path, capsys):
    folder = tmp_path / "stimuli"
    (folder / "cat").mkdir(parents=True)
    rc = tsb.main(["--name", "m", "--stimuli", str(folder), "--results_dir", str(tmp_path / "res"), "--gpu_ids", "-1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and "expected the 16 folders" in err[0]
    assert not (tmp_path / "res").exists()


# ---- the human observers -----------------------------------------------------------------------

def write_trials(folder, name, rows):
    """A raw-data CSV of texture-vs-shape's style-transfer-512-nomask-experiment (its columns)."""
    lines = [f"{subj},1,{i + 1},0.9,{response},{image.split('_')[-1].split('-')[0].rstrip('0123456789')},0,"
             f"{i + 1:04d}_s5n_s01_0_x_00_{image}" for i, (subj, response, image) in enumerate(rows)]
    (folder / name).write_text(TRIALS_HEADER + "\n".join(lines) + "\n")


def test_human_shape_bias_from_the_trials(tmp_path):
    raw = tmp_path / "style-transfer-512-nomask-experiment"
    raw.mkdir()
    write_trials(raw, "style-transfer-512-nomask-experiment_subject-01_session_1.csv",
                 [("subject-01", "bird", "bird3-cat2.png"), ("subject-01", "cat", "bird1-cat1.png"),
                  ("subject-01", "knife", "knife1-knife2.png"), ("subject-01", "na", "oven1-car1.png")])
    write_trials(raw, "style-transfer-512-nomask-experiment_subject-02_session_1.csv",
                 [("subject-02", "bird", "bird3-cat2.png"), ("subject-02", "dog", "bird1-cat1.png")])
    write_trials(raw, "style-transfer-512-nomask-experiment_vgg_session_1.csv",  # a network: not a human
                 [("vgg", "cat", "bird3-cat2.png")])
    h = human_shape_bias(str(raw))
    # 5 human conflict trials: shape 2 (bird, bird), texture 1 (cat), neither 2 (no answer, dog)
    assert h["shape_bias"] == pytest.approx(2 / 3) and h["shape_fraction"] == pytest.approx(2 / 5)
    assert h["texture_fraction"] == pytest.approx(1 / 5) and h["same_category_accuracy"] == 1.0
    assert h["subjects"] == ["subject-01", "subject-02"] and h["trials"] == 6


# ---- the 16-class layout -----------------------------------------------------------------------

def snapshot(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            out.append((os.path.relpath(os.path.join(dirpath, name), root), st.st_size, st.st_mtime_ns))
    return sorted(out)


@pytest.fixture(scope="module")
def ilsvrc16(tmp_path_factory):
    """A fake ILSVRC2012 tree: the first 2 WordNet IDs of every category (knife has 1), 3 training
    and 2 validation files each, plus a class of no category and a hidden file."""
    root = tmp_path_factory.mktemp("ilsvrc16") / "ILSVRC 2012"
    in_path, val = write_fake_ilsvrc16(str(root), wnids_per_category=2, train_per_wnid=3, val_per_wnid=2, size=2)
    os.makedirs(root / "train" / "n09999999")
    (root / "train" / "n09999999" / "n09999999_0.JPEG").write_bytes(b"x")
    (root / "train" / "n02085782" / ".hidden.JPEG").write_bytes(b"x")
    return root, in_path, val


def test_layout_builder_cap_rerun_and_source_untouched(ilsvrc16, tmp_path, capsys):
    root, in_path, val = ilsvrc16
    before = snapshot(root)
    out = tmp_path / "g16"
    args = ["--in_path", in_path, "--val_by_class", val, "--out_path", str(out), "--per_category", "4",
            "--val_per_category", "3"]
    assert mk.main(args) == 0
    assert "  links: 111 created, 0 already present" in capsys.readouterr().out  # 15 x (4 + 3) + knife 3 + 2 + layout.json
    assert sorted(os.listdir(out)) == ["layout.json", "train", "val"]
    assert sorted(os.listdir(out / "train")) == sorted(os.listdir(out / "val")) == list(CATEGORIES)
    dog = load_category_wnids()["dog"][:2]  # n02085782, n02085936
    d0, d1 = sorted(dog)
    # capped at 4: the classes' files in turn
    assert sorted(os.listdir(out / "train" / "dog")) == sorted([f"{d0}_0.JPEG", f"{d1}_0.JPEG", f"{d0}_1.JPEG",
                                                               f"{d1}_1.JPEG"])
    link = out / "train" / "dog" / f"{d1}_1.JPEG"
    assert os.readlink(link) == os.path.join(os.path.realpath(in_path), "train", d1, f"{d1}_1.JPEG")
    assert len(os.listdir(out / "train" / "knife")) == 3 and len(os.listdir(out / "val" / "knife")) == 2
    assert len(os.listdir(out / "val" / "dog")) == 3
    layout = json.loads((out / "layout.json").read_text())
    assert layout["categories"]["dog"] == {"train": 4, "val": 3, "train_wnids": [d0, d1], "val_wnids": [d0, d1]}
    assert mk.main(args) == 0
    assert "  links: 0 created, 111 already present" in capsys.readouterr().out
    assert snapshot(root) == before
    # another cap: a one-line error, nothing modified
    after = snapshot(out)
    assert mk.main(args[:-3] + ["5", "--val_per_category", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a different set" in err[0] and "--per_category" in err[0]
    assert snapshot(out) == after and snapshot(root) == before


def test_layout_builder_refuses_bad_input(ilsvrc16, tmp_path, capsys):
    root, in_path, val = ilsvrc16
    for args, message in ((["--out_path", str(root / "train" / "g16")], "must not lie inside the source"),
                          (["--val_by_class", str(tmp_path / "none")], "validation folder not found"),
                          (["--val_by_class", str(root / "train" / "n09999999")], "no val image of category airplane")):
        full = ["--in_path", in_path, "--val_by_class", val, "--out_path", str(tmp_path / "g16")] + args
        assert mk.main(full) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("make_geirhos16_dataset.py: error: ") and message in err[0], err
    assert not (tmp_path / "g16").exists() and not (root / "train" / "g16").exists()


# ---- the download ------------------------------------------------------------------------------

def write_archive(path, stimuli_dir, raw_rows):
    """A tar.gz like GitHub's archive of rgeirhos/texture-vs-shape: texture-vs-shape-master/ with the
    stimuli, another stimuli folder, raw-data/style-transfer-512-nomask-experiment/ and a README."""
    top = "texture-vs-shape-master"
    raw = path.parent / "raw"
    raw.mkdir()
    write_trials(raw, "style-transfer-512-nomask-experiment_subject-01_session_1.csv", raw_rows)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(stimuli_dir, f"{top}/stimuli/{ST512}")
        tar.add(stimuli_dir / "cat", f"{top}/stimuli/edges/cat")
        tar.add(raw, f"{top}/raw-data/style-transfer-512-nomask-experiment")
        tar.add(os.path.join(REPO, "LICENSE"), f"{top}/README.md")


def run_download(cwd, url, tmp_path, downloader="curl"):
    bindir = tmp_path / f"bin-{downloader}"
    if not bindir.exists():
        bindir.mkdir()
        for tool in TOOLS + ["tar", "gzip", "tail", downloader]:
            os.symlink(subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip(), bindir / tool)
    env = {"PATH": str(bindir), "HOME": str(cwd), "DOWNLOAD_TIMEOUT": "5", "NO_PROXY": "*", "no_proxy": "*",
           "LC_ALL": "C", "TEXTURE_VS_SHAPE_URL": url, "PYTHON": sys.executable}
    return subprocess.run([BASH, DOWNLOAD], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


needs_download_tools = pytest.mark.skipif(BASH is None or "curl" not in DOWNLOADERS, reason="needs bash and curl")


@needs_download_tools
def test_download_unpacks_the_set_and_computes_the_human_value(tmp_path, http_server, published_like):
    url, served = http_server
    write_archive(served / "tvs.tar.gz", published_like, [("subject-01", "cat", "cat1-dog1.png"),
                                                          ("subject-01", "dog", "cat2-dog1.png"),
                                                          ("subject-01", "cat", "cat3-dog1.png")])
    work = tmp_path / "repo"
    work.mkdir()
    r = run_download(work, url + "/tvs.tar.gz", tmp_path)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    dest = work / "dataset" / "cue-conflict"
    assert sorted(os.listdir(dest)) == [HUMAN_FILE, "raw-data", ST512]  # no archive, no other stimuli
    assert len(read_stimuli(str(dest / ST512))) == 1280
    assert read_human(str(dest / HUMAN_FILE)) == pytest.approx(2 / 3)
    assert "human shape bias 66.7% over 3 trials of 1 observers" in r.stdout
    assert run_download(work, url + "/tvs.tar.gz", tmp_path).stdout.count("already exists, skipping") == 1


@needs_download_tools
def test_download_offline_or_not_the_set_is_one_line_and_leaves_nothing(tmp_path, http_server):
    url, served = http_server
    work = tmp_path / "repo"
    work.mkdir()
    r = run_download(work, "http://127.0.0.1:%d/tvs.tar.gz" % free_port(), tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and "could not download" in lines[0] and "nothing was written" in lines[0]
    assert os.listdir(work) == []
    small = tmp_path / "small" / ST512  # a part of the set only: refused by the check
    write_cue_conflict_stimuli(str(small), per_category=2, same_per_category=1, size=2)
    write_archive(served / "tvs.tar.gz", small, [("subject-01", "cat", "cat1-dog1.png")])
    r = run_download(work, url + "/tvs.tar.gz", tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and "32 stimuli, 16 same-category" in lines[0], r.stderr
    assert os.listdir(work) == []


# ---- the measurement, end to end ---------------------------------------------------------------

@pytest.fixture(scope="module")
def measured(tmp_path_factory, random_generator):
    """test_shape_bias.py on the 16-class layout of a fake ILSVRC tree (2 training and 1 validation
    8 px noise images per category), 32 stimuli (2 per category, 16 same-category), a random
    generator, a human value file beside the stimuli; run twice into two results folders."""
    root = tmp_path_factory.mktemp("measured")
    in_path, val = write_fake_ilsvrc16(str(root / "ilsvrc"))
    assert mk.main(["--in_path", in_path, "--val_by_class", val, "--out_path", str(root / "g16")]) == 0
    write_cue_conflict_stimuli(str(root / "cue" / ST512), per_category=2, same_per_category=1)
    (root / "cue" / HUMAN_FILE).write_text(json.dumps({"shape_bias": 0.955}))
    copy_checkpoint(random_generator, root / "ckpt", "rand")
    common = ["--name", "rand", "--checkpoints_dir", str(root / "ckpt"), "--dataroot", str(root / "g16" / "train"),
              "--dataroot_validation", str(root / "g16" / "val"), "--stimuli", str(root / "cue" / ST512),
              "--gpu_ids", "-1", "--niter", "3", "--loadSize", "40", "--fineSize", "32", "--num_threads", "0"]
    for run in ("a", "b"):
        assert tsb.main(common + ["--results_dir", str(root / run), "--batch_size", "16" if run == "a" else "5"]) == 0
    return root


def test_outputs_have_the_issue_schema(measured):
    out = measured / "a" / "rand" / "shape_bias"
    assert {"shape_bias.json", "decisions.csv", "shape_bias.png", "opt.txt", "probes", HUMAN_FILE} <= set(os.listdir(out))
    summary = json.loads((out / "shape_bias.json").read_text())
    assert list(summary) == ["layers", "num_stimuli", "num_conflict"]
    assert summary["num_stimuli"] == 32 and summary["num_conflict"] == 16
    assert list(summary["layers"]) == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    probes = json.loads((out / "probes" / "results.json").read_text())
    assert probes["classes"] == list(CATEGORIES) and probes["protocol"] == "corrected"
    with open(out / "decisions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 * 32 and list(rows[0]) == ["layer", "file", "shape", "texture", "predicted"]
    for layer, r in summary["layers"].items():
        assert list(r) == ["shape_bias", "shape_fraction", "texture_fraction", "same_category_accuracy", "val_top1",
                           "per_category"]
        mine = [row for row in rows if row["layer"] == layer]
        assert all(row["predicted"] in CATEGORIES for row in mine)
        stimuli = [Stimulus(row["file"], "", row["shape"], row["texture"]) for row in mine]
        again = count_decisions(stimuli, [row["predicted"] for row in mine])
        assert again == {k: v for k, v in r.items() if k != "val_top1"}  # the JSON is the CSV's count
        assert r["val_top1"] == pytest.approx(probes["layers"][layer]["best_val_top1"])


def test_deterministic_for_a_seed(measured):
    """A second run (another --batch_size, features extracted again) decides every stimulus alike."""
    a, b = (measured / run / "rand" / "shape_bias" for run in ("a", "b"))
    assert (a / "decisions.csv").read_text() == (b / "decisions.csv").read_text()
    assert json.loads((a / "shape_bias.json").read_text()) == json.loads((b / "shape_bias.json").read_text())


def test_report_shape_bias_section_in_chromium(measured, capsys):
    out = measured / "comparison"
    assert compare_models.main(["--names", "rand", "twice=rand", "--results_dir", str(measured / "a"),
                                "--out", str(out)]) == 0
    html = (out / "index.html").read_text()
    assert "Shape bias on cue-conflict stimuli (test_shape_bias.py)" in html
    assert "AlexNet (torchvision) 25.3%, VGG-16 (torchvision) 9.2%, humans 95.5% (from the published trials)" in html
    summary = json.loads((measured / "a" / "rand" / "shape_bias" / "shape_bias.json").read_text())

    def cell(r):
        bias = "n/a" if r["shape_bias"] is None else f"{100 * r['shape_bias']:.1f}"
        return f"<td>{bias} / {100 * r['val_top1']:.1f}</td>"

    cells = "".join(cell(r) for r in summary["layers"].values())
    flat = re.sub(r">\s+<", "><", html)
    for label in ("rand", "twice"):  # one row per model: its stimuli, then shape bias / val top-1 per layer
        assert f"<tr><td>{label}</td><td>32 (16)</td>{cells}</tr>" in flat
    assert os.path.isfile(out / "shape_bias.png")
    assert_page_ok(out / "index.html", min_images=1)


def test_probe_options_mean_what_they_mean_in_train_linear_classifiers():
    """The flags both scripts have parse to the same options, and the probes' settings this script
    does not expose are train_linear_classifiers.py's defaults."""
    flags = ["--name", "m", "--checkpoints_dir", "c", "--which_epoch", "3", "--mask_cent", "0", "--dataroot", "d",
             "--dataroot_validation", "v", "--niter", "7", "--gpu_ids", "-1", "--seed", "5", "--loadSize", "40",
             "--fineSize", "32", "--batch_size", "9", "--num_threads", "0", "--amp", "--channels_last", "--compile"]
    ours, _ = tsb.parse(flags)
    theirs, _ = load_script("train_linear_classifiers.py").parse(flags + ["--linear_checkpoints", ours.linear_checkpoints])
    assert vars(theirs) == {k: v for k, v in vars(ours).items() if k in vars(theirs)}
    assert set(vars(ours)) - set(vars(theirs)) == {"stimuli", "results_dir", "shape_bias_dir"}
    assert ours.linear_checkpoints == os.path.join("./results/", "m", "shape_bias", "probes")
