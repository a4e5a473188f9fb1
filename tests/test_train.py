"""End-to-end tests of train.py, its options and its outputs, on tiny images (CPU)."""
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import train
import util.hints
from data.samplers import RandomSubsetSampler
from tests.helpers import reference_train_args, tiny_train_args

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
    """One run of 2 epochs of 5 images (batches of 4 and 1) with the HTML page, losses printed every
    3 images and the latest weights saved every 4: its folder (read-only for the tests)."""
    ckpt = module_tmp / "two_epochs"
    rc = train.main(tiny_train_args(tiny_data, ckpt, "run", "--niter", "2", "--max_dataset_size", "5",
                                    "--print_freq", "3", "--save_latest_freq", "4", "--sample_p", "0.125",
                                    "--display_freq", "8"))
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
    """2 epochs x 5 images, printed when a multiple of 3 is crossed (at 4 and 9) -> 2 lines."""
    log_lines = (two_epochs / "loss_log.txt").read_text().splitlines()
    assert log_lines[0].startswith("================ Training Loss (")
    entries = [line for line in log_lines[1:] if line.startswith("(epoch")]
    assert len(entries) == 2
    assert re.match(r"\(epoch: 0, iters: 4, time: [\d.]+, data: [\d.]+\) G_CE: [\d.]+, G_entr: ", entries[0])


def test_jsonl_log_has_the_smoothed_and_raw_losses_and_the_lr(two_epochs):
    records = read_jsonl(two_epochs / "loss_log.jsonl")
    assert [r["iters"] for r in records] == [4, 9]
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


def test_same_seed_same_weights_other_seed_differs(data_root, tmp_path, reference_run):
    # 2 steps of a seeded random subset of 8 images: the data order, the hints and the init all depend on the seed.
    # reference_run is that run with the default seed (0): the same command again, and with seed 4.
    for name, extra in (("b", ()), ("c", ("--seed", "4"))):
        assert train.main(reference_train_args(data_root, tmp_path, name, *extra)) == 0
    load = lambda run: torch.load(run / "latest_net_G.pth", weights_only=True)  # noqa: E731
    a, b, c = load(reference_run), load(tmp_path / "b"), load(tmp_path / "c")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["model1.0.weight"], c["model1.0.weight"])
    assert not (tmp_path / "b" / "web").exists()  # --no_html


#: The tensors of a checkpoint that the --load_model tests compare.
LOAD_KEYS = ("model1.4.running_mean", "model4.0.weight", "model5.0.weight", "model_class.0.bias")


def some_tensors(path):
    state = torch.load(path, weights_only=True)
    return {k: state[k] for k in LOAD_KEYS}


@pytest.fixture(scope="module")
def loaded_epoch0(tiny_data, module_tmp, two_epochs):
    """One step at --lr 0 with --load_model --which_epoch 0 in a folder holding two_epochs's weights
    after epoch 0 (0_net_G.pth) and after epoch 1 (latest_net_G.pth): LOAD_KEYS of those two files
    (epoch0, latest) and of the latest_net_G.pth the run saved (after)."""
    run = module_tmp / "w"
    run.mkdir()
    for name in ("0_net_G.pth", "latest_net_G.pth"):
        shutil.copyfile(two_epochs / name, run / name)
    epoch0, latest = some_tensors(run / "0_net_G.pth"), some_tensors(run / "latest_net_G.pth")
    assert train.main(tiny_train_args(tiny_data, module_tmp, "w", "--load_model", "--which_epoch", "0", "--lr", "0",
                                      "--no_html", "--max_dataset_size", "4")) == 0
    return SimpleNamespace(epoch0=epoch0, latest=latest, after=some_tensors(run / "latest_net_G.pth"))


def test_load_model_continues_from_checkpoint(data_root, tmp_path, two_epochs, loaded_epoch0):
    start, after = loaded_epoch0.epoch0, loaded_epoch0.after
    # lr 0: Adam leaves the parameters as loaded; BatchNorm running statistics still move.
    assert torch.equal(after["model5.0.weight"], start["model5.0.weight"])
    assert torch.equal(after["model_class.0.bias"], start["model_class.0.bias"])
    assert not torch.equal(after["model1.4.running_mean"], start["model1.4.running_mean"])
    # A fresh run (no --load_model) does not start from those weights, although its folder holds them.
    os.makedirs(tmp_path / "f")
    shutil.copyfile(two_epochs / "0_net_G.pth", tmp_path / "f" / "latest_net_G.pth")
    assert train.main(tiny_train_args(data_root, tmp_path, "f", "--lr", "0", "--no_html",
                                      "--max_dataset_size", "4")) == 0
    fresh = torch.load(tmp_path / "f" / "latest_net_G.pth", weights_only=True)
    assert not torch.equal(fresh["model5.0.weight"], start["model5.0.weight"])


def test_which_epoch_selects_the_file(loaded_epoch0):
    epoch0, latest = loaded_epoch0.epoch0, loaded_epoch0.latest
    assert not torch.equal(latest["model4.0.weight"], epoch0["model4.0.weight"])
    assert torch.equal(loaded_epoch0.after["model4.0.weight"], epoch0["model4.0.weight"])


def test_load_model_missing_file_is_one_line_error(data_root, tmp_path, capsys):
    # In this process (train.py as a program prints the same one line: tests/test_safe_loading.py
    # runs it with --load_model on a poisoned file).
    assert train.main(tiny_train_args(data_root, tmp_path, "none", "--load_model")) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "latest_net_G.pth" in errors[0]


