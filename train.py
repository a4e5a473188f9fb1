"""Train the SIGGRAPH17 colorization network for one phase (scripts/train_siggraph.sh runs four).

    python train.py --name siggraph_class_small --dataroot ./dataset/ilsvrc2012/train_small \
        --classification --sample_p 1.0 --niter 100 --niter_decay 0
    torchrun --nproc_per_node 8 train.py ...          # data-parallel, one process per GPU

Writes to <checkpoints_dir>/<name>/: opt.txt, latest_net_G.pth and <epoch>_net_G.pth (plain
state_dicts with the original keys), resume_state.pth (for --resume), loss_log.txt,
loss_log.jsonl and web/index.html.

Under torchrun (util/distributed.py) --batch_size is per process and --max_dataset_size counts
the images of all processes together; the print/display/save frequencies count global images.
Rank 0 logs and saves, in exactly the single-process format. Each process draws the hint
geometry of the whole global batch from the same seeded generator and keeps its rows, and data
order and augmentations are functions of (seed, epoch, position) (data/samplers.py), so with
--sync_bn N processes train exactly like one process with an N times larger batch.

Reliability: SIGINT/SIGTERM stop the run after the current step with a resume point (exit status
128 + the signal number, so a wrapper script does not take an interrupted phase for a finished
one); steps with a non-finite loss or gradient are skipped and counted, and --max_nonfinite
consecutive ones stop the run (exit status 1) with the last saved checkpoint intact; a failed save
is a one-line error (exit status 1) that leaves the previous file intact.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from typing import Optional, Sequence

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from data.datasets import ImageFolderDataset, SkipLog, collate_skip_bad
from data.samplers import EpochSampler, SeededItems
from data.transforms import train_transform
from models import create_model
from options.train_options import TrainOptions
from util.checkpoint import CheckpointError, unwrap
from util.color import AB_THRESH
from util.distributed import (DistInfo, any_flag, cleanup, gather_objects, init_distributed, mean_over_processes,
                              replicas_in_sync, sum_over_processes)
from util.hints import get_colorization_data, sample_hint_geometry
from training.resume import (RESUME_FILE, StopSignals, changed_options, ignore_stop_signals, load_resume_point,
                         plain_options, restore_rng_state, rng_state, save_resume_point)
from util.runtime import make_deterministic, resolve_device, save_options, seed_everything, wants_cuda
from training.visualizer import Visualizer

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


def fresh_epoch_stats() -> dict:
    return {"steps": 0, "loss_sum": 0.0, "unreadable": 0, "grayscale": 0, "nonfinite": 0}


def main(argv: Optional[Sequence[str]] = None) -> int:
    options = TrainOptions()
    opt = options.parse(argv)
    if opt.deterministic:
        make_deterministic()
    info, device = init_distributed("cuda" if wants_cuda(opt.gpu_ids) else "cpu")
    try:
        if device is None:
            device = resolve_device(opt.gpu_ids)
        if not info.is_main:
            sys.stdout = open(os.devnull, "w")  # rank 0 speaks for all; errors still reach stderr
        return train(opt, options.parser, info, device)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        cleanup()


def train(opt, parser, info: DistInfo, device: torch.device) -> int:
    seed_everything(opt.seed)
    dataroot = opt.dataroot or os.path.join("./dataset/ilsvrc2012", opt.phase)
    save_dir = os.path.join(opt.checkpoints_dir, opt.name)
    if info.is_main:
        print(save_options(opt, parser, save_dir))
    try:
        loader = build_loader(opt, dataroot, info, device)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sampler: EpochSampler = loader.sampler
    world = info.world_size
    print(f"#training images = {sampler.subset_size} per epoch (of {sampler.data_len} in {dataroot})"
          + (f", {sampler.num_samples} in each of {world} processes, global batch {opt.batch_size * world}"
             if info.enabled else ""))

    resume_path = os.path.join(save_dir, RESUME_FILE)
    try:  # unusable inputs are exit status 2 (failed saves, later, are 1)
        model = create_model(opt, device, info, wrap=False)
        state = load_resume_point(resume_path) if opt.resume and os.path.isfile(resume_path) else None
        if state is not None:
            model.load_training_state(state, resume_path)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    hint_gen = torch.Generator(device=device).manual_seed(opt.seed)
    start_epoch, start_position = opt.epoch_count, 0
    counters = {"total_images": 0, "nonfinite": 0, "nonfinite_streak": 0}
    stats = fresh_epoch_stats()
    skip_log = SkipLog()  # unreadable files of the whole run (this process): one warning each, listed at the end
    if state is not None:
        restore_rng_state(state["rng"], hint_gen)
        start_epoch, start_position = state["epoch"], state["position"]
        counters.update(state["counters"])
        stats.update(state.get("epoch_stats", {}))
        skip_log.reasons.update(state.get("skipped_files", {}))
        if state.get("world_size", 1) != world:
            # Positions are per process: map the global position onto the new split (exact only
            # for the same world size; a few images may be seen twice).
            start_position = start_position * state.get("world_size", 1) // world
            print(f"warning: resuming a {state.get('world_size', 1)}-process run with {world} processes; "
                  f"the continuation is not bit-exact", file=sys.stderr)
        changed = changed_options(state["options"], opt)
        if changed and info.is_main:
            print(f"warning: resuming with changed options: {'; '.join(changed)}", file=sys.stderr)
        print(f"resuming from {resume_path}: epoch {start_epoch}, image {start_position} of {sampler.num_samples} "
              f"in this process, {counters['total_images']} images trained")
    elif opt.resume:
        print(f"note: no resume point at {resume_path}; starting from the beginning")
    model.wrap()
    visualizer = Visualizer(save_dir, use_html=not opt.no_html, winsize=opt.display_winsize,
                            name=opt.name) if info.is_main else None
    if state is not None and visualizer is not None:
        visualizer.rewind(counters["total_images"], model.visual_names)

    def save_resume(epoch: int, position: int) -> None:
        if info.is_main:
            save_resume_point(resume_path, dict(
                model.training_state(), epoch=epoch, position=position, counters=dict(counters),
                epoch_stats=dict(stats), skipped_files=dict(skip_log.reasons), rng=rng_state(hint_gen),
                options=plain_options(opt), world_size=world))

    def save_latest(epoch: int, position: int) -> None:
        if info.is_main:
            model.save_networks("latest")
        save_resume(epoch, position)

    end_epoch = opt.niter + opt.niter_decay
    batch_size = opt.batch_size
    with StopSignals() as stop:
        for epoch in range(start_epoch, end_epoch):
            sampler.set_epoch(epoch)
            sampler.set_start(start_position if epoch == start_epoch else 0)
            position = sampler.start
            ran_step = False  # in this process, this epoch: only then are there visuals to show
            epoch_start = t_data_start = time.time()
            bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", dynamic_ncols=True, file=sys.stdout,
                       initial=position // batch_size, total=position // batch_size + len(loader),
                       disable=not info.is_main)
            for images, positions, bad_files in bar:
                t_data = time.time() - t_data_start
                t_start = time.time()
                hint_state = hint_gen.get_state()  # a stop before this step must not consume its hints
                # This batch's place in the global batch: rows of the hint geometry, nominal size.
                first = position
                nominal = min(batch_size, sampler.num_samples - first)
                rows = (positions - first) * world + info.rank
                batch = None
                if images.shape[0]:
                    batch = get_colorization_data(  # uint8 in: the Lab conversion's fast path
                        images.to(device, non_blocking=True), ab_thresh=AB_THRESH, p=opt.sample_p,
                        sample_Ps=opt.sample_Ps, l_cent=opt.l_cent, l_norm=opt.l_norm, ab_norm=opt.ab_norm,
                        mask_cent=opt.mask_cent, generator=hint_gen, rows=rows, total=nominal * world)
                else:  # nothing readable: advance the hint stream as the other processes do
                    sample_hint_geometry(nominal * world, opt.fineSize, opt.fineSize, opt.sample_p, None,
                                         opt.sample_Ps, "normal", hint_gen, device)
                no_data, stop_now = any_flag(torch.tensor([batch is None, stop.requested]), info).tolist()
                if stop_now:  # the resume point is the state before this batch
                    hint_gen.set_state(hint_state)
                    save_latest(epoch, first)
                    return stopped(stop.signum, resume_path)
                position = first + nominal
                stats["unreadable"] += skip_log.add(bad_files)
                stats["grayscale"] += images.shape[0] - (batch.A.shape[0] if batch is not None else 0)
                before = counters["total_images"]
                stepped = False
                if not no_data:  # as the original, a batch that is skipped entirely does not count
                    counters["total_images"] += nominal * world
                    model.set_input(batch)
                    if model.optimize_parameters():
                        stepped = ran_step = True
                        counters["nonfinite_streak"] = 0
                        loss_G = float(model.losses["G"])
                        stats["steps"] += 1
                        stats["loss_sum"] += loss_G
                        bar.set_postfix(G=f"{loss_G:.3f}")
                    else:
                        counters["nonfinite"] += 1
                        counters["nonfinite_streak"] += 1
                        stats["nonfinite"] += 1
                        print(f"warning: skipped a step with a non-finite loss or gradient (epoch {epoch}, "
                              f"iters {counters['total_images']}; {counters['nonfinite_streak']} in a row)",
                              file=sys.stderr)
                        if counters["nonfinite_streak"] >= opt.max_nonfinite:
                            print(f"error: {counters['nonfinite_streak']} consecutive steps with a non-finite loss "
                                  f"or gradient (--max_nonfinite {opt.max_nonfinite}); stopping. The weights were "
                                  f"not updated by them; the last saved checkpoint is in {save_dir}",
                                  file=sys.stderr)
                            return 1
                total_images = counters["total_images"]
                if stepped and info.is_main and crossed(before, total_images, opt.display_freq):
                    visualizer.display_current_results(model.get_current_visuals(), epoch)
                if stepped and crossed(before, total_images, opt.print_freq):
                    names = list(model.loss_names)
                    raw_values = mean_over_processes(torch.tensor(list(model.get_current_loss_values().values()),
                                                                  dtype=torch.float64), info).tolist()
                    raw = dict(zip(names, raw_values))
                    if info.is_main:
                        losses = model.get_current_losses(raw)
                        t_comp = (time.time() - t_start) / images.shape[0]
                        lr = model.optimizers[0].param_groups[0]["lr"]
                        bar.write(visualizer.print_current_losses(epoch, total_images, losses, t_comp, t_data,
                                                                  extra={"raw": raw, "lr": lr}))
                if crossed(before, total_images, opt.save_latest_freq) and position < sampler.num_samples:
                    save_latest(epoch, position)  # (at the epoch's last batch the epoch-end save follows)
                t_data_start = time.time()
            bar.close()
            if ran_step and info.is_main and not opt.no_html:
                visualizer.display_current_results(model.get_current_visuals(), epoch)  # the epoch's last batch

            totals = sum_over_processes(torch.tensor([stats["unreadable"], stats["grayscale"], stats["nonfinite"]]),
                                        info).tolist()
            if any(totals):
                print(f"epoch {epoch}: skipped {totals[0]} unreadable image(s) and {totals[1]} grayscale image(s)"
                      + (f"; {totals[2]} step(s) skipped for a non-finite loss or gradient" if totals[2] else ""))
            last = epoch == end_epoch - 1
            if info.is_main:
                model.save_networks("latest")  # with the epoch-end resume point below
            if (epoch + 1 - opt.epoch_count) % opt.save_epoch_freq == 0 or last:
                print(f"saving the model at the end of epoch {epoch}, iters {counters['total_images']}")
                if info.is_main:
                    model.save_networks(epoch, same_as="latest")
            print(f"End of epoch {epoch} / {end_epoch - 1} \t Time Taken: {time.time() - epoch_start:.0f} sec")
            mean_loss = mean_over_processes(torch.tensor(
                [stats["loss_sum"] / stats["steps"] if stats["steps"] else float("inf")], dtype=torch.float64), info)
            model.update_learning_rate(float(mean_loss))
            stats = fresh_epoch_stats()
            save_resume(epoch + 1, 0)
            if bool(any_flag(torch.tensor([stop.requested]), info)) and not last:
                return stopped(stop.signum, resume_path)
    for reasons in gather_objects(skip_log.reasons, info)[1:]:  # rank 0 lists every process's files
        skip_log.reasons.update(reasons)
    if info.is_main:
        skip_log.report(save_dir)
    if info.enabled:
        if not replicas_in_sync(unwrap(model.netG), info, buffers=opt.sync_bn):
            print("error: the processes ended with different weights (the saved ones are rank 0's)", file=sys.stderr)
            return 1
        print(f"weights identical in all {world} processes")
    return 0


def stopped(signum: Optional[int], resume_path: str) -> int:
    """Report a signal-triggered stop; the exit status is 128 + the signal number."""
    name = signal.Signals(signum).name if signum else "a signal on another process"
    print(f"stopped by {name}: resume point saved to {resume_path}; continue with --resume", file=sys.stderr)
    return 128 + (signum or signal.SIGTERM)


if __name__ == "__main__":
    sys.exit(main())
