"""What a person running train.py sees: the one-line summary (the option table only with
--verbose, which tests/test_train.py's test_verbose_suffix_norm_and_classification shows), the loss
curves on the training page, redrawn as the run goes and rewound with the log on --resume, and
TensorBoard scalars when tensorboard is installed (CPU, tiny data)."""
import contextlib
import io
import json
import time
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import train
from tests.browser import check_page
from tests.helpers import tiny_train_args
from training import visualizer
from training.visualizer import PLOT_NAME, Visualizer


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


@pytest.fixture(scope="module")
def page_run(tiny_data, tmp_path_factory):
    """One tiny run with the page on: 8 images, losses logged and visuals saved every 4 (two log
    points). Every drawing of the loss plot is recorded as (images trained of each point, values
    of G, PNG bytes); stdout is kept."""
    ckpt = tmp_path_factory.mktemp("page")
    draws = []
    real = visualizer.plot_losses

    def spy(history, path, title=""):
        real(history, path, title)
        with open(path, "rb") as f:
            draws.append((list(history.iters), list(history.series["G"]), f.read()))
        return path

    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.setattr(visualizer, "plot_losses", spy)
        rc = train.main(tiny_train_args(tiny_data, ckpt, "page", "--max_dataset_size", "8", "--print_freq", "4",
                                        "--display_freq", "4"))
    assert rc == 0
    return SimpleNamespace(data=tiny_data, ckpt=ckpt, dir=ckpt / "page", draws=draws, stdout=out.getvalue())


def test_loss_plot_is_redrawn_between_log_points(page_run):
    records = read_jsonl(page_run.dir / "loss_log.jsonl")
    assert [r["iters"] for r in records] == [4, 8]
    draws = page_run.draws
    # Drawn from the first log point on, with the points logged so far; the last drawing has them all.
    assert draws[0][0] == [4] and draws[-1][0] == [4, 8]
    assert draws[-1][1] == pytest.approx([r["losses"]["G"] for r in records])
    assert all(len(a[0]) <= len(b[0]) for a, b in zip(draws, draws[1:]))
    # The picture changed when the second point came, and only then: the same points draw the same image.
    one = [png for iters, _, png in draws if len(iters) == 1]
    two = [png for iters, _, png in draws if len(iters) == 2]
    assert one and two and len(set(one)) == 1 and len(set(two)) == 1
    assert pixels(one[0]).shape == pixels(two[0]).shape == (400, 900, 3)
    assert (pixels(one[0]) != pixels(two[0])).any(axis=2).sum() > 100
    assert (page_run.dir / "web" / "images" / PLOT_NAME).read_bytes() == two[0]


def test_training_page_shows_the_loss_plot_first(page_run):
    html = (page_run.dir / "web" / "index.html").read_text()
    assert html.index(f"images/{PLOT_NAME}") < html.index("images/epoch000_gray.png")
    images, errors = check_page(page_run.dir / "web" / "index.html")
    assert images[0] == (f"images/{PLOT_NAME}", 900)  # resolved: its natural width
    assert len(images) == 1 + 13 and all(width > 0 for _, width in images), images
    assert not errors, errors


def test_default_run_prints_a_summary_line_and_no_option_table(page_run):
    out = page_run.stdout
    assert "----------------- Options" not in out
    summary = [line for line in out.splitlines() if line.startswith("training page ")]
    assert summary == [f"training page on cpu: #training images = 8 per epoch (of 12 in {page_run.data / 'train'}), "
                       f"epochs 0 to 0, batch size 4; writing to {page_run.dir}"]
    assert "End of epoch 0 / 0" in out and "epoch 0: 100%" in out  # the progress bar
    assert "----------------- Options" in (page_run.dir / "opt.txt").read_text()


def test_tensorboard_scalars_are_the_logged_losses_and_lr(page_run):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (it is optional)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    records = read_jsonl(page_run.dir / "loss_log.jsonl")
    events = EventAccumulator(str(page_run.dir / "tensorboard"))
    events.Reload()
    names = list(records[0]["losses"])
    assert sorted(events.Tags()["scalars"]) == sorted([f"loss/{name}" for name in names] + ["lr"])
    for name in ("G", "G_CE", "S_reg"):
        scalars = events.Scalars(f"loss/{name}")
        assert [s.step for s in scalars] == [4, 8]
        assert [s.value for s in scalars] == pytest.approx([r["losses"][name] for r in records], rel=1e-6)
    assert [s.value for s in events.Scalars("lr")] == pytest.approx([1e-4, 1e-4])


def log_points(folder, points, tensorboard=False, use_html=True):
    """A Visualizer that logged (images trained, G) points and was closed, as a run ends."""
    log = Visualizer(str(folder), use_html=use_html, name="r", tensorboard=tensorboard)
    for iters, g in points:
        log.print_current_losses(0, iters, {"G_CE": g / 2, "0": 0.0, "G": g}, 0.1, 0.0, extra={"lr": 1e-4})
    log.close()
    return log


def test_resume_redraws_the_plot_from_the_rewound_log(tmp_path):
    plot = tmp_path / "run" / "web" / "images" / PLOT_NAME
    log_points(tmp_path / "run", [(4, 3.0), (8, 2.0), (12, 1.5)])
    three = plot.read_bytes()
    resumed = Visualizer(str(tmp_path / "run"), name="r")
    resumed.rewind(8, [])
    log_points(tmp_path / "reference", [(4, 3.0), (8, 2.0)])
    assert plot.read_bytes() == (tmp_path / "reference" / "web" / "images" / PLOT_NAME).read_bytes() != three
    assert PLOT_NAME in (tmp_path / "run" / "web" / "index.html").read_text()


def test_no_html_means_no_page_and_no_plot(tmp_path):
    log_points(tmp_path, [(4, 3.0), (8, 2.0)], use_html=False)
    assert [r["iters"] for r in read_jsonl(tmp_path / "loss_log.jsonl")] == [4, 8]
    assert not (tmp_path / "web").exists() and not list(tmp_path.rglob("*.png"))


def test_resume_hides_the_tensorboard_events_after_the_resume_point(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (it is optional)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log_points(tmp_path, [(4, 3.0), (8, 2.0), (12, 1.5)], tensorboard=True, use_html=False)
    time.sleep(1.05)  # a resumed run is a later process: event files are read in the order of their creation second
    resumed = Visualizer(str(tmp_path), use_html=False, name="r", tensorboard=True)
    resumed.rewind(8, [])
    resumed.print_current_losses(0, 12, {"G": 1.25}, 0.1, 0.0)
    resumed.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    scalars = events.Scalars("loss/G")
    assert [(s.step, s.value) for s in scalars] == [(4, 3.0), (8, 2.0), (12, 1.25)]
