"""The training loop of train.py in named steps: set_up (restore_run_state on --resume),
train_one_epoch (train_step for each batch), end_of_epoch, finish; :func:`train` runs them.

A :class:`RunState` is what moves (epoch, position, counters, epoch statistics, unreadable files,
the hint generator): with the model's training state, what a resume point holds. A :class:`Run` is
what stays fixed. Under torchrun each process draws the hints of the whole global batch from the
same seeded generator and keeps its rows, and data order is a function of (seed, epoch, position)
(data/samplers.py), so with --sync_bn N processes train as one with an N times larger batch; all
make the same collective calls in the same order (the step's flags, the logged losses' mean, the
epoch's counts, mean loss and stop flag, the run's unreadable files and weight check).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Callable, Optional

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from data.datasets import ImageFolderDataset, SkipLog, collate_skip_bad
from data.samplers import EpochSampler, SeededItems
from data.transforms import train_transform
from models import create_model
from training.resume import (RESUME_FILE, StopSignals, changed_options, ignore_stop_signals, load_resume_point,
                             plain_options, restore_rng_state, rng_state, save_resume_point)
from training.visualizer import Visualizer
from util.checkpoint import CheckpointError, unwrap
from util.color import AB_THRESH
from util.distributed import (DistInfo, any_flag, collective_failure, gather_objects, mean_over_processes,
                              replicas_in_sync, sum_over_processes)
from util.hints import get_colorization_data, sample_hint_geometry
from util.runtime import save_options, seed_everything


class UnusableInput(Exception):
    """A dataset, weight file or resume point that the run cannot start from (exit status 2)."""


class EarlyExit(Exception):
    """The run ends before its last epoch; its message is already printed. ``status``: exit status."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


@dataclass
class Counters:
    """Whole-run counts (a resume point's "counters")."""
    total_images: int = 0  # images trained, all processes: the logs' "iters"; the frequencies count it
    nonfinite: int = 0  # steps skipped for a non-finite loss or gradient
    nonfinite_streak: int = 0  # of those, in a row up to now (--max_nonfinite stops the run)


@dataclass
class EpochStats:
    """This process's counts of the current epoch (a resume point's "epoch_stats")."""
    steps: int = 0
    loss_sum: float = 0.0  # sum of the total loss G over the steps (its mean drives the plateau schedule)
    unreadable: int = 0
    grayscale: int = 0
    nonfinite: int = 0


def _from_saved(cls, saved: dict):
    """A Counters/EpochStats from a resume point's dict (fields it lacks keep their defaults)."""
    return cls(**{f.name: saved[f.name] for f in fields(cls) if f.name in saved})


@dataclass
class RunState:
    """What moves during a run; with the model's training state, what a resume point holds."""
    epoch: int
    position: int  # images of this process already trained in `epoch`
    hint_gen: torch.Generator  # hint geometry of the whole global batch, the same in every process
    counters: Counters = field(default_factory=Counters)
    stats: EpochStats = field(default_factory=EpochStats)
    skip_log: SkipLog = field(default_factory=SkipLog)  # unreadable files of the whole run (this process)


@dataclass
class Run:
    """What stays fixed during a run. ``make_batch``: util.hints.get_colorization_data or a stand-in."""
    opt: object
    info: DistInfo
    device: torch.device
    model: object
    loader: DataLoader
    save_dir: str
    visualizer: Optional[Visualizer]  # rank 0 only
    make_batch: Callable
    stop: Optional[StopSignals] = None

    @property
    def sampler(self) -> EpochSampler:
        return self.loader.sampler

    @property
    def resume_path(self) -> str:
        return os.path.join(self.save_dir, RESUME_FILE)

    @property
    def end_epoch(self) -> int:
        return self.opt.niter + self.opt.niter_decay


def crossed(before: int, after: int, freq: int) -> bool:
    """Did a counter going from ``before`` to ``after`` pass a multiple of ``freq``?"""
    return after // freq > before // freq


