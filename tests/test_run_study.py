"""SMOKE=1 bash scripts/run_study.sh: the whole study on tiny generated data (CPU), then a rerun."""
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
import torch

from scripts import run_entry_points
from scripts.make_study_smoke_data import write_fake_coco
from tests.browser import assert_page_ok
from tests.helpers import ILSVRC_TEST_INDS, make_ilsvrc_source

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "run_study.sh")
MODELS = {"pretrained": ("checkpoints", "siggraph_caffemodel"), "saturation": ("checkpoints", "siggraph_reg2_sat"),
          "stylized": ("checkpoints_stylized", "siggraph_reg2"), "coco": ("checkpoints_coco", "siggraph_reg2")}


def run_study(root, **env):
    full = dict(os.environ, SMOKE="1", SMOKE_ROOT=str(root), PYTHON=sys.executable)
    full.update(env)
    return subprocess.run(["bash", SCRIPT], cwd=root.parent, env=full, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("study") / "smoke root"  # a space in every path
    start = time.time()
    # the coco model is probed on COCO classes, as the fork did (the others on the ImageNet stand-in)
    proc = run_study(root, COCO_PROBE_TRAIN=str(root / "coco2017" / "train"),
                     COCO_PROBE_VAL=str(root / "coco2017" / "val_cls"), COCO_NITER_1="2")
    seconds = time.time() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    yield root, proc, seconds
    for folder in ("checkpoints", "checkpoints_stylized", "checkpoints_coco"):  # ~3 GB of weights
        shutil.rmtree(root / folder, ignore_errors=True)


def test_every_stage_ran_for_the_four_models(smoke):
    root, proc, seconds = smoke
    print(f"SMOKE study: {seconds:.0f} s")
    out = proc.stdout
    assert "SMOKE: no download possible here; the 'pretrained' model is a copy of the smoke baseline's" in out
    for label, (ckpt, name) in MODELS.items():
        assert (root / ckpt / name / "latest_net_G.pth").stat().st_size > 100e6
        metrics = json.loads((root / "results" / label / name / "val_latest" / "metrics.json").read_text())
        assert [s["sample_p"] for s in metrics["settings"]] == [1.0, 0.125, 0.03125]
        with open(root / "results" / label / name / "sweep_latest" / "sweep.csv") as f:
            assert len(list(csv.reader(f))) == 27  # header + 26 hint counts
        probes = json.loads((root / "probes" / label / "results.json").read_text())
        assert probes["num_classes"] == 6 and sorted(probes["layers"]) == ["conv1", "conv2", "conv3", "conv4", "conv5"]
        # COCO's class folders, some of them empty, for the coco model; the photos' for the others
        assert probes["classes"][0] == ("000_background" if label == "coco" else "astronaut")
        assert f"ran      test {label}" in out and f"ran      probes {label}" in out
        # the shape stage: 16-way probes on the 16-class layout, then the 32 generated stimuli
        shape = json.loads((root / "results" / label / name / "shape_bias" / "shape_bias.json").read_text())
        assert sorted(shape["layers"]) == ["conv1", "conv2", "conv3", "conv4", "conv5"]
        assert (shape["num_stimuli"], shape["num_conflict"]) == (32, 16) and f"ran      shape {label}" in out
    assert sorted(os.listdir(root / "geirhos16" / "train")) == sorted(os.listdir(root / "geirhos16" / "val"))
    assert len(os.listdir(root / "geirhos16" / "train")) == 16 and "ran      16-class data" in out


def test_stylized_and_coco_models_trained_on_their_data(smoke):
    """The stylized model on stylized data (phase 1 on the train_small classes), the coco model on
    the converted fake COCO tree."""
    root = smoke[0]
    opt = (root / "checkpoints_stylized" / "siggraph_class_small" / "opt.txt").read_text()
    assert os.path.join("stylized", "train_small") in opt
    assert os.path.join("coco2017", "train") in (root / "checkpoints_coco" / "siggraph_reg2" / "opt.txt").read_text()
    assert sorted(os.listdir(root / "stylized" / "train_small")) == ["astronaut", "immunohistochemistry", "rocket"]
    stylized = json.loads((root / "stylized" / "train" / "content_style_map.json").read_text())
    assert stylized["finished"] and len(stylized["assignment"]) == 24
    assert sorted(os.listdir(root / "coco2017" / "train")) == [
        "000_background", "001_person", "003_car", "010_traffic_light", "018_dog", "084_book"]


def test_saturation_model_phases_3_4_have_the_term(smoke):
    """Phases 3-4 with the saturation term, from the shared classification phases."""
    root = smoke[0]
    assert "lambda_sat: 0.0001" in (root / "checkpoints" / "siggraph_reg2_sat" / "opt.txt").read_text()


def test_report_compares_the_four_models(smoke):
    root = smoke[0]
    html = (root / "results" / "comparison" / "index.html").read_text()
    assert "<p>Models: pretrained, saturation, stylized, coco; checkpoints 'latest'.</p>" in html
    flat = html.replace("\n", "").replace(" ", "")
    for label in MODELS:
        assert f"<td>{label}</td><td>corrected</td><td>6</td>" in flat  # one probe row per model
        assert f'href="../{label}/{MODELS[label][1]}/sweep_latest/index.html"' in html
    assert "Shape bias on cue-conflict stimuli (test_shape_bias.py)" in html
    assert flat.count("<td>32(16)</td>") == 4  # one shape-bias row per model: 32 stimuli, 16 in conflict
    assert "humans" not in html  # no human value file in the smoke data: no human line
    assert_page_ok(root / "results" / "comparison" / "index.html", min_images=3)  # sweep, probes, shape bias


def test_every_phase_of_the_recipe_ran_with_its_settings(smoke):
    """scripts/train_siggraph.sh as the study ran it for the coco model: the 4 phases with the
    paper's settings (epochs from the study's variables), each from the previous phase's weights."""
    root, proc, _ = smoke
    ckpt = root / "checkpoints_coco"
    phases = ["siggraph_class_small", "siggraph_class", "siggraph_reg", "siggraph_reg2"]
    assert sorted(p.name for p in ckpt.iterdir()) == sorted(phases)
    expected = {  # name -> (classification, sample_p, lr, niter)
        "siggraph_class_small": ("True", "1.0", "0.0001", "2"), "siggraph_class": ("True", "1.0", "0.0001", "1"),
        "siggraph_reg": ("False", "0.125", "1e-05", "1"), "siggraph_reg2": ("False", "0.125", "1e-06", "1")}
    previous = None
    for name in phases:
        state = torch.load(ckpt / name / "latest_net_G.pth", weights_only=True)
        assert type(state).__name__ == "OrderedDict" and len(state) == 107
        assert not any(k.startswith("module.") for k in state)
        opt = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].split("[default")[0].strip()
               for line in (ckpt / name / "opt.txt").read_text().splitlines() if ":" in line}
        assert (opt["classification"], opt["sample_p"], opt["lr"], opt["niter"]) == expected[name]
        assert opt["niter_decay"] == "0" and opt["lambda_sat"] == "0.0" and opt["max_dataset_size"] == "2"
        assert opt["dataroot"].endswith(os.path.join("coco2017", "train"))
        assert opt["load_model"] == ("False" if name == "siggraph_class_small" else "True")
        assert (ckpt / name / f"{int(opt['niter']) - 1}_net_G.pth").exists()
        if previous is not None:
            # Each phase started from the previous phase's weights (one Adam step of at most ~lr per
            # weight away; a fresh N(0, 0.02) init would be ~0.02 away) and trained them.
            step = (state["model5.0.weight"] - previous["model5.0.weight"]).abs().max().item()
            assert 0 < step < 1e-3
        previous = state
    assert f"final model is {ckpt}/siggraph_reg2/latest_net_G.pth" in proc.stdout


