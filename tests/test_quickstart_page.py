"""scripts/quickstart_page.py: the quickstart's landing page, on stand-in files laid out as the
quickstart writes them (no training), opened in headless Chromium."""
import json
import os
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
from PIL import Image

from evaluation.sweep import SWEEP_NUM_POINTS, write_csv
from scripts import quickstart_page
from tests.browser import loaded_images, open_page

PHASES = ["siggraph_class_small", "siggraph_class", "siggraph_reg", "siggraph_reg2"]


def png(path, colour):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", (16, 16), colour).save(path)


def html(path, title):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(f"<html><head><title>{title}</title></head><body>{title}</body></html>")


def stand_ins(root):
    """The quickstart's outputs (names as scripts/quickstart.sh writes them), with a rising sweep
    (18 dB auto, 25 at 100 hints, 28 at 501) and a 15.7 dB no-colour baseline."""
    ckpt, results = root / "ckpt", root / "results"
    for phase in PHASES:
        html(ckpt / phase / "web" / "index.html", phase)
        (ckpt / phase / "loss_log.txt").write_text("loss\n")
    final = results / "siggraph_reg2"
    html(final / "val_latest" / "index.html", "test page")
    stat = lambda mean: {"mean": mean, "se": 0.5}  # noqa: E731
    settings = [{"sample_p": p, "psnr": stat(psnr), "gray_baseline": {"psnr": stat(15.7)}}
                for p, psnr in ((1.0, 18.1), (0.125, 21.2), (0.03125, 23.4))]
    (final / "val_latest" / "metrics.json").write_text(json.dumps({"settings": settings}))
    html(final / "sweep_latest" / "index.html", "sweep page")
    mean = np.interp(np.log1p(SWEEP_NUM_POINTS), np.log1p([0, 100, 501]), [18.0, 25.0, 28.0])
    write_csv(str(final / "sweep_latest" / "sweep.csv"), SWEEP_NUM_POINTS, mean, np.full(26, 0.4), baseline=(15.7, 0.6))
    png(final / "sweep_latest" / "sweep.png", "white")
    html(results / "comparison" / "index.html", "comparison")
    png(root / "data" / "val" / "coffee_000.png", "brown")
    png(results / "coffee_000_colorized.png", "orange")
    return ["--checkpoints_dir", str(ckpt), "--results_dir", str(results),
            "--photo", str(root / "data" / "val" / "coffee_000.png"),
            "--colorized", str(results / "coffee_000_colorized.png")]


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    root = tmp_path_factory.mktemp("landing")
    return root, stand_ins(root)


def test_landing_page_links_and_images_resolve_in_chromium(landing, capsys):
    root, args = landing
    assert quickstart_page.main(args) == 0
    page_path = root / "results" / "index.html"
    assert capsys.readouterr().out.splitlines()[-1] == f"landing page: {page_path}"
    with open_page(page_path) as (page, errors):
        images = loaded_images(page)
        hrefs = page.evaluate("Array.from(document.links).map(a => a.href)")
    assert not errors, errors
    assert len(images) == 3 and all(width > 0 for _src, width in images), images  # sweep plot, before, after
    targets = {os.path.relpath(unquote(urlparse(h).path), root) for h in hrefs}
    expected = {f"ckpt/{phase}/{name}" for phase in PHASES for name in ("web/index.html", "loss_log.txt")} | {
        "results/siggraph_reg2/val_latest/index.html", "results/siggraph_reg2/val_latest/metrics.json",
        "results/siggraph_reg2/sweep_latest/index.html", "results/siggraph_reg2/sweep_latest/sweep.csv",
        "results/siggraph_reg2/sweep_latest/sweep.png", "results/comparison/index.html",
        "data/val/coffee_000.png", "results/coffee_000_colorized.png"}
    assert targets == expected
    assert all((root / t).is_file() for t in targets)
    text = page_path.read_text()
    for cell in ("18.00 ± 0.40", "25.00 ± 0.40", "28.00 ± 0.40", "15.70 ± 0.60", "23.40 ± 0.50"):
        assert f"<td>{cell}</td>" in text, cell
    assert "Auto (no hints)" in text and "<th>501 hints</th>" in text and "no colour (gray, ab = 0)" in text


def test_missing_outputs_are_named_not_linked(landing, tmp_path, capsys):
    root, args = landing
    out = tmp_path / "results"
    args = args[:3] + [str(out)] + args[4:]  # another results folder: no evaluation, no report
    assert quickstart_page.main(args) == 0
    captured = capsys.readouterr()
    text = (out / "index.html").read_text()
    report = out / "comparison" / "index.html"
    assert f"warning: not found, named on the page without a link: {report}" in captured.err.splitlines()
    assert f"comparison report (not found: {report})" in text and "comparison/index.html\"" not in text
    assert 'href="/' not in text and "file:" not in text  # every link relative to the page
    assert text.count("<a href=") == 10  # 4 phases x (page, loss log), the photo before and after