def build_loader(opt, dataroot: str, info: DistInfo, device: torch.device) -> DataLoader:
    """This process's loader: uint8 crops decoded in the workers, keys from an EpochSampler."""
    dataset = ImageFolderDataset(dataroot, train_transform(opt.loadSize, opt.fineSize), require_classes=True)
    sampler = EpochSampler(len(dataset), opt.max_dataset_size, seed=opt.seed, num_replicas=info.world_size,
                           rank=info.rank)
    workers = opt.num_threads > 0
    return DataLoader(SeededItems(dataset, opt.seed), batch_size=opt.batch_size, sampler=sampler,
                      num_workers=opt.num_threads, collate_fn=collate_skip_bad, pin_memory=device.type == "cuda",
                      persistent_workers=workers, prefetch_factor=4 if workers else None,
                      worker_init_fn=ignore_stop_signals if workers else None)


def run_summary(opt, info: DistInfo, device: torch.device, sampler: EpochSampler, dataroot: str, save_dir: str) -> str:
    """The one line that says what this run does and where it writes."""
    share = (f", {sampler.num_samples} in each of {info.world_size} processes, global batch "
             f"{opt.batch_size * info.world_size}" if info.enabled else "")
    per_process = " per process" if info.enabled else ""
    return (f"training {opt.name} on {device}: #training images = {sampler.subset_size} per epoch (of "
            f"{sampler.data_len} in {dataroot}){share}, epochs {opt.epoch_count} to {opt.niter + opt.niter_decay - 1}, "
            f"batch size {opt.batch_size}{per_process}; writing to {save_dir}")


def train(opt, parser, info: DistInfo, device: torch.device, make_batch: Callable = get_colorization_data) -> None:
    """Train one phase as train.py does. Raises UnusableInput, CheckpointError (a failed save) or
    EarlyExit (a stop request, too many non-finite steps, processes out of sync, a failed
    collective: another process died or hung)."""
    try:
        train_phase(opt, parser, info, device, make_batch)
    except RuntimeError as e:
        reason = collective_failure(e) if info.enabled else None
        if reason is None:
            raise
        print(f"error: rank {info.rank} lost the other processes ({reason}): another process of the job died, "
              f"hung or went out of step; restart the whole job with --resume", file=sys.stderr)
        raise EarlyExit(1) from None


def train_phase(opt, parser, info: DistInfo, device: torch.device, make_batch: Callable) -> None:
    """:func:`train`'s set-up, epochs and finish, and its clean-up on any exit."""
    run, state = set_up(opt, parser, info, device, make_batch)
    try:
        with StopSignals() as stop:
            run.stop = stop
            while state.epoch < run.end_epoch:
                started = time.time()
                ran_step = train_one_epoch(run, state)
                end_of_epoch(run, state, ran_step, started)
        finish(run, state)
    finally:
        if run.visualizer is not None:
            run.visualizer.close()
        stop_workers(run.loader)


def stop_workers(loader: DataLoader) -> None:
    """End the loader's persistent worker processes now, not when the loader is freed: they ignore
    SIGTERM (ignore_stop_signals), so one left at interpreter exit makes multiprocessing wait for
    it forever, and reference cycles (matplotlib makes some) can keep the loop's frames, and with
    them the loader, until the garbage collector runs."""
    iterator = getattr(loader, "_iterator", None)  # DataLoader keeps its persistent workers' iterator there
    if iterator is not None:
        iterator._shutdown_workers()


