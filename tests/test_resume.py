"""Reliability of train.py: exact resume after SIGKILL/SIGTERM, refusal of unsafe resume files,
skipped non-finite steps, failed saves that leave the previous checkpoint intact (CPU, tiny data)."""
import json
import os
import random
import shutil
import subprocess
import sys
import time

import pytest
import torch

import train
import util.checkpoint
import util.hints
from scripts import crash_test
from tests.helpers import copy_checkpoint, poison, tiny_train_args
from training.resume import RESUME_FILE
from training.visualizer import Visualizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def data_root(tiny_data):
    return tiny_data


def tiny_args(data_root, ckpt, name, *extra):
    return tiny_train_args(data_root, ckpt, name, "--no_html", *extra)


def load(path):
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def crash_work(module_tmp):
    """One working folder for the crash tests: the reference run is made once."""
    return module_tmp


def test_sigkill_at_3_random_points_then_resume_is_bit_identical(crash_work, capsys):
    """The crash test at 3 random points (scripts/crash_test.sh does 20, one run each): one run is
    SIGKILLed 3 times in a row, each time after 0 or 1 more steps plus a random delay (so also
    inside steps and saves, and before any resume point), each restart resuming the previous
    killed run with --resume; its final weights must equal an uninterrupted run's bit for bit."""
    rc = crash_test.main(["--points", "3", "--chain", "--work", str(crash_work), "--max_delay", "1.5"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert out.count("interruption ") >= 1 and "after 3 interruption(s) of one run: identical" in out


def test_sigint_saves_a_resume_point_and_exits_130(crash_work, capsys):
    """SIGINT (Ctrl-C): the run finishes its step, saves a resume point, exits with 128 + 2;
    resuming ends bit-identical to the uninterrupted run (both checked inside crash_test). SIGTERM
    takes the same path: tests/test_distributed.py sends it to a torchrun job."""
    rc = crash_test.main(["--points", "1", "--work", str(crash_work), "--signal", "INT", "--max_delay", "0.3",
                          "--jobs", "2", "--seed", "7"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "1/1 identical" in out
    # --seed fixes the point: the steps (0..3) and the delay (0..--max_delay s) drawn from random.Random(7).
    rng = random.Random(7)
    after, delay = rng.randint(0, 3), rng.uniform(0.0, 0.3)
    assert "SIGINT, seed 7" in out and f"point 1: INT after {after} logged step(s) + {delay:.2f} s" in out


def test_poisoned_resume_point_is_refused_in_one_line(data_root, tmp_path):
    marker = tmp_path / "pwned"
    run_dir = tmp_path / "ckpt" / "run"
    poison(run_dir / RESUME_FILE, marker, {"format": "colorization-pytorch resume point, version 1"})
    proc = subprocess.run([sys.executable, "train.py", *tiny_args(data_root, tmp_path / "ckpt", "run", "--resume")],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    assert not marker.exists()
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and RESUME_FILE in lines[0], proc.stderr
    assert "refused to load" in lines[0] and "Traceback" not in proc.stderr
    # A truncated resume point: one line too.
    good = {"format": "colorization-pytorch resume point, version 1", "net": {}}
    torch.save(good, run_dir / RESUME_FILE)
    data = (run_dir / RESUME_FILE).read_bytes()
    (run_dir / RESUME_FILE).write_bytes(data[: len(data) // 2])
    proc = subprocess.run([sys.executable, "train.py", *tiny_args(data_root, tmp_path / "ckpt", "run", "--resume")],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "cannot read resume point" in proc.stderr


def poison_batches(monkeypatch, bad_calls):
    """Make get_colorization_data return batches with a NaN lightness on the given call numbers
    (1-based; 'all' for every call)."""
    real = util.hints.get_colorization_data
    calls = {"n": 0}

    def patched(rgb, **kw):
        calls["n"] += 1
        batch = real(rgb, **kw)
        if batch is not None and (bad_calls == "all" or calls["n"] in bad_calls):
            batch.A[:, :, :2, :2] = float("nan")
        return batch

    monkeypatch.setattr(train, "get_colorization_data", patched)


def test_nonfinite_steps_are_skipped_and_counted(data_root, tmp_path, monkeypatch, capsys):
    poison_batches(monkeypatch, {2, 3})  # 3 steps in the epoch: the 2nd and 3rd are poisoned
    rc = train.main(tiny_args(data_root, tmp_path, "nan", "--print_freq", "4"))
    captured = capsys.readouterr()
    assert rc == 0
    assert captured.err.count("warning: skipped a step with a non-finite loss or gradient") == 2
    assert "(epoch 0, iters 12; 2 in a row)" in captured.err
    assert "2 step(s) skipped for a non-finite loss or gradient" in captured.out
    state = load(tmp_path / "nan" / "latest_net_G.pth")
    assert len(state) == 107 and all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())
    # The batch-norm statistics were put back too: one step counted, not three.
    assert int(state["model1.4.num_batches_tracked"]) == 1


def test_max_nonfinite_stops_with_the_last_checkpoint_intact(data_root, tmp_path, monkeypatch, capsys,
                                                              random_generator):
    latest = copy_checkpoint(random_generator, tmp_path, "run")  # what an earlier run left
    before = latest.read_bytes()
    capsys.readouterr()
    poison_batches(monkeypatch, "all")
    rc = train.main(tiny_args(data_root, tmp_path, "run", "--load_model", "--max_nonfinite", "2"))
    err = capsys.readouterr().err
    assert rc == 1
    assert "error: 2 consecutive steps with a non-finite loss or gradient (--max_nonfinite 2); stopping." in err
    assert latest.read_bytes() == before  # untouched, and still a valid checkpoint
    assert len(load(latest)) == 107


def test_nonfinite_weights_are_never_saved(tmp_path):
    from models.networks import define_G

    net = define_G()
    with torch.no_grad():
        net.model3[0].weight[0, 0, 0, 0] = float("inf")
    with pytest.raises(util.checkpoint.CheckpointError, match=r"not saved, non-finite values in model3.0.weight"):
        util.checkpoint.save_network(net, str(tmp_path / "x.pth"))
    assert not (tmp_path / "x.pth").exists()


def test_full_disk_during_a_save_is_one_line_and_keeps_the_previous_file(data_root, tmp_path, monkeypatch, capsys,
                                                                          random_generator):
    latest = copy_checkpoint(random_generator, tmp_path, "run")  # what an earlier run left
    before = latest.read_bytes()
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        f.write(b"partial")  # the disk fills up part-way through the write
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(util.checkpoint.torch, "save", full_disk)
    rc = train.main(tiny_args(data_root, tmp_path, "run", "--load_model", "--save_latest_freq", "4"))
    monkeypatch.setattr(util.checkpoint.torch, "save", real_save)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert err[-1].startswith("error: ") and "cannot save (No space left on device)" in err[-1]
    assert latest.read_bytes() == before
    assert not [p for p in os.listdir(tmp_path / "run") if p.endswith(".tmp")]  # no temporary file left behind


def readonly_runner():
    """How to run a subprocess for which a chmod 555 folder is really read-only (root ignores
    permissions unless it drops CAP_DAC_OVERRIDE), or None where that is not possible."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv"):
        probe = subprocess.run(["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps",
                                "-dac_override,-dac_read_search", "--", "true"], capture_output=True)
        if probe.returncode == 0:
            return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps",
                    "-dac_override,-dac_read_search", "--"]
    return None


def test_save_into_a_folder_made_read_only_mid_run(data_root, tmp_path):
    """The folder becomes read-only after the first save: the next save fails with one line on
    stderr, exit status 1, and the checkpoint already there still loads."""
    runner = readonly_runner()
    if runner is None:
        pytest.skip("cannot make a folder read-only for a root process here (no setpriv)")
    run_dir = tmp_path / "ckpt" / "run"
    cmd = runner + [sys.executable, "train.py", *tiny_args(data_root, tmp_path / "ckpt", "run", "--niter", "3",
                                                          "--save_latest_freq", "4")]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (run_dir / RESUME_FILE).exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        os.chmod(run_dir, 0o555)
        _, stderr = proc.communicate(timeout=180)
    finally:
        os.chmod(run_dir, 0o755) if run_dir.exists() else None
    assert proc.returncode == 1, stderr
    errors = [line for line in stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "cannot save (Permission denied" in errors[0]
    assert "Traceback" not in stderr
    state = load(run_dir / "latest_net_G.pth")
    assert len(state) == 107


def test_resume_point_contents_fresh_start_changed_options_and_finished_run(data_root, tmp_path, capsys):
    # --resume without a resume point: a fresh start.
    assert train.main(tiny_args(data_root, tmp_path, "s", "--resume", "--save_latest_freq", "4",
                                "--max_dataset_size", "8", "--sample_p", "0.125")) == 0
    out = capsys.readouterr().out
    assert f"note: no resume point at {tmp_path / 's' / RESUME_FILE}; starting from the beginning" in out
    # What the finished run's resume point holds.
    state = torch.load(tmp_path / "s" / RESUME_FILE, weights_only=True)
    assert state["format"] == "colorization-pytorch resume point, version 1"
    assert (state["epoch"], state["position"], state["world_size"]) == (1, 0, 1)
    assert state["counters"]["total_images"] == 8
    assert set(state["rng"]) >= {"python", "numpy", "torch", "hints"}
    assert list(state["net"]) == list(load(tmp_path / "s" / "latest_net_G.pth"))
    assert state["optimizers"][0]["state"][0]["step"].item() == 2  # two Adam steps
    assert state["options"]["sample_p"] == 0.125 and state["options"]["name"] == "s"
    # Resuming the finished run trains nothing more; changed options that matter are listed in
    # one warning, cosmetic ones (--print_freq) not.
    before = (tmp_path / "s" / "latest_net_G.pth").read_bytes()
    assert train.main(tiny_args(data_root, tmp_path, "s", "--resume", "--lambda_A", "2", "--print_freq", "8",
                                "--sample_p", "0.125", "--save_latest_freq", "4")) == 0
    captured = capsys.readouterr()
    assert "resuming from" in captured.out
    warnings = [line for line in captured.err.splitlines() if "changed options" in line]
    assert warnings == ["warning: resuming with changed options: lambda_A 1.0 -> 2.0; max_dataset_size 8 -> None"]
    assert (tmp_path / "s" / "latest_net_G.pth").read_bytes() == before


def test_rewind_drops_later_entries_and_a_line_cut_off_by_a_kill(tmp_path):
    """A resumed run rewinds the logs to its image count: later entries go (it writes them again),
    and so does a last line that a SIGKILL cut off mid-write (it would not parse as JSON)."""
    log = Visualizer(str(tmp_path), use_html=False)
    for iters in (4, 8, 12):
        log.print_current_losses(0, iters, {"G": 1.0}, 0.1, 0.0)
    with open(log.jsonl_name, "a") as f:
        f.write('{"epoch": 0, "iters": 16, "ti')  # killed here
    with open(log.log_name, "a") as f:
        f.write("(epoch: 0, iters: 16, ti")
    Visualizer(str(tmp_path), use_html=False).rewind(8, [])
    records = [json.loads(line) for line in open(log.jsonl_name)]
    assert [r["iters"] for r in records] == [4, 8]
    text = open(log.log_name).read()
    assert "iters: 8," in text and "iters: 12," not in text and "iters: 16" not in text and text.endswith("\n")