def test_max_dataset_size_and_frequencies(two_epochs):
    # 5 images per epoch, batch 4 -> counts 4, 5, 9, 10; print every 3 images fires when a multiple of 3
    # is crossed: at 4 (3) and 9 (6 and 9), never at 5 or 10.
    records = read_jsonl(two_epochs / "loss_log.jsonl")
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


def test_lambda_lr_schedule_in_training(data_root, tmp_path):
    # lambda: niter 1 + niter_decay 2 -> factors 1, 2/3, 1/3 for epochs 0, 1, 2 (one step of one image each).
    assert train.main(tiny_train_args(data_root, tmp_path, "l", "--niter_decay", "2", "--print_freq", "1",
                                      "--save_epoch_freq", "10", "--no_html", "--max_dataset_size", "1")) == 0
    lrs = [r["lr"] for r in read_jsonl(tmp_path / "l" / "loss_log.jsonl")]
    assert lrs == pytest.approx([1e-4, 1e-4 * 2 / 3, 1e-4 / 3])


def test_step_lr_schedule_in_training(data_root, tmp_path):
    # step: x0.1 after every lr_decay_iters epochs (one step of one image each).
    assert train.main(tiny_train_args(data_root, tmp_path, "s", "--niter", "3", "--lr_policy", "step",
                                      "--lr_decay_iters", "2", "--print_freq", "1", "--save_epoch_freq", "10",
                                      "--no_html", "--max_dataset_size", "1")) == 0
    assert [r["lr"] for r in read_jsonl(tmp_path / "s" / "loss_log.jsonl")] == pytest.approx([1e-4, 1e-4, 1e-5])


def test_plateau_lr_schedule_and_epoch_count_in_training(data_root, tmp_path):
    # plateau runs (its LR only drops after 5 bad epochs) and --epoch_count shifts the epoch numbers.
    assert train.main(tiny_train_args(data_root, tmp_path, "pl", "--niter", "3", "--epoch_count", "1",
                                      "--lr_policy", "plateau", "--no_html", "--max_dataset_size", "1")) == 0
    assert sorted(p.name for p in (tmp_path / "pl").glob("*_net_G.pth")) == \
        ["1_net_G.pth", "2_net_G.pth", "latest_net_G.pth"]


@pytest.fixture(scope="module")
def options_run(tiny_data, module_tmp):
    """One step of one run that sets the colour, hint and loss options, --verbose, --suffix, --norm
    instance and --classification, on a folder of the 2 astronaut crops and 2 unreadable files:
    its folder, the keyword arguments that reached the batch maker, stdout and stderr."""
    photos = module_tmp / "bad" / "train" / "photos"
    os.makedirs(photos)
    for f in sorted((tiny_data / "train" / "astronaut").iterdir()):
        (photos / f.name).write_bytes(f.read_bytes())
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "notes.png").write_text("this is not an image")
    seen = {}
    real = util.hints.get_colorization_data

    def spy(rgb, **kwargs):
        seen.update(kwargs)
        return real(rgb, **kwargs)

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        patch.setattr(train, "get_colorization_data", spy)
        rc = train.main(tiny_train_args(module_tmp / "bad", module_tmp, "o", "--ab_norm", "100", "--l_norm", "90",
                                        "--l_cent", "45", "--mask_cent", "0", "--sample_p", "0.5", "--sample_Ps", "2",
                                        "3", "--lambda_A", "0.5", "--lambda_sat", "1e-4", "--avg_loss_alpha", "0",
                                        "--print_freq", "4", "--init_type", "kaiming", "--beta1", "0.5",
                                        "--ab_max", "55", "--ab_quant", "5", "--verbose", "--suffix", "p{sample_p}",
                                        "--norm", "instance", "--classification", "--no_html",
                                        "--max_dataset_size", "4"))
    assert rc == 0, err.getvalue()
    return SimpleNamespace(dir=module_tmp / "o_p0.5", seen=seen, out=out.getvalue(), err=err.getvalue())


def test_options_reach_the_batch_and_model(options_run):
    """The colour, hint and loss options are passed through to the code that uses them."""
    seen = options_run.seen
    assert seen["ab_norm"] == 100 and seen["l_norm"] == 90 and seen["l_cent"] == 45
    assert seen["mask_cent"] == 0 and seen["p"] == 0.5 and list(seen["sample_Ps"]) == [2, 3]
    record = read_jsonl(options_run.dir / "loss_log.jsonl")[0]
    raw = record["raw"]
    assert raw["G"] == pytest.approx(0.5 * raw["G_CE"] + raw["G_L1_reg"] + 1e-4 * raw["S_reg"], rel=1e-5)
    assert record["losses"] == pytest.approx(raw)  # avg_loss_alpha 0: no smoothing


def test_verbose_suffix_norm_and_classification(options_run):
    """--verbose prints the option table (the one saved in opt.txt) and the network; the default
    run prints neither (tests/test_training_page.py)."""
    out = options_run.out
    assert "SIGGRAPHGenerator(" in out and "InstanceNorm2d" in out
    table = (options_run.dir / "opt.txt").read_text().rstrip("\n")
    assert table.startswith("----------------- Options") and table in out
    assert re.search(r"^ +verbose: True\s+\[default: False\]$", out, re.M)
    assert re.search(r"^ +batch_size: 4 ", out, re.M)
    state = torch.load(options_run.dir / "latest_net_G.pth", weights_only=True)
    assert len(state) == 62 and not any("running_mean" in k for k in state)
    assert "classification: True" in table


def test_unreadable_files_are_skipped_and_counted(options_run):
    assert "skipped 2 unreadable image(s)" in options_run.out
    assert options_run.err.count("warning: skipping unreadable image") == 2
    assert (options_run.dir / "latest_net_G.pth").is_file()


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