def set_up(opt, parser, info: DistInfo, device: torch.device, make_batch: Callable):
    """Options file, loader, model and logs, and the run state (fresh or from the resume point).
    Under torchrun the processes first agree on what they start from (:func:`agree_on_start`).
    Returns (Run, RunState)."""
    seed_everything(opt.seed)
    dataroot = opt.dataroot or os.path.join("./dataset/ilsvrc2012", opt.phase)
    save_dir = os.path.join(opt.checkpoints_dir, opt.name)
    if info.is_main:
        options = save_options(opt, parser, save_dir)
        if opt.verbose:
            print(options)
    run = Run(opt, info, device, None, None, save_dir, None, make_batch)
    saved, problem = None, None
    try:  # unusable inputs are exit status 2 (failed saves, later, are 1)
        run.loader = build_loader(opt, dataroot, info, device)
        print(run_summary(opt, info, device, run.loader.sampler, dataroot, save_dir))
        run.model = create_model(opt, device, info, wrap=False)
        saved = load_resume_point(run.resume_path) if opt.resume and os.path.isfile(run.resume_path) else None
        if saved is not None:
            run.model.load_training_state(saved, run.resume_path)
    except (FileNotFoundError, CheckpointError) as e:
        problem = str(e)
    agree_on_start(run, problem, saved)
    state = RunState(opt.epoch_count, 0, torch.Generator(device=device).manual_seed(opt.seed))
    if saved is not None:
        restore_run_state(run, state, saved)
    elif opt.resume:
        print(f"note: no resume point at {run.resume_path}; starting from the beginning")
    run.model.wrap()
    if info.is_main:
        run.visualizer = Visualizer(save_dir, use_html=not opt.no_html, winsize=opt.display_winsize, name=opt.name,
                                    tensorboard=True)
        if saved is not None:
            run.visualizer.rewind(state.counters.total_images, run.model.visual_names)
    return run, state


def describe_resume_point(saved: Optional[dict]) -> str:
    """A resume point in words, with the identity of its save (what agree_on_start compares)."""
    if saved is None:
        return "no resume point"
    return (f"epoch {saved['epoch']}, image {saved['position']}, {saved['counters'].get('total_images')} images "
            f"trained, {saved.get('world_size', 1)} process(es), save {saved.get('save_id', 'unnamed')}")


def start_disagreement(starts: list) -> Optional[str]:
    """What stops the processes' start (:func:`agree_on_start`'s dicts, in rank order) as one
    line, or None: the lowest rank's problem, else the first difference from rank 0 in options,
    dataset size or resume point."""
    for rank, start in enumerate(starts):
        if start["problem"]:
            return start["problem"] + (f" (in rank {rank})" if rank else "")
    first = starts[0]
    for rank, start in enumerate(starts[1:], 1):
        changed = changed_options(first["options"], argparse.Namespace(**start["options"]))
        if changed:
            return f"the processes disagree: rank {rank} has other options than rank 0: {'; '.join(changed)}"
        for key, hint in (("data", ""), ("resume", " (is another job writing to this run's folder?)")):
            if start[key] != first[key]:
                return (f"the processes disagree: rank {rank} starts from {start[key]} but rank 0 from "
                        f"{first[key]}{hint}")
    return None


def agree_on_start(run: Run, problem: Optional[str], saved: Optional[dict]) -> None:
    """Check, before any other collective, that every process starts from the same options,
    dataset size and resume point (the same save of it), and that none met a problem; raise
    UnusableInput with one line naming the first difference on every process otherwise, so that
    no process trains, or waits, alone. ``problem``: this process's own unusable input, if any."""
    data = run.loader.sampler.data_len if run.loader is not None else None
    start = dict(problem=problem, options=plain_options(run.opt), data=f"a dataset of {data} images",
                 resume=describe_resume_point(saved))
    difference = start_disagreement(gather_objects(start, run.info))
    if difference:
        raise UnusableInput(difference)


def restore_run_state(run: Run, state: RunState, saved: dict) -> None:
    """Restore ``state`` from a resume point (the model's part is already loaded) and say so."""
    world = run.info.world_size
    restore_rng_state(saved["rng"], state.hint_gen)
    state.epoch, state.position = saved["epoch"], saved["position"]
    state.counters = _from_saved(Counters, saved["counters"])
    saved_world = saved.get("world_size", 1)
    state.stats = _from_saved(EpochStats, own_epoch_stats(saved, run.info))
    state.skip_log.reasons.update(saved.get("skipped_files", {}))
    if saved_world != world:
        # Positions are per process: map the global position onto the new split (exact only
        # for the same world size; a few images may be seen twice).
        state.position = state.position * saved_world // world
        print(f"warning: resuming a {saved_world}-process run with {world} processes; "
              f"the continuation is not bit-exact", file=sys.stderr)
    changed = changed_options(saved["options"], run.opt)
    if changed and run.info.is_main:
        print(f"warning: resuming with changed options: {'; '.join(changed)}", file=sys.stderr)
    print(f"resuming from {run.resume_path}: epoch {state.epoch}, image {state.position} of "
          f"{run.sampler.num_samples} in this process, {state.counters.total_images} images trained")


