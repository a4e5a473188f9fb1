"""Train the SIGGRAPH17 colorization network for one phase (scripts/train_siggraph.sh runs four).

    python train.py --name siggraph_class_small --dataroot ./dataset/ilsvrc2012/train_small \
        --classification --sample_p 1.0 --niter 100 --niter_decay 0

Writes to <checkpoints_dir>/<name>/: opt.txt, latest_net_G.pth and <epoch>_net_G.pth (plain
state_dicts with the original keys), loss_log.txt, loss_log.jsonl and web/index.html.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Optional, Sequence

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from data.datasets import ImageFolderDataset, RandomSubsetSampler, SkipLog, collate_skip_bad
from data.transforms import train_transform
from models import create_model
from options.train_options import TrainOptions
from util.checkpoint import CheckpointError
from util.hints import get_colorization_data
from util.runtime import resolve_device, save_options, seed_everything
from util.visualizer import Visualizer

#: Images whose ab range sums to less than this (Lab units) are dropped as grayscale (the original's 5).
AB_THRESH = 5.0


def crossed(before: int, after: int, freq: int) -> bool:
    """Did a counter going from ``before`` to ``after`` pass a multiple of ``freq``?"""
    return after // freq > before // freq


def build_loader(opt, dataroot: str, seed: int) -> DataLoader:
    dataset = ImageFolderDataset(dataroot, train_transform(opt.loadSize, opt.fineSize), require_classes=True)
    sampler = RandomSubsetSampler(len(dataset), opt.max_dataset_size, seed=seed)
    return DataLoader(dataset, batch_size=opt.batch_size, sampler=sampler, num_workers=opt.num_threads,
                      collate_fn=collate_skip_bad, pin_memory=torch.cuda.is_available(),
                      persistent_workers=opt.num_threads > 0, generator=torch.Generator().manual_seed(seed))


def main(argv: Optional[Sequence[str]] = None) -> int:
    options = TrainOptions()
    opt = options.parse(argv)
    device = resolve_device(opt.gpu_ids)
    seed_everything(opt.seed)
    dataroot = opt.dataroot or os.path.join("./dataset/ilsvrc2012", opt.phase)
    save_dir = os.path.join(opt.checkpoints_dir, opt.name)
    print(save_options(opt, options.parser, save_dir))

    try:
        loader = build_loader(opt, dataroot, opt.seed)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"#training images = {len(loader.sampler)} per epoch (of {len(loader.dataset)} in {dataroot})")

    try:
        model = create_model(opt, device)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    visualizer = Visualizer(save_dir, use_html=not opt.no_html, winsize=opt.display_winsize, name=opt.name)
    hint_gen = torch.Generator(device=device).manual_seed(opt.seed)

    total_images = 0
    skip_log = SkipLog()  # unreadable files of the whole run: one warning each, listed at the end
    for epoch in range(opt.epoch_count, opt.niter + opt.niter_decay):
        loader.sampler.set_epoch(epoch)
        epoch_start = time.time()
        skipped = grayscale = steps = 0
        loss_sum = 0.0
        t_data_start = time.time()
        bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", dynamic_ncols=True, file=sys.stdout)
        for images, _labels, bad_files in bar:
            skipped += skip_log.add(bad_files)
            t_data = time.time() - t_data_start
            if images.shape[0] == 0:
                continue
            t_start = time.time()
            rgb = images.to(device, non_blocking=True).float().div_(255.0)
            batch = get_colorization_data(
                rgb, ab_thresh=AB_THRESH, p=opt.sample_p, sample_Ps=opt.sample_Ps, l_cent=opt.l_cent,
                l_norm=opt.l_norm, ab_norm=opt.ab_norm, mask_cent=opt.mask_cent, generator=hint_gen)
            if batch is None:
                grayscale += images.shape[0]
                continue
            grayscale += images.shape[0] - batch.A.shape[0]
            model.set_input(batch)
            model.optimize_parameters()
            steps += 1
            loss_G = float(model.losses["G"])
            loss_sum += loss_G
            bar.set_postfix(G=f"{loss_G:.3f}")

            before, total_images = total_images, total_images + images.shape[0]
            if crossed(before, total_images, opt.display_freq):
                visualizer.display_current_results(model.get_current_visuals(), epoch)
            if crossed(before, total_images, opt.print_freq):
                raw = model.get_current_loss_values()
                losses = model.get_current_losses()
                t_comp = (time.time() - t_start) / images.shape[0]
                lr = model.optimizers[0].param_groups[0]["lr"]
                bar.write(visualizer.print_current_losses(epoch, total_images, losses, t_comp, t_data,
                                                          extra={"raw": raw, "lr": lr}))
            if crossed(before, total_images, opt.save_latest_freq):
                model.save_networks("latest")
            t_data_start = time.time()
        bar.close()
        if steps and not opt.no_html:
            visualizer.display_current_results(model.get_current_visuals(), epoch)  # the epoch's last batch

        if skipped or grayscale:
            print(f"epoch {epoch}: skipped {skipped} unreadable image(s) and {grayscale} grayscale image(s)")
        if (epoch + 1 - opt.epoch_count) % opt.save_epoch_freq == 0 or epoch == opt.niter + opt.niter_decay - 1:
            print(f"saving the model at the end of epoch {epoch}, iters {total_images}")
            model.save_networks("latest")
            model.save_networks(epoch)
        print(f"End of epoch {epoch} / {opt.niter + opt.niter_decay - 1} \t Time Taken: {time.time() - epoch_start:.0f} sec")
        model.update_learning_rate(loss_sum / steps if steps else float("inf"))
    skip_log.report(save_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