def test_rerun_skips_everything_then_redoes_only_what_is_missing(smoke):
    root, _, _ = smoke
    report = root / "results" / "comparison" / "index.html"
    before = report.stat().st_mtime_ns
    start = time.time()
    # (without the COCO_PROBE_* of the first run: the probes are done anyway; one training job at a time)
    proc = run_study(root, TRAIN_JOBS="1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert time.time() - start < 10
    summary = proc.stdout.split("study finished in", 1)[1].splitlines()[1:]
    steps = [line for line in summary if line.startswith("  ") and not line.startswith("   ")]
    assert len(steps) == 26 and all(line.startswith("  skipped ") for line in steps), proc.stdout[-2000:]
    assert report.stat().st_mtime_ns == before
    # a lost result is recomputed, and the report is written again
    os.unlink(root / "results" / "coco" / "siggraph_reg2" / "val_latest" / "metrics.json")
    proc = run_study(root, STAGES="eval report")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ran      test coco" in proc.stdout and "skipped  sweep coco" in proc.stdout
    assert "ran      report" in proc.stdout and report.stat().st_mtime_ns != before


def test_shape_stage_without_stimuli_is_skipped_with_one_line(smoke, tmp_path):
    root = smoke[0]
    proc = run_study(root, STAGES="shape report", STIMULI=str(tmp_path / "no stimuli"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    skips = [line for line in proc.stdout.splitlines() if "shape" in line]
    assert skips == [f"skip shape bias: no cue-conflict stimuli at {tmp_path / 'no stimuli'} "
                     "(bash scripts/download_cue_conflict.sh)"], proc.stdout


def test_retrained_baseline_takes_the_first_slot(smoke):
    """PRETRAINED=retrain: the baseline recipe; its phases 1-2 are the saturation model's, done."""
    root, _, _ = smoke
    launched = root.parent / "launched.txt"
    launcher = root.parent / "launcher.sh"  # TRAIN_LAUNCHER reaches train_siggraph.sh: it runs each phase
    launcher.write_text(f'echo "$@" >> "{launched}"\nexec "{sys.executable}" "$@"\n')
    proc = run_study(root, PRETRAINED="retrain", MODELS="pretrained", STAGES="train eval",
                     TRAIN_LAUNCHER=f"bash {launcher}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    phases = launched.read_text().splitlines()
    assert len(phases) == 2 and all(line.split()[0].endswith("train.py") for line in phases)
    assert "--name siggraph_reg " in phases[0] and "--name siggraph_reg2 " in phases[1]
    assert "==== train baseline ====\nstarting at phase 3" in proc.stdout
    assert "==== phase 1" not in proc.stdout and "==== phase 3: siggraph_reg ====" in proc.stdout
    assert re.search(r"lambda_sat: 0\.0\s", (root / "checkpoints" / "siggraph_reg2" / "opt.txt").read_text())
    metrics = json.loads((root / "results" / "baseline" / "siggraph_reg2" / "val_latest" / "metrics.json").read_text())
    assert len(metrics["settings"]) == 3
    assert (root / "results" / "baseline" / "siggraph_reg2" / "sweep_latest" / "sweep.csv").exists()


def test_real_data_stage_builds_imagenet_100_val_classes_and_coco(tmp_path):
    """Without SMOKE: make_ilsvrc_dataset.py --num_classes 100 on a (zero-byte) ILSVRC2012 tree,
    val_classes/ from a class-sorted val, make_coco_dataset.py with COCO_ARGS; then a rerun."""
    wnids = ["n%07d" % i for i in range(120, 0, -1)]
    src = make_ilsvrc_source(tmp_path, list(range(1000)) + ILSVRC_TEST_INDS.tolist(), wnids=wnids)
    by_class = tmp_path / "val_by_class"
    for w in wnids:
        (by_class / w).mkdir(parents=True)
    write_fake_coco(str(tmp_path / "coco"))
    env = dict(SMOKE="0", STAGES="data", MODELS="pretrained coco", IMAGENET_SRC=str(src),
               IMAGENET_ROOT=str(tmp_path / "in100"), IMAGENET_VAL_BY_CLASS=str(by_class),
               COCO_SRC=str(tmp_path / "coco"), COCO_ROOT=str(tmp_path / "coco_out"), COCO_ARGS="--drop_unlabeled",
               RESULTS_DIR=str(tmp_path / "results"))
    proc = run_study(tmp_path / "cwd", **env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    first_100 = sorted(wnids)[:100]
    assert sorted(os.listdir(tmp_path / "in100" / "train")) == first_100
    assert len(os.listdir(tmp_path / "in100" / "test" / "imgs")) == 10000
    val_classes = tmp_path / "in100" / "val_classes"
    assert sorted(os.listdir(val_classes)) == first_100
    assert os.readlink(val_classes / first_100[0]) == str(by_class / first_100[0])
    assert "000_background" not in os.listdir(tmp_path / "coco_out" / "train")
    assert not (tmp_path / "in100" / "stylized").exists()  # no stylized model asked for
    proc = run_study(tmp_path / "cwd", **env)
    assert proc.returncode == 0
    assert "skipped  ImageNet-100\n" in proc.stdout and "skipped  ImageNet-100 val_classes" in proc.stdout
    assert "skipped  COCO 2017" in proc.stdout


def test_pretrained_weights_elsewhere_must_be_put_there(tmp_path):
    proc = run_study(tmp_path / "root", SMOKE="0", STAGES="train", MODELS="pretrained",
                     CHECKPOINTS_DIR_PRETRAINED=str(tmp_path / "elsewhere"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "download_siggraph_model.sh" in lines[0], proc.stderr


@pytest.mark.parametrize("env, message", [({"PRETRAINED": "maybe"}, "PRETRAINED must be download or retrain"),
                                          ({"TRAIN_JOBS": "0"}, "TRAIN_JOBS must be a positive integer"),
                                          ({"MODELS": "pretrained imagenet"}, "unknown model 'imagenet'"),
                                          ({"STAGES": "train deploy"}, "unknown stage 'deploy'")])
def test_bad_configuration_is_one_line(tmp_path, env, message):
    proc = run_study(tmp_path / "root", **env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"run_study.sh: {message}"), proc.stderr
    assert not (tmp_path / "root").exists()


def test_run_entry_points_runs_in_order_and_stops_at_a_failure(tmp_path, capsys):
    log = tmp_path / "log"
    for name, body in (("ok.py", "open(argv[0], 'a').write('ok ' + ' '.join(argv[1:]) + chr(10)); return 0"),
                       ("fails.py", "open(argv[0], 'a').write('fails' + chr(10)); return 3"),
                       ("usage.py", "import argparse; argparse.ArgumentParser().parse_args(argv); return 0")):
        (tmp_path / name).write_text(f"def main(argv):\n    {body}\n")
    ok, fails, usage = (str(tmp_path / n) for n in ("ok.py", "fails.py", "usage.py"))
    assert run_entry_points.main([ok, str(log), "a", ":::", ok, str(log), "b", "--", "c"]) == 0
    assert log.read_text() == "ok a\nok b -- c\n"
    assert run_entry_points.main([ok, str(log), "x", ":::", fails, str(log), ":::", ok, str(log), "never"]) == 3
    assert log.read_text().splitlines()[-2:] == ["ok x", "fails"]
    assert run_entry_points.main([usage, "--bogus"]) == 2
    assert "failed (exit status 2)" in capsys.readouterr().err
    assert run_entry_points.main([str(tmp_path / "missing.py")]) == 2
    assert run_entry_points.split_groups(["a", ":::", ":::", "b", "c"]) == [["a"], ["b", "c"]]