def own_epoch_stats(saved: dict, info: DistInfo) -> dict:
    """This process's epoch statistics in a resume point: its own entry of "epoch_stats_by_rank"
    when the saved run had as many processes; else (another world size, or an older resume point
    without that list) the saved ones (all processes' sums, or rank 0's) on rank 0 and none elsewhere."""
    by_rank = saved.get("epoch_stats_by_rank")
    if by_rank is not None and len(by_rank) == info.world_size:
        return by_rank[info.rank]
    if not info.is_main:
        return {}
    if by_rank is not None:
        return {k: sum(stats[k] for stats in by_rank) for k in by_rank[0]}
    return saved.get("epoch_stats", {})


def save_resume(run: Run, state: RunState) -> None:
    """Write the resume point of ``state`` (its epoch and position are where to continue): every
    process hands rank 0 its own epoch statistics and unreadable files (a collective), rank 0
    writes. ``save_id`` names this save, so that processes can tell that they read the same one."""
    per_rank = gather_objects((asdict(state.stats), dict(state.skip_log.reasons)), run.info)
    if run.info.is_main:
        skipped = {}
        for _, reasons in per_rank:
            skipped.update(reasons)
        save_resume_point(run.resume_path, dict(
            run.model.training_state(), epoch=state.epoch, position=state.position,
            counters=asdict(state.counters), epoch_stats=asdict(state.stats),
            epoch_stats_by_rank=[stats for stats, _ in per_rank], skipped_files=skipped,
            rng=rng_state(state.hint_gen), options=plain_options(run.opt), world_size=run.info.world_size,
            save_id=uuid.uuid4().hex))


def save_latest(run: Run, state: RunState) -> None:
    """latest_net_G.pth and the resume point, together."""
    if run.info.is_main:
        run.model.save_networks("latest")
    save_resume(run, state)


def stopped(signum: Optional[int], resume_path: str) -> EarlyExit:
    """Report a signal-triggered stop; the exit status is 128 + the signal number."""
    name = signal.Signals(signum).name if signum else "a signal on another process"
    print(f"stopped by {name}: resume point saved to {resume_path}; continue with --resume", file=sys.stderr)
    return EarlyExit(128 + (signum or signal.SIGTERM))


def train_one_epoch(run: Run, state: RunState) -> bool:
    """Train ``state.epoch`` from ``state.position`` to its end. Returns whether this process took
    an optimizer step (only then are there visuals to show)."""
    batch_size = run.opt.batch_size
    run.sampler.set_epoch(state.epoch)
    run.sampler.set_start(state.position)
    state.position = run.sampler.start
    ran_step = False
    t_data_start = time.time()
    with tqdm(run.loader, desc=f"epoch {state.epoch}", unit="batch", dynamic_ncols=True, file=sys.stdout,
              initial=state.position // batch_size, total=state.position // batch_size + len(run.loader),
              disable=not run.info.is_main) as bar:
        for images, positions, bad_files in bar:
            t_data = time.time() - t_data_start
            ran_step |= train_step(run, state, bar, images, positions, bad_files, t_data)
            t_data_start = time.time()
    return ran_step


