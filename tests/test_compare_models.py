"""compare_models.py on real outputs of test.py and test_sweep.py (tiny data, CPU)."""
import json
import os

import pytest
import torch

import compare_models
import test_sweep
from evaluation import report
from evaluation.sweep import read_csv_baseline
from models.networks import define_G
from scripts import make_sample_dataset
from tests.browser import assert_page_ok
from tests.helpers import load_test_script
from util.checkpoint import save_network

test_script = load_test_script()


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Two models evaluated by test.py and test_sweep.py, and probe results for one of them."""
    root = tmp_path_factory.mktemp("compare")
    make_sample_dataset.main(["--out_path", str(root / "data"), "--size", "40", "--per_image", "1",
                              "--val_per_image", "1"])
    common = ["--dataroot", str(root / "data" / "val"), "--checkpoints_dir", str(root / "ckpt"),
              "--results_dir", str(root / "results"), "--loadSize", "32", "--how_many", "2", "--gpu_ids", "-1",
              "--num_threads", "0"]
    for seed, name in ((0, "alpha"), (1, "beta")):
        torch.manual_seed(seed)
        save_network(define_G(), str(root / "ckpt" / name / "latest_net_G.pth"))
        assert test_script.main(common + ["--name", name]) == 0
        assert test_sweep.main(common + ["--name", name, "--sample_Ps", "6"]) == 0
    probes = {"protocol": "corrected", "num_classes": 4,
              "layers": {f"conv{i}": {"val_top1": 0.25 + 0.1 * i, "val_top5": 1.0, "train_top1": 0.3 + 0.1 * i}
                         for i in range(1, 6)}}
    os.makedirs(root / "probes_alpha")
    (root / "probes_alpha" / "results.json").write_text(json.dumps(probes))
    return root


def test_report(study, capsys):
    out = study / "report"
    assert compare_models.main(["--names", "alpha", "beta", "--results_dir", str(study / "results"),
                                "--probes", f"alpha={study / 'probes_alpha'}", "--out", str(out)]) == 0
    html = (out / "index.html").read_text()
    assert (out / "sweep.png").stat().st_size > 0 and (out / "probes.png").stat().st_size > 0
    # Every model appears with links to its pages, relative to the report.
    for name in ("alpha", "beta"):
        assert f'href="../results/{name}/val_latest/index.html"' in html
        assert f'href="../results/{name}/sweep_latest/index.html"' in html
    # The sweep table has the 26 levels; the value of alpha at 0 hints is its sweep.csv's.
    first_row = (study / "results" / "alpha" / "sweep_latest" / "sweep.csv").read_text().splitlines()[1]
    _n, mean, se = first_row.split(",")[:3]  # then the no-colour baseline's columns
    assert "<td>Auto</td>" in html and f"{float(mean):.2f} ± {float(se):.2f}" in html
    assert html.count("<td>501</td>") == 1
    # The metric tables: one per hint setting, both models, the test.py metric names.
    metrics = json.loads((study / "results" / "beta" / "val_latest" / "metrics.json").read_text())
    for setting in metrics["settings"]:
        assert f"sample_p = {setting['sample_p']:g}" in html
        assert f"{setting['psnr']['mean']:.3f} ± {setting['psnr']['se']:.3f}" in html
    assert "<th>ssim</th>" in html and "<th>ciede2000</th>" in html
    # Probe results for alpha only: conv5 val top-1 75.0%, top-5 100.0%.
    assert "75.0 / 100.0" in html and "corrected" in html
    assert "note: beta" not in capsys.readouterr().err  # beta has metrics and a sweep
    assert_page_ok(out / "index.html", min_images=2)


def test_report_shows_the_no_colour_baseline(study):
    """A labelled row of the no-colour baseline (gray, ab = 0) under each model in every metric
    table (metrics.json's values) and at the end of the sweep table (sweep.csv's); one dashed line
    in the plot, as both models were swept on the same images."""
    out = study / "report_baseline"
    assert compare_models.main(["--names", "alpha", "beta", "--results_dir", str(study / "results"),
                                "--out", str(out)]) == 0
    html = (out / "index.html").read_text().replace("\n", "").replace(" ", "")
    label = "nocolour(gray,ab=0)"
    for name in ("alpha", "beta"):
        metrics = json.loads((study / "results" / name / "val_latest" / "metrics.json").read_text())
        for setting in metrics["settings"]:
            gray = setting["gray_baseline"]
            cells = [f"{gray[k]['mean']:.3f}±{gray[k]['se']:.3f}" for k in ("psnr", "ssim", "colorfulness")]
            assert f"<td>{name}:{label}</td><td>2</td><td>{cells[0]}</td><td>{cells[1]}</td>" in html
    gray = {name: read_csv_baseline(study / "results" / name / "sweep_latest" / "sweep.csv")
            for name in ("alpha", "beta")}
    assert gray["alpha"] == gray["beta"]  # the same images: the same baseline
    row = "".join(f"<td>{g[0]:.2f}±{g[1]:.2f}</td>" for g in gray.values())
    assert f"<td>{label}</td>{row}</tr>" in html
    models = report_models(study)
    assert report.sweep_baselines(models) == [("no colour (gray, ab = 0)", gray["alpha"][0])]
    models[1]["gray"] = (gray["beta"][0] + 1.0, 0.0)  # swept on other images: one line per model, named
    assert [label for label, _ in report.sweep_baselines(models)] == [
        "alpha: no colour (gray, ab = 0)", "beta: no colour (gray, ab = 0)"]


def report_models(study):
    return [report.gather(name, str(study / "results"), "latest", None) for name in ("alpha", "beta")]


def test_missing_results_are_noted_and_none_is_an_error(study, capsys):
    out = study / "report2"
    assert compare_models.main(["--names", "alpha", "gamma", "--results_dir", str(study / "results"),
                                "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "note: gamma: no metrics, sweep results found" in err
    assert "No probe results found." in (out / "index.html").read_text()
    assert compare_models.main(["--names", "gamma", "--results_dir", str(study / "results"), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "note: gamma: no metrics, sweep results found",
        f"error: no results found for gamma under {study / 'results'}"]
    with pytest.raises(SystemExit):
        compare_models.main(["--names", "alpha", "--probes", "zeta=/nowhere"])


def test_labels_for_models_that_share_a_name(study, tmp_path):
    """LABEL=SUBDIR: two models trained under the same --name in different checkpoint folders,
    evaluated into results/<label>/<name>/, as scripts/run_study.sh does."""
    results = tmp_path / "results"
    for label, name in (("stylized", "alpha"), ("coco", "beta")):
        os.makedirs(results / label)
        os.symlink(study / "results" / name, results / label / "siggraph_reg2")
    out = tmp_path / "report"
    assert compare_models.main(["--names", "stylized=stylized/siggraph_reg2", "coco=coco/siggraph_reg2",
                                "--results_dir", str(results), "--probes", f"coco={study / 'probes_alpha'}",
                                "--out", str(out)]) == 0
    html = (out / "index.html").read_text()
    assert "<p>Models: stylized, coco; checkpoints 'latest'.</p>" in html
    assert 'href="../results/coco/siggraph_reg2/val_latest/index.html"' in html
    assert "<td>coco</td><td>corrected</td>" in html.replace("\n", "").replace(" ", "")
    beta = json.loads((study / "results" / "beta" / "val_latest" / "metrics.json").read_text())
    psnr = beta["settings"][0]["psnr"]
    assert f"{psnr['mean']:.3f} ± {psnr['se']:.3f}" in html
    for bad in (["--names", "a=x", "a=y"], ["--names", "a="], ["--names", "a=alpha", "--probes", "alpha=/x"]):
        with pytest.raises(SystemExit):
            compare_models.main(bad + ["--results_dir", str(study / "results"), "--out", str(out)])
