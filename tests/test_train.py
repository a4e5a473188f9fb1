"""End-to-end tests of train.py, its options and its outputs, on tiny images (CPU)."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import train
from data.samplers import RandomSubsetSampler
from tests.helpers import tiny_train_args

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_TRAIN = 12  # 6 photos x 2 crops


@pytest.fixture
def data_root(tiny_data):
    return tiny_data


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def two_epochs(tiny_data, module_tmp):
    """One run of 2 epochs of 12 images with the HTML page: its folder (read-only for the tests)."""
    ckpt = module_tmp / "two_epochs"
    rc = train.main(tiny_train_args(tiny_data, ckpt, "run", "--niter", "2", "--print_freq", "4",
                                    "--sample_p", "0.125", "--display_freq", "8"))
    assert rc == 0
    return ckpt / "run"


def test_checkpoints_latest_and_per_epoch_are_plain_state_dicts(two_epochs):
    """latest + one per epoch, plain state_dicts with the 107 original keys."""
    run = two_epochs
    for name in ("latest_net_G.pth", "0_net_G.pth", "1_net_G.pth"):
        state = torch.load(run / name, weights_only=True)
        assert type(state).__name__ == "OrderedDict" and len(state) == 107
        assert list(state)[0] == "model1.0.weight" and list(state)[-1] == "model_out.0.bias"
        assert not any(k.startswith("module.") for k in state)
    assert torch.equal(torch.load(run / "latest_net_G.pth", weights_only=True)["model1.0.weight"],
                       torch.load(run / "1_net_G.pth", weights_only=True)["model1.0.weight"])


def test_opt_txt_lists_the_options_marking_non_defaults(two_epochs):
    opt_txt = (two_epochs / "opt.txt").read_text()
    assert re.search(r"sample_p: 0.125\s+\[default: 1.0\]", opt_txt)
    assert "lambda_sat: 0.0" in opt_txt


def test_loss_log_in_the_original_format(two_epochs):
    """2 epochs x 12 images, printed every 4 -> 6 lines."""
    log_lines = (two_epochs / "loss_log.txt").read_text().splitlines()
    assert log_lines[0].startswith("================ Training Loss (")
    entries = [line for line in log_lines[1:] if line.startswith("(epoch")]
    assert len(entries) == 6
    assert re.match(r"\(epoch: 0, iters: 4, time: [\d.]+, data: [\d.]+\) G_CE: [\d.]+, G_entr: ", entries[0])


def test_jsonl_log_has_the_smoothed_and_raw_losses_and_the_lr(two_epochs):
    records = read_jsonl(two_epochs / "loss_log.jsonl")
    assert [r["iters"] for r in records] == [4, 8, 12, 16, 20, 24]
    names = ["G_CE", "G_entr", "G_entr_hint", "G_L1_max", "G_L1_mean", "G_L1_reg", "G_fake_real",
             "G_fake_hint", "G_real_hint", "0", "S_reg", "G"]
    assert list(records[0]["losses"]) == names and list(records[0]["raw"]) == names
    assert records[0]["lr"] == pytest.approx(1e-4)
    first = records[0]["raw"]
    assert first["G"] == pytest.approx(first["G_CE"] + first["G_L1_reg"], rel=1e-5)
    assert all(np.isfinite(v) for r in records for v in r["losses"].values())


def test_training_page_shows_the_13_visuals_of_each_epoch(two_epochs):
    run = two_epochs
    html = (run / "web" / "index.html").read_text()
    for epoch in (0, 1):
        for label in ("gray", "real", "fake_max", "fake_mean", "fake_reg", "hint", "real_ab", "fake_ab_max",
                      "fake_ab_mean", "fake_ab_reg", "mask", "hint_ab", "fake_entr"):
            assert (run / "web" / "images" / f"epoch{epoch:03d}_{label}.png").is_file()
            assert f"epoch{epoch:03d}_{label}.png" in html


def test_same_seed_same_weights_other_seed_differs(data_root, tmp_path):
    # 2 steps of a seeded random subset of 8 images: the data order, the hints and the init all depend on the seed
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        assert train.main(tiny_train_args(data_root, tmp_path, name, "--seed", seed, "--sample_p", "0.125",
                                    "--save_epoch_freq", "5", "--no_html", "--max_dataset_size", "8")) == 0
    load = lambda n: torch.load(tmp_path / n / "latest_net_G.pth", weights_only=True)  # noqa: E731
    a, b, c = load("a"), load("b"), load("c")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["model1.0.weight"], c["model1.0.weight"])
    assert not (tmp_path / "a" / "web").exists()  # --no_html


def test_load_model_continues_from_checkpoint(data_root, tmp_path):
    one_step = ("--no_html", "--max_dataset_size", "4")
    assert train.main(tiny_train_args(data_root, tmp_path, "p1", "--classification", *one_step)) == 0
    start = torch.load(tmp_path / "p1" / "latest_net_G.pth", weights_only=True)
    os.makedirs(tmp_path / "p2")
    torch.save(start, tmp_path / "p2" / "latest_net_G.pth")
    # lr 0: Adam leaves the parameters as loaded; BatchNorm running statistics still move.
    assert train.main(tiny_train_args(data_root, tmp_path, "p2", "--load_model", "--lr", "0", *one_step)) == 0
    after = torch.load(tmp_path / "p2" / "latest_net_G.pth", weights_only=True)
    assert torch.equal(after["model5.0.weight"], start["model5.0.weight"])
    assert torch.equal(after["model_class.0.bias"], start["model_class.0.bias"])
    assert not torch.equal(after["model1.4.running_mean"], start["model1.4.running_mean"])
    # A fresh run (no --load_model) does not start from those weights.
    assert train.main(tiny_train_args(data_root, tmp_path, "p3", "--lr", "0", *one_step)) == 0
    fresh = torch.load(tmp_path / "p3" / "latest_net_G.pth", weights_only=True)
    assert not torch.equal(fresh["model5.0.weight"], start["model5.0.weight"])


def test_which_epoch_selects_the_file(data_root, tmp_path, two_epochs):
    (tmp_path / "w").mkdir()
    for name in ("0_net_G.pth", "latest_net_G.pth"):  # the weights after epoch 0 and after epoch 1
        shutil.copyfile(two_epochs / name, tmp_path / "w" / name)
    epoch0 = torch.load(tmp_path / "w" / "0_net_G.pth", weights_only=True)
    latest = torch.load(tmp_path / "w" / "latest_net_G.pth", weights_only=True)
    assert not torch.equal(latest["model4.0.weight"], epoch0["model4.0.weight"])
    assert train.main(tiny_train_args(data_root, tmp_path, "w", "--load_model", "--which_epoch", "0", "--lr", "0",
                                "--no_html", "--max_dataset_size", "4")) == 0
    assert torch.equal(torch.load(tmp_path / "w" / "latest_net_G.pth", weights_only=True)["model4.0.weight"],
                       epoch0["model4.0.weight"])


def test_load_model_missing_file_is_one_line_error(data_root, tmp_path):
    proc = subprocess.run([sys.executable, "train.py", *tiny_train_args(data_root, tmp_path, "none", "--load_model")],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "latest_net_G.pth" in errors[0]


def test_max_dataset_size_and_frequencies(data_root, tmp_path):
    # 5 images per epoch, batch 4 -> counts 4, 5, 9, 10; print every 3 images fires when a multiple of 3
    # is crossed: at 4 (3) and 9 (6 and 9), never at 5 or 10.
    assert train.main(tiny_train_args(data_root, tmp_path, "m", "--niter", "2", "--max_dataset_size", "5",
                                "--print_freq", "3", "--save_latest_freq", "4", "--no_html")) == 0
    records = read_jsonl(tmp_path / "m" / "loss_log.jsonl")
    assert [r["iters"] for r in records] == [4, 9]


def test_random_subset_sampler_changes_each_epoch():
    sampler = RandomSubsetSampler(100, 10, seed=1)
    seen = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        indices = list(sampler)
        assert len(indices) == len(sampler) == 10 and len(set(indices)) == 10
        seen.append(indices)
    assert seen[0] != seen[1] != seen[2]
    sampler.set_epoch(0)
    assert list(sampler) == seen[0]  # reproducible per epoch
    assert sorted(RandomSubsetSampler(7, None, seed=0)) == list(range(7))
    assert len(RandomSubsetSampler(7, 50)) == 7


def test_unreadable_files_are_skipped_and_counted(data_root, tmp_path, capfd):
    bad_root = tmp_path / "bad"
    os.makedirs(bad_root / "photos")
    for f in sorted((data_root / "train" / "astronaut").iterdir()):
        (bad_root / "photos" / f.name).write_bytes(f.read_bytes())
    (bad_root / "photos" / "empty.jpg").write_bytes(b"")
    (bad_root / "photos" / "notes.png").write_text("this is not an image")
    assert train.main(["--dataroot", str(bad_root), "--checkpoints_dir", str(tmp_path), "--name", "b",
                       "--gpu_ids", "-1", "--loadSize", "40", "--fineSize", "32", "--batch_size", "4",
                       "--num_threads", "0", "--niter", "1", "--niter_decay", "0", "--no_html"]) == 0
    out, err = capfd.readouterr()
    assert "skipped 2 unreadable image(s)" in out
    assert err.count("warning: skipping unreadable image") == 2
    assert (tmp_path / "b" / "latest_net_G.pth").is_file()


def test_lambda_lr_schedule_in_training(data_root, tmp_path):
    # lambda: niter 1 + niter_decay 2 -> factors 1, 2/3, 1/3 for epochs 0, 1, 2 (one step each).
    assert train.main(tiny_train_args(data_root, tmp_path, "l", "--niter_decay", "2", "--print_freq", "4",
                                "--save_epoch_freq", "10", "--no_html", "--max_dataset_size", "4")) == 0
    lrs = [r["lr"] for r in read_jsonl(tmp_path / "l" / "loss_log.jsonl")]
    assert lrs == pytest.approx([1e-4, 1e-4 * 2 / 3, 1e-4 / 3])


def test_step_lr_schedule_in_training(data_root, tmp_path):
    # step: x0.1 after every lr_decay_iters epochs.
    assert train.main(tiny_train_args(data_root, tmp_path, "s", "--niter", "3", "--lr_policy", "step",
                                "--lr_decay_iters", "2", "--print_freq", "4", "--save_epoch_freq", "10",
                                "--no_html", "--max_dataset_size", "4")) == 0
    assert [r["lr"] for r in read_jsonl(tmp_path / "s" / "loss_log.jsonl")] == pytest.approx([1e-4, 1e-4, 1e-5])


def test_plateau_lr_schedule_and_epoch_count_in_training(data_root, tmp_path):
    # plateau runs (its LR only drops after 5 bad epochs) and --epoch_count shifts the epoch numbers.
    assert train.main(tiny_train_args(data_root, tmp_path, "pl", "--niter", "3", "--epoch_count", "1",
                                "--lr_policy", "plateau", "--no_html", "--max_dataset_size", "4")) == 0
    assert sorted(p.name for p in (tmp_path / "pl").glob("*_net_G.pth")) == \
        ["1_net_G.pth", "2_net_G.pth", "latest_net_G.pth"]


def test_options_reach_the_batch_and_model(data_root, tmp_path, monkeypatch):
    """The colour, hint and loss options are passed through to the code that uses them."""
    import util.hints

    seen = {}
    real = util.hints.get_colorization_data

    def spy(rgb, **kwargs):
        seen.update(kwargs)
        return real(rgb, **kwargs)

    monkeypatch.setattr(train, "get_colorization_data", spy)
    assert train.main(tiny_train_args(data_root, tmp_path, "o", "--ab_norm", "100", "--l_norm", "90", "--l_cent", "45",
                                "--mask_cent", "0", "--sample_p", "0.5", "--sample_Ps", "2", "3",
                                "--lambda_A", "0.5", "--lambda_sat", "1e-4", "--avg_loss_alpha", "0",
                                "--print_freq", "4", "--init_type", "kaiming", "--beta1", "0.5",
                                "--ab_max", "55", "--ab_quant", "5", "--no_html", "--max_dataset_size", "4")) == 0
    assert seen["ab_norm"] == 100 and seen["l_norm"] == 90 and seen["l_cent"] == 45
    assert seen["mask_cent"] == 0 and seen["p"] == 0.5 and list(seen["sample_Ps"]) == [2, 3]
    record = read_jsonl(tmp_path / "o" / "loss_log.jsonl")[0]
    raw = record["raw"]
    assert raw["G"] == pytest.approx(0.5 * raw["G_CE"] + raw["G_L1_reg"] + 1e-4 * raw["S_reg"], rel=1e-5)
    assert record["losses"] == pytest.approx(raw)  # avg_loss_alpha 0: no smoothing


def test_verbose_suffix_norm_and_classification(data_root, tmp_path, capsys):
    assert train.main(tiny_train_args(data_root, tmp_path, "v", "--verbose", "--suffix", "p{sample_p}",
                                "--norm", "instance", "--classification", "--no_html",
                                "--max_dataset_size", "4")) == 0
    out = capsys.readouterr().out
    assert "SIGGRAPHGenerator(" in out and "InstanceNorm2d" in out
    state = torch.load(tmp_path / "v_p1.0" / "latest_net_G.pth", weights_only=True)
    assert len(state) == 62 and not any("running_mean" in k for k in state)
    assert "classification: True" in (tmp_path / "v_p1.0" / "opt.txt").read_text()


@pytest.mark.parametrize("flags, message", [
    (["--fineSize", "30"], "multiple of 8"),
    (["--fineSize", "64"], "larger than --loadSize"),
    (["--sample_p", "0"], "--sample_p"),
    (["--ab_quant", "7"], "23"),
    (["--max_dataset_size", "0"], "--max_dataset_size"),
])
def test_bad_options_are_one_line_errors(data_root, tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        train.main([*tiny_train_args(data_root, tmp_path, "x"), *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    # argparse's usage block, then one error line (the program name is pytest's argv[0] here)
    assert err[0].startswith("usage: ") and "Traceback" not in "\n".join(err)
    assert re.fullmatch(r"\S+: error: .*", err[-1]) and message in err[-1], err[-1]
    assert not any("error" in line for line in err[:-1])
    assert not (tmp_path / "x").exists()


def test_missing_dataroot_and_cpu_notice(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "train.py", "--dataroot", str(tmp_path / "nowhere"),
                           "--checkpoints_dir", str(tmp_path), "--name", "n"],
                          cwd=REPO, capture_output=True, text=True, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("notice: no CUDA device found, running on the CPU")
    assert lines[-1] == f"error: dataset folder not found: {tmp_path / 'nowhere'}"
