"""Data-parallel training survives a hard kill: torchrun jobs of 2 CPU processes
(gloo) SIGKILLed as a whole or one rank at a time, resumed bit-identical; processes that would
start from different options or resume points stop in one line before any other collective.

The failure of the issue: torchrun starts every worker in a session of its own, so the SIGKILL of
torchrun's process group left the workers training; the requeued job's processes then read
resume points that those workers kept rewriting, resumed at different positions and called
different collectives (gloo: "Received data size doesn't match expected size").
"""
import argparse
import os
import subprocess

import pytest
import torch

from scripts import crash_test
from training.loop import own_epoch_stats, start_disagreement
from training.resume import plain_options
from util.distributed import DistInfo, collective_failure

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="this torch build has no distributed/gloo support")


@pytest.fixture(scope="module")
def crash_work(module_tmp):
    """The crash test's folder: its data and uninterrupted 2-process reference job, made once."""
    test = crash_test.CrashTest(str(module_tmp), "KILL", nproc=2)
    crash_test.make_data(test)
    crash_test.make_reference(test)
    return str(module_tmp)


def test_a_torchrun_job_killed_3_times_whole_and_one_rank_resumes_bit_identical(crash_work, capsys):
    """scripts/crash_test.py --torchrun 2 at 3 points of one run (bash scripts/crash_test.sh
    --torchrun 2 does 20 runs): SIGKILL of torchrun's process group after the 1st and 3rd logged
    steps (+ a random delay, so also inside steps and saves; every worker must be gone 10 s later),
    SIGKILL of rank 0 alone after the 2nd (rank 1 must fail and the job end within 60 s), each time
    --resume; the final weights equal an uninterrupted torchrun job's bit for bit."""
    rc = crash_test.main(["--torchrun", "2", "--target", "mixed", "--chain", "--points", "3", "--seed", "17",
                          "--max_delay", "1.0", "--hang_limit", "60", "--work", crash_work])
    out = capsys.readouterr().out
    assert rc == 0, out
    # Seed 17 draws 1 more logged step before each kill, and rank 0 for the single-rank kill.
    assert "interruption 1: KILL (job) after 1 more logged step(s)" in out, out
    assert "interruption 2: KILL (rank 0) after 1 more logged step(s)" in out, out
    assert "reusing the reference run" in out and "after 3 interruption(s) of one run: identical" in out


def starts(**changes):
    """Two processes' start records (training.loop.agree_on_start) that agree, then ``changes``
    (a dict of record fields) applied to rank 1's."""
    options = {"lr": 1e-4, "seed": 0, "checkpoints_dir": "./checkpoints", "batch_size": 2}
    start = dict(problem=None, options=options, data="a dataset of 12 images",
                 resume="epoch 4, image 6, 76 images trained, 2 process(es), save 1f2e")
    return [start, dict(start, **changes)]


def test_start_disagreement_names_the_first_difference_in_one_line():
    assert start_disagreement(starts()) is None
    # A cosmetic option (where to write, how often to log) may differ; lr may not.
    assert start_disagreement(starts(options={**starts()[0]["options"], "checkpoints_dir": "/x"})) is None
    assert start_disagreement(starts(options={**starts()[0]["options"], "lr": 1e-3})) == \
        "the processes disagree: rank 1 has other options than rank 0: lr 0.0001 -> 0.001"
    other = "epoch 4, image 4, 72 images trained, 2 process(es), save 9c0d"
    assert start_disagreement(starts(resume=other)) == (
        f"the processes disagree: rank 1 starts from {other} but rank 0 from epoch 4, image 6, 76 images "
        f"trained, 2 process(es), save 1f2e (is another job writing to this run's folder?)")
    assert start_disagreement(starts(resume="no resume point")).startswith(
        "the processes disagree: rank 1 starts from no resume point but rank 0 from epoch 4")
    assert start_disagreement(starts(data="a dataset of 11 images")) == \
        "the processes disagree: rank 1 starts from a dataset of 11 images but rank 0 from a dataset of 12 images"
    # A process's own problem (an unreadable resume point, a missing folder) is the message.
    assert start_disagreement(starts(problem="x/resume_state.pth: cannot read resume point (truncated)")) == \
        "x/resume_state.pth: cannot read resume point (truncated) (in rank 1)"
    assert plain_options(argparse.Namespace(**starts()[0]["options"])) == starts()[0]["options"]