def train_step(run: Run, state: RunState, bar: tqdm, images: torch.Tensor, positions: torch.Tensor,
               bad_files, t_data: float) -> bool:
    """One batch: hints, the stop check, the optimizer step, logs and periodic saves.

    images: (B, 3, H, W) uint8, the readable ones of the batch; positions: (B,) their places in
    this process's epoch; t_data: seconds spent waiting for the batch. Returns whether it stepped.
    """
    t_start = time.time()
    hint_state = state.hint_gen.get_state()  # a stop before this step must not consume its hints
    first = state.position
    nominal = min(run.opt.batch_size, run.sampler.num_samples - first)
    batch = hinted_batch(run, state, images, positions, first, nominal)
    no_data, stop_now = any_flag(torch.tensor([batch is None, run.stop.requested]), run.info).tolist()
    if stop_now:  # the resume point is the state before this batch
        state.hint_gen.set_state(hint_state)
        save_latest(run, state)
        raise stopped(run.stop.signum, run.resume_path)
    state.position = first + nominal
    state.stats.unreadable += state.skip_log.add(bad_files)
    state.stats.grayscale += images.shape[0] - (batch.A.shape[0] if batch is not None else 0)
    before = state.counters.total_images
    # As the original, a batch that is skipped entirely does not count.
    stepped = not no_data and optimize(run, state, batch, nominal * run.info.world_size, bar)
    if stepped:
        show_progress(run, state, bar, before, t_start, images.shape[0], t_data)
    if crossed(before, state.counters.total_images, run.opt.save_latest_freq) \
            and state.position < run.sampler.num_samples:
        save_latest(run, state)  # (at the epoch's last batch the epoch-end save follows)
    return stepped


def hinted_batch(run: Run, state: RunState, images: torch.Tensor, positions: torch.Tensor, first: int,
                 nominal: int):
    """The colorization batch of ``images`` (None when none is usable), hints drawn for this
    process's rows of the global batch of ``nominal`` x world size images."""
    opt, world = run.opt, run.info.world_size
    if not images.shape[0]:  # nothing readable: advance the hint stream as the other processes do
        sample_hint_geometry(nominal * world, opt.fineSize, opt.fineSize, opt.sample_p, None,
                             opt.sample_Ps, "normal", state.hint_gen, run.device)
        return None
    rows = (positions - first) * world + run.info.rank
    return run.make_batch(  # uint8 in: the Lab conversion's fast path
        images.to(run.device, non_blocking=True), ab_thresh=AB_THRESH, p=opt.sample_p,
        sample_Ps=opt.sample_Ps, l_cent=opt.l_cent, l_norm=opt.l_norm, ab_norm=opt.ab_norm,
        mask_cent=opt.mask_cent, generator=state.hint_gen, rows=rows, total=nominal * world)


def optimize(run: Run, state: RunState, batch, images: int, bar: tqdm) -> bool:
    """Count ``images`` (all processes) as trained and take the optimizer step on ``batch``.
    Returns False for a step skipped for a non-finite loss or gradient."""
    counters = state.counters
    counters.total_images += images
    run.model.set_input(batch)
    if not run.model.optimize_parameters():
        count_nonfinite(run, state)
        return False
    counters.nonfinite_streak = 0
    loss_G = float(run.model.losses["G"])
    state.stats.steps += 1
    state.stats.loss_sum += loss_G
    bar.set_postfix(G=f"{loss_G:.3f}")
    return True


def count_nonfinite(run: Run, state: RunState) -> None:
    """Warn about a skipped step; raise EarlyExit(1) after --max_nonfinite of them in a row."""
    counters, opt = state.counters, run.opt
    counters.nonfinite += 1
    counters.nonfinite_streak += 1
    state.stats.nonfinite += 1
    print(f"warning: skipped a step with a non-finite loss or gradient (epoch {state.epoch}, "
          f"iters {counters.total_images}; {counters.nonfinite_streak} in a row)", file=sys.stderr)
    if counters.nonfinite_streak >= opt.max_nonfinite:
        print(f"error: {counters.nonfinite_streak} consecutive steps with a non-finite loss "
              f"or gradient (--max_nonfinite {opt.max_nonfinite}); stopping. The weights were "
              f"not updated by them; the last saved checkpoint is in {run.save_dir}", file=sys.stderr)
        raise EarlyExit(1)


