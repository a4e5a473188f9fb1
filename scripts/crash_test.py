"""Crash test of train.py --resume: kill a run at random points, resume it, compare bit for bit.

    bash scripts/crash_test.sh                     # 20 random points (a few minutes on 2 cores)
    python scripts/crash_test.py --points 3 --work /tmp/crash --signal TERM

A reference run trains a tiny model (photos that scikit-image ships, 32 px crops, 2 epochs of
2 steps, a resume point after every step, hints at p = 1/8, --deterministic) without
interruption (a reference already in --work is reused). Then, for each point, the
same run is started, killed once it has logged a randomly chosen number of steps (plus a random
delay of up to --max_delay s, so kills also land inside steps and saves), and restarted with
--resume until it finishes; its final latest_net_G.pth must equal the reference's tensor for
tensor, bit for bit. The interrupted runs use a DataLoader worker and the reference does not, so
this also shows that the result does not depend on the worker count. Prints one line per point
and "N/M identical"; the exit status is 0 only if all are. With --chain, one run is interrupted
--points times in a row instead (each restart resumes the previous interrupted run), then resumed
to the end and compared: "after N interruption(s) of one run: identical".

With --signal TERM (or INT) the run is asked to stop instead of being killed: it must save a
resume point and exit with status 128 + the signal number (or 0 when the signal came during the
last step: then the run has finished; a signal during start-up still kills it).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from scripts import make_sample_dataset  # noqa: E402

EPOCHS, STEPS_PER_EPOCH, BATCH = 2, 2, 4  # 8 of the 12 images (6 photos x 2 crops) per epoch


def train_command(data: str, checkpoints: str, workers: int, resume: bool) -> List[str]:
    """The train.py command line of the crash test (a resume point after every step)."""
    cmd = [sys.executable, os.path.join(REPO, "train.py"), "--dataroot", os.path.join(data, "train"),
           "--checkpoints_dir", checkpoints, "--name", "run", "--gpu_ids", "-1", "--loadSize", "40",
           "--fineSize", "32", "--batch_size", str(BATCH), "--num_threads", str(workers), "--niter", str(EPOCHS),
           "--niter_decay", "0", "--max_dataset_size", str(STEPS_PER_EPOCH * BATCH), "--sample_p", "0.125",
           "--print_freq", str(BATCH), "--save_latest_freq", str(BATCH), "--save_epoch_freq", "100",
           "--display_freq", str(3 * BATCH), "--deterministic"]
    return cmd + (["--resume"] if resume else [])


def logged_steps(folder: str) -> int:
    """Steps logged so far (one loss_log.jsonl line per step with --print_freq = batch size)."""
    try:
        with open(os.path.join(folder, "loss_log.jsonl")) as f:
            return sum(1 for line in f if line.strip())
    except FileNotFoundError:
        return 0


def interrupt(cmd: List[str], folder: str, after_steps: int, delay: float, sig: int, timeout: float = 300.0):
    """Start ``cmd``, send ``sig`` once ``after_steps`` steps are logged and ``delay`` s more have
    passed. Returns (exit status, stderr); None as status if the run finished first."""
    with open(os.devnull, "w") as devnull:
        proc = subprocess.Popen(cmd, stdout=devnull, stderr=subprocess.PIPE, text=True)
        start = time.time()
        while logged_steps(folder) < after_steps and proc.poll() is None:
            if time.time() - start > timeout:
                proc.kill()
                raise RuntimeError(f"no progress in {timeout:.0f} s")
            time.sleep(0.02)
        time.sleep(delay)
        finished_first = proc.poll() is not None
        if not finished_first:
            proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=timeout)
    return (None if finished_first else proc.returncode), stderr


def same_weights(path_a: str, path_b: str) -> bool:
    """Bit-identical state dicts (same keys, dtypes, shapes and bytes)."""
    a, b = torch.load(path_a, weights_only=True), torch.load(path_b, weights_only=True)
    return list(a) == list(b) and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def run(cmd: List[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:2])} ... failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return proc


@dataclass
class CrashTest:
    """The working folder of a crash test and how it interrupts its runs."""
    work: str
    signal_name: str  # KILL, TERM or INT

    @property
    def sig(self) -> int:
        return getattr(signal, f"SIG{self.signal_name}")

    @property
    def data(self) -> str:
        return os.path.join(self.work, "data")

    @property
    def reference(self) -> str:
        return os.path.join(self.work, "reference")

    @property
    def reference_weights(self) -> str:
        return os.path.join(self.reference, "run", "latest_net_G.pth")


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=20, help="number of random interruption points")
    parser.add_argument("--work", default=None, help="working folder (default: a new temporary one)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the points (default: random, printed)")
    parser.add_argument("--signal", choices=["KILL", "TERM", "INT"], default="KILL", help="how runs are interrupted")
    parser.add_argument("--max_delay", type=float, default=0.6, help="largest extra delay after the chosen step (s)")
    parser.add_argument("--chain", action="store_true",
                        help="interrupt ONE run --points times in a row (each --resume continues the previous "
                             "interrupted one; after 0-1 more logged steps each time), then resume it to the end")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs at a time (the reference and the points are independent; 2 suits 2 cores)")
    args = parser.parse_args(argv)
    if args.points < 1 or args.jobs < 1:
        parser.error("--points and --jobs must be at least 1")
    return args


def draw_points(args: argparse.Namespace, seed: int) -> List[Tuple[int, int, float]]:
    """(point, logged steps before the signal, extra delay in s) for each point, from ``seed``."""
    rng = random.Random(seed)
    most = 1 if args.chain else EPOCHS * STEPS_PER_EPOCH - 1  # a chain moves on by 0 or 1 steps each time
    return [(point, rng.randint(0, most), rng.uniform(0.0, args.max_delay)) for point in range(args.points)]


def make_reference(test: CrashTest) -> None:
    """The uninterrupted run, without a DataLoader worker (one already finished in --work is reused)."""
    if os.path.isfile(test.reference_weights) and os.path.isfile(os.path.join(test.reference, "done")):
        print("reusing the reference run in", test.reference, flush=True)
        return
    shutil.rmtree(test.reference, ignore_errors=True)
    run(train_command(test.data, test.reference, workers=0, resume=False))
    open(os.path.join(test.reference, "done"), "w").close()


def describe(sig: int, status: Optional[int], stderr: str) -> str:
    """What an interruption did, as a note ('' when it went as it should)."""
    if status is None:
        return " (the run finished before the signal)"
    if sig != signal.SIGKILL and status == 0:
        return " (during the last step: the run finished)"
    if sig != signal.SIGKILL and status == -sig:
        return " (during start-up, before the handler was installed: killed)"
    if sig != signal.SIGKILL and status != 128 + sig:
        return f" (exit status {status}, expected {128 + sig}: {stderr.strip()[-200:]})"
    return ""


def finish(test: CrashTest, checkpoints: str) -> str:
    """Resume ``checkpoints`` to the end; a note if that failed."""
    proc = subprocess.run(train_command(test.data, checkpoints, workers=1, resume=True), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    return f" (the resumed run failed, exit status {proc.returncode}: {proc.stderr.strip()[-300:]})" \
        if proc.returncode != 0 else ""


def interrupt_and_resume(test: CrashTest, point: int, after: int, delay: float) -> Tuple[str, str]:
    """One point: the interrupted run, then its resumption. Returns (checkpoint folder, note)."""
    checkpoints = os.path.join(test.work, f"{test.signal_name.lower()}{point:02d}")
    shutil.rmtree(checkpoints, ignore_errors=True)
    status, stderr = interrupt(train_command(test.data, checkpoints, workers=1, resume=False),
                               os.path.join(checkpoints, "run"), after, delay, test.sig)
    note = describe(test.sig, status, stderr)
    return checkpoints, note + finish(test, checkpoints)


def ok(test: CrashTest, checkpoints: str, note: str) -> bool:
    """Did the interrupted and resumed run go as it should and end with the reference's weights?"""
    return not note.startswith(" (exit") and "resumed run failed" not in note and \
        same_weights(test.reference_weights, os.path.join(checkpoints, "run", "latest_net_G.pth"))


