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

With --torchrun N every run is a data-parallel job of N CPU processes (gloo, the global batch
unchanged; the reference is such a job too). --target says what the signal hits: "job" sends it
to torchrun's process group, as a user's ``kill -9 -PGID`` or a scheduler does (torchrun starts
each worker in a session of its own: the workers must die with it, and a worker still alive 10 s
later fails the point); "rank" SIGKILLs one random worker only (the others must fail, and
the job end, within --hang_limit s: a hang fails the point); "mixed" alternates, job first.
"""
from __future__ import annotations

import argparse
import contextlib
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

EPOCHS, STEPS_PER_EPOCH, BATCH = 2, 2, 4  # 8 of the 12 images (6 photos x 2 crops) per epoch (global batch 4)
WORKERS_GONE_S = 10.0  # how long the workers of a job whose torchrun was killed may take to die


def train_command(data: str, checkpoints: str, workers: int, resume: bool, nproc: int = 0) -> List[str]:
    """The train.py command line of the crash test (a resume point after every step); with
    ``nproc`` > 0 a torchrun job of that many processes sharing the same global batch."""
    launcher = [sys.executable] if nproc == 0 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    cmd = launcher + [os.path.join(REPO, "train.py"), "--dataroot", os.path.join(data, "train"),
           "--checkpoints_dir", checkpoints, "--name", "run", "--gpu_ids", "-1", "--loadSize", "40",
           "--fineSize", "32", "--batch_size", str(BATCH // max(nproc, 1)), "--num_threads", str(workers),
           "--niter", str(EPOCHS),
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


def interrupt(cmd: List[str], folder: str, after_steps: int, delay: float, sig: int, timeout: float = 900.0,
              target: str = "process", hang_limit: float = 120.0):
    """Start ``cmd``, send ``sig`` once ``after_steps`` steps are logged and ``delay`` s more have
    passed, to ``target`` ("process"; for a torchrun job "job" or "rank R", see :func:`deliver`).
    Returns (exit status, stderr, note: '' or what went wrong); None as status if the run finished first."""
    with open(os.devnull, "w") as devnull, tempfile.TemporaryFile("w+", errors="replace") as errors:
        proc = subprocess.Popen(cmd, stdout=devnull, stderr=errors, text=True, start_new_session=target != "process")
        start = time.time()
        while logged_steps(folder) < after_steps and proc.poll() is None:
            if time.time() - start > timeout:
                end_job(proc, child_pids(proc.pid))
                raise RuntimeError(f"no progress in {timeout:.0f} s")
            time.sleep(0.02)
        time.sleep(delay)
        finished_first = proc.poll() is not None
        note = "" if finished_first else deliver(proc, target, sig, hang_limit)
        proc.wait(timeout=timeout)
        errors.seek(0)
        stderr = errors.read()
    return (None if finished_first else proc.returncode), stderr, note


def child_pids(pid: int) -> List[int]:
    """The live processes whose parent is ``pid`` (Linux /proc; torchrun's workers)."""
    children = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
        except (OSError, IndexError):
            continue
        if entry.isdigit() and fields[1] == str(pid) and fields[0] != "Z":
            children.append(int(entry))
    return children


def alive(pid: int) -> bool:
    """Is ``pid`` a running process (not gone, not a zombie)?"""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def worker_rank(pid: int) -> Optional[int]:
    """The RANK torchrun gave the worker ``pid`` (None if it is gone)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        return int(env[b"RANK"])
    except (OSError, KeyError, ValueError):
        return None


def end_job(proc: subprocess.Popen, workers: List[int]) -> None:
    """SIGKILL what is left of a job: torchrun's process group and its workers."""
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def deliver(proc: subprocess.Popen, target: str, sig: int, hang_limit: float) -> str:
    """Send ``sig`` to the run: its process ("process"), a torchrun job's process group as a
    scheduler or ``kill -9 -PGID`` does ("job"; the workers, in sessions of their own, must die
    with torchrun), or SIGKILL to worker R only ("rank R"; the survivors must fail and the job end
    within ``hang_limit`` s). Returns '' or a note on what went wrong (a failure)."""
    if target == "process":
        proc.send_signal(sig)
        return ""
    workers = child_pids(proc.pid)
    if target == "job":
        os.killpg(proc.pid, sig)
    else:
        rank = int(target.split()[1])
        for pid in workers:
            if worker_rank(pid) == rank:
                os.kill(pid, signal.SIGKILL)
        try:
            proc.wait(timeout=hang_limit)
        except subprocess.TimeoutExpired:
            end_job(proc, workers)
            return f" (the job hung: still running {hang_limit:.0f} s after rank {rank} was killed)"
    deadline = time.time() + WORKERS_GONE_S
    while any(alive(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.05)
    left = [pid for pid in workers if alive(pid)]
    end_job(proc, left)
    return f" ({len(left)} worker(s) outlived the killed job by {WORKERS_GONE_S:.0f} s)" if left else ""


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
    nproc: int = 0  # > 0: torchrun jobs of this many processes
    hang_limit: float = 120.0  # s a torchrun job may take to end after one of its ranks was killed

    @property
    def sig(self) -> int:
        return getattr(signal, f"SIG{self.signal_name}")

    @property
    def data(self) -> str:
        return os.path.join(self.work, "data")

    @property
    def prefix(self) -> str:
        """What names this test's folders: the signal, and the torchrun world size."""
        return self.signal_name.lower() + (f"_torchrun{self.nproc}_" if self.nproc else "")

    @property
    def reference(self) -> str:
        return os.path.join(self.work, f"reference_torchrun{self.nproc}" if self.nproc else "reference")

    @property
    def reference_weights(self) -> str:
        return os.path.join(self.reference, "run", "latest_net_G.pth")

    def command(self, checkpoints: str, workers: int, resume: bool) -> List[str]:
        return train_command(self.data, checkpoints, workers, resume, self.nproc)


#: Notes of a point that went wrong (describe(), deliver(), finish()).
FAILURES = ("(exit status", "resumed run failed", "the job hung", "outlived the killed job")


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
    parser.add_argument("--torchrun", type=int, default=0, metavar="N",
                        help="run every training as a torchrun job of N CPU processes (gloo; SIGKILL only)")
    parser.add_argument("--target", choices=["job", "rank", "mixed"], default="job",
                        help="with --torchrun: SIGKILL the whole job (torchrun's process group), one random rank, "
                             "or alternately (job first)")
    parser.add_argument("--hang_limit", type=float, default=120.0,
                        help="with --target rank/mixed: seconds the job may take to end after a rank is killed")
    args = parser.parse_args(argv)
    if args.points < 1 or args.jobs < 1 or args.torchrun < 0:
        parser.error("--points and --jobs must be at least 1, --torchrun at least 0")
    if args.torchrun and (args.signal != "KILL" or BATCH % args.torchrun):
        parser.error(f"--torchrun takes --signal KILL and a number of processes that divides the batch of {BATCH}")
    return args


def draw_points(args: argparse.Namespace, seed: int) -> List[Tuple[int, int, float, str]]:
    """(point, logged steps before the signal, extra delay in s, target) for each point, from
    ``seed``; target: "process", or under --torchrun "job" or "rank R" (drawn after the rest, so a
    seed gives the same steps and delays in every mode)."""
    rng = random.Random(seed)
    most = 1 if args.chain else EPOCHS * STEPS_PER_EPOCH - 1  # a chain moves on by 0 or 1 steps each time
    drawn = [(point, rng.randint(0, most), rng.uniform(0.0, args.max_delay)) for point in range(args.points)]
    targets = ["process"] * args.points if not args.torchrun else \
        ["job" if args.target == "job" or (args.target == "mixed" and point % 2 == 0)
         else f"rank {rng.randrange(args.torchrun)}" for point in range(args.points)]
    return [p + (target,) for p, target in zip(drawn, targets)]


def make_data(test: CrashTest) -> None:
    """The crash test's images (scikit-image's photos, 40 px), unless --work already has them."""
    if not os.path.isdir(test.data):
        make_sample_dataset.main(["--out_path", test.data, "--size", "40", "--per_image", "2", "--val_per_image", "1"])


def make_reference(test: CrashTest) -> None:
    """The uninterrupted run, without a DataLoader worker (one already finished in --work is reused)."""
    if os.path.isfile(test.reference_weights) and os.path.isfile(os.path.join(test.reference, "done")):
        print("reusing the reference run in", test.reference, flush=True)
        return
    shutil.rmtree(test.reference, ignore_errors=True)
    run(test.command(test.reference, workers=0, resume=False))
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
    proc = subprocess.run(test.command(checkpoints, workers=1, resume=True), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    return f" (the resumed run failed, exit status {proc.returncode}: {proc.stderr.strip()[-300:]})" \
        if proc.returncode != 0 else ""


def interrupt_and_resume(test: CrashTest, point: int, after: int, delay: float, target: str) -> Tuple[str, str]:
    """One point: the interrupted run, then its resumption. Returns (checkpoint folder, note)."""
    checkpoints = os.path.join(test.work, f"{test.prefix}{point:02d}")
    try:
        return checkpoints, interrupt_and_resume_in(test, checkpoints, after, delay, target)
    except Exception as e:  # the harness itself failed: a failed point, not a lost report of the others
        return checkpoints, f" (exit status unknown: the harness failed: {type(e).__name__}: {e})"


def interrupt_and_resume_in(test: CrashTest, checkpoints: str, after: int, delay: float, target: str) -> str:
    """:func:`interrupt_and_resume` in the folder ``checkpoints``; returns the note."""
    shutil.rmtree(checkpoints, ignore_errors=True)
    status, stderr, note = interrupt(test.command(checkpoints, workers=1, resume=False),
                                     os.path.join(checkpoints, "run"), after, delay, test.sig, target=target,
                                     hang_limit=test.hang_limit)
    note += describe(test.sig, status, stderr)
    return note + finish(test, checkpoints)


def ok(test: CrashTest, checkpoints: str, note: str) -> bool:
    """Did the interrupted and resumed run go as it should and end with the reference's weights?"""
    return not any(failure in note for failure in FAILURES) and \
        same_weights(test.reference_weights, os.path.join(checkpoints, "run", "latest_net_G.pth"))


def label(test: CrashTest, target: str) -> str:
    """How a point's signal is printed: "KILL", or under --torchrun "KILL (job)", "KILL (rank 1)"."""
    return test.signal_name if target == "process" else f"{test.signal_name} ({target})"


def run_chain(test: CrashTest, points: List[Tuple[int, int, float, str]]) -> int:
    """One run, interrupted again and again (each --resume continues the previous one's), then
    resumed to the end and compared. Returns the exit status."""
    make_reference(test)
    checkpoints = os.path.join(test.work, f"{test.prefix}chain" if test.nproc else f"{test.prefix}_chain")
    shutil.rmtree(checkpoints, ignore_errors=True)
    run_dir, notes = os.path.join(checkpoints, "run"), ""
    for point, after, delay, target in points:
        status, stderr, note = interrupt(test.command(checkpoints, workers=1, resume=True), run_dir,
                                         logged_steps(run_dir) + after, delay, test.sig, target=target,
                                         hang_limit=test.hang_limit)
        note += describe(test.sig, status, stderr)
        print(f"interruption {point + 1}: {label(test, target)} after {after} more logged step(s) + {delay:.2f} s"
              f"{note}", flush=True)
        notes += note
        if status is None or status == 0:
            break  # the run has finished: nothing left to interrupt
    identical = ok(test, checkpoints, notes + finish(test, checkpoints))
    print(f"after {len(points)} interruption(s) of one run: {'identical' if identical else 'DIFFERENT'}")
    return 0 if identical else 1


def run_points(test: CrashTest, points: List[Tuple[int, int, float, str]], jobs: int, seed: int) -> int:
    """Each point its own interrupted and resumed run, --jobs at a time with the reference (they
    are independent); writes crash_test.json. Returns the exit status."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        reference_done = pool.submit(make_reference, test)
        outcomes = [pool.submit(interrupt_and_resume, test, *p) for p in points]
        reference_done.result()
        identical = 0
        for (point, after, delay, target), outcome in zip(points, outcomes):
            checkpoints, note = outcome.result()
            good = ok(test, checkpoints, note)
            identical += good
            print(f"point {point + 1}: {label(test, target)} after {after} logged step(s) + {delay:.2f} s{note}: "
                  f"{'identical' if good else 'DIFFERENT'}", flush=True)
    print(f"{identical}/{len(points)} identical")
    with open(os.path.join(test.work, "crash_test.json"), "w") as f:
        json.dump({"points": len(points), "identical": identical, "seed": seed, "signal": test.signal_name,
                   "torchrun": test.nproc}, f)
    return 0 if identical == len(points) else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    test = CrashTest(args.work or tempfile.mkdtemp(prefix="crash_test_"), args.signal, args.torchrun, args.hang_limit)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    make_data(test)
    mode = f", torchrun {args.torchrun} processes, kill {args.target}" if args.torchrun else ""
    print(f"crash test in {test.work}: {args.points} point(s), SIG{args.signal}{mode}, seed {seed}", flush=True)
    points = draw_points(args, seed)
    return run_chain(test, points) if args.chain else run_points(test, points, args.jobs, seed)


if __name__ == "__main__":
    sys.exit(main())