def test_each_process_resumes_its_own_epoch_statistics():
    """The epoch's loss sum (its mean over the processes drives --lr_policy plateau) and skip
    counts are per process: every rank gets its own back, not rank 0's."""
    by_rank = [dict(steps=3, loss_sum=30.0, unreadable=1, grayscale=0, nonfinite=0),
               dict(steps=3, loss_sum=36.0, unreadable=0, grayscale=2, nonfinite=0)]
    saved = {"epoch_stats": by_rank[0], "epoch_stats_by_rank": by_rank}
    assert [own_epoch_stats(saved, DistInfo(r, r, 2)) for r in (0, 1)] == by_rank
    # Another world size: the sums on rank 0 (the epoch's totals stay right), nothing elsewhere.
    assert own_epoch_stats(saved, DistInfo(0, 0, 4)) == dict(steps=6, loss_sum=66.0, unreadable=1, grayscale=2,
                                                             nonfinite=0)
    assert own_epoch_stats(saved, DistInfo(3, 3, 4)) == {}
    assert own_epoch_stats({"epoch_stats": by_rank[0]}, DistInfo()) == by_rank[0]  # an older resume point


def test_collective_failures_are_recognised_and_shortened():
    gloo = RuntimeError("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:545] Read error "
                        "[127.0.0.1]:30416: Connection reset by peer. This is typically caused by a remote worker "
                        "hanging or bugs in the application. Check the logs of the remote worker.")
    assert collective_failure(gloo) == "Read error [127.0.0.1]:30416: Connection reset by peer"
    timeout = RuntimeError("[../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 600000ms "
                           "for recv operation to complete")
    assert collective_failure(timeout) == "Timed out waiting 600000ms for recv operation to complete"
    assert collective_failure(RuntimeError("CUDA out of memory")) is None
    assert collective_failure(ValueError("gloo")) is None


def test_processes_that_read_different_resume_points_stop_in_one_line(crash_work, tmp_path):
    """The issue's failure, made deterministic: rank 0 reads the resume point "epoch 1, image 2"
    (one step left in the epoch) and rank 1 the same point one step earlier, as when a stray
    worker of the killed job rewrites the file between their reads. The old code resumed both: at
    the epoch's end rank 0 summed the epoch's counts while rank 1 began another step, and gloo
    failed with "Received data size doesn't match expected size" (or hung). Now both stop with
    one line naming the two resume points, exit status 2, before any other collective."""
    saved = torch.load(os.path.join(crash_work, "reference_torchrun2", "run", "resume_state.pth"), weights_only=True)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name, position in (("resume_state.pth", 2), ("resume_state.pth.other", 0)):
        point = dict(saved, epoch=1, position=position, save_id=f"position{position}",
                     counters=dict(saved["counters"], total_images=8 + 2 * position))
        torch.save(point, run_dir / name)
    entry = tmp_path / "entry.py"  # rank 1 reads the other file
    entry.write_text("import os, sys\n"
                     f"sys.path.insert(0, {REPO!r})\n"
                     "import train, training.loop as loop\n"
                     "if os.environ['RANK'] == '1':\n"
                     "    read = loop.load_resume_point\n"
                     "    loop.load_resume_point = lambda path: read(path + '.other')\n"
                     "sys.exit(train.main(sys.argv[1:]))\n")
    cmd = crash_test.train_command(os.path.join(crash_work, "data"), str(tmp_path), 0, True, nproc=2)
    cmd[cmd.index(os.path.join(REPO, "train.py"))] = str(entry)
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    line = ("error: the processes disagree: rank 1 starts from epoch 1, image 0, 8 images trained, 2 process(es), "
            "save position0 but rank 0 from epoch 1, image 2, 12 images trained, 2 process(es), save position2 "
            "(is another job writing to this run's folder?)")
    assert proc.returncode != 0 and proc.stderr.count(line) == 2, proc.stderr[-3000:]
    assert "Received data size" not in proc.stderr