def run_chain(test: CrashTest, points: List[Tuple[int, int, float]]) -> int:
    """One run, interrupted again and again (each --resume continues the previous one's), then
    resumed to the end and compared. Returns the exit status."""
    make_reference(test)
    checkpoints = os.path.join(test.work, f"{test.signal_name.lower()}_chain")
    shutil.rmtree(checkpoints, ignore_errors=True)
    run_dir, notes = os.path.join(checkpoints, "run"), ""
    for point, after, delay in points:
        status, stderr = interrupt(train_command(test.data, checkpoints, workers=1, resume=True), run_dir,
                                   logged_steps(run_dir) + after, delay, test.sig)
        note = describe(test.sig, status, stderr)
        print(f"interruption {point + 1}: {test.signal_name} after {after} more logged step(s) + {delay:.2f} s{note}",
              flush=True)
        notes += note
        if status is None or status == 0:
            break  # the run has finished: nothing left to interrupt
    identical = ok(test, checkpoints, notes + finish(test, checkpoints))
    print(f"after {len(points)} interruption(s) of one run: {'identical' if identical else 'DIFFERENT'}")
    return 0 if identical else 1


def run_points(test: CrashTest, points: List[Tuple[int, int, float]], jobs: int, seed: int) -> int:
    """Each point its own interrupted and resumed run, --jobs at a time with the reference (they
    are independent); writes crash_test.json. Returns the exit status."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        reference_done = pool.submit(make_reference, test)
        outcomes = [pool.submit(interrupt_and_resume, test, *p) for p in points]
        reference_done.result()
        identical = 0
        for (point, after, delay), outcome in zip(points, outcomes):
            checkpoints, note = outcome.result()
            good = ok(test, checkpoints, note)
            identical += good
            print(f"point {point + 1}: {test.signal_name} after {after} logged step(s) + {delay:.2f} s{note}: "
                  f"{'identical' if good else 'DIFFERENT'}", flush=True)
    print(f"{identical}/{len(points)} identical")
    with open(os.path.join(test.work, "crash_test.json"), "w") as f:
        json.dump({"points": len(points), "identical": identical, "seed": seed, "signal": test.signal_name}, f)
    return 0 if identical == len(points) else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    test = CrashTest(args.work or tempfile.mkdtemp(prefix="crash_test_"), args.signal)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    if not os.path.isdir(test.data):
        make_sample_dataset.main(["--out_path", test.data, "--size", "40", "--per_image", "2", "--val_per_image", "1"])
    print(f"crash test in {test.work}: {args.points} point(s), SIG{args.signal}, seed {seed}", flush=True)
    points = draw_points(args, seed)
    return run_chain(test, points) if args.chain else run_points(test, points, args.jobs, seed)


if __name__ == "__main__":
    sys.exit(main())