def show_progress(run: Run, state: RunState, bar: tqdm, before: int, t_start: float, images: int,
                  t_data: float) -> None:
    """After a step that took the image count from ``before``: the visuals every --display_freq
    images (rank 0) and the losses every --print_freq images (their mean over the processes).
    t_start: time.time() when the step began; images: this process's images in it; t_data:
    seconds spent waiting for them."""
    opt, info, model = run.opt, run.info, run.model
    total_images = state.counters.total_images
    if info.is_main and crossed(before, total_images, opt.display_freq):
        run.visualizer.display_current_results(model.get_current_visuals(), state.epoch)
    if not crossed(before, total_images, opt.print_freq):
        return
    names = list(model.loss_names)
    raw_values = mean_over_processes(torch.tensor(list(model.get_current_loss_values().values()),
                                                  dtype=torch.float64), info).tolist()
    raw = dict(zip(names, raw_values))
    if info.is_main:
        losses = model.get_current_losses(raw)
        t_comp = (time.time() - t_start) / images  # seconds per image
        lr = model.optimizers[0].param_groups[0]["lr"]
        bar.write(run.visualizer.print_current_losses(state.epoch, total_images, losses, t_comp, t_data,
                                                      extra={"raw": raw, "lr": lr}))


def end_of_epoch(run: Run, state: RunState, ran_step: bool, started: float) -> None:
    """Visuals, skip counts, checkpoints, the LR schedule's step and the resume point at the end
    of ``state.epoch`` (``started``: its time.time()); then ``state`` points at the next epoch."""
    opt, info, model, epoch = run.opt, run.info, run.model, state.epoch
    if ran_step and info.is_main and not opt.no_html:
        run.visualizer.display_current_results(model.get_current_visuals(), epoch)  # the epoch's last batch
    stats = state.stats
    totals = sum_over_processes(torch.tensor([stats.unreadable, stats.grayscale, stats.nonfinite]), info).tolist()
    if any(totals):
        print(f"epoch {epoch}: skipped {totals[0]} unreadable image(s) and {totals[1]} grayscale image(s)"
              + (f"; {totals[2]} step(s) skipped for a non-finite loss or gradient" if totals[2] else ""))
    last = epoch == run.end_epoch - 1
    if info.is_main:
        model.save_networks("latest")  # with the epoch-end resume point below
    if (epoch + 1 - opt.epoch_count) % opt.save_epoch_freq == 0 or last:
        print(f"saving the model at the end of epoch {epoch}, iters {state.counters.total_images}")
        if info.is_main:
            model.save_networks(epoch, same_as="latest")
    print(f"End of epoch {epoch} / {run.end_epoch - 1} \t Time Taken: {time.time() - started:.0f} sec")
    mean_loss = mean_over_processes(torch.tensor(
        [stats.loss_sum / stats.steps if stats.steps else float("inf")], dtype=torch.float64), info)
    model.update_learning_rate(float(mean_loss))
    state.epoch, state.position, state.stats = epoch + 1, 0, EpochStats()
    save_resume(run, state)
    if bool(any_flag(torch.tensor([run.stop.requested]), info)) and not last:
        raise stopped(run.stop.signum, run.resume_path)


def finish(run: Run, state: RunState) -> None:
    """The end of the run: rank 0 lists every process's unreadable files; under torchrun, check
    that the processes hold the same weights (EarlyExit(1) if not)."""
    info = run.info
    for reasons in gather_objects(state.skip_log.reasons, info)[1:]:
        state.skip_log.reasons.update(reasons)
    if info.is_main:
        state.skip_log.report(run.save_dir)
    if not info.enabled:
        return
    if not replicas_in_sync(unwrap(run.model.netG), info, buffers=run.opt.sync_bn):
        print("error: the processes ended with different weights (the saved ones are rank 0's)", file=sys.stderr)
        raise EarlyExit(1)
    print(f"weights identical in all {info.world_size} processes")
