"""Train the SIGGRAPH17 colorization network for one phase (scripts/train_siggraph.sh runs four).

    python train.py --name siggraph_class_small --dataroot ./dataset/ilsvrc2012/train_small \
        --classification --sample_p 1.0 --niter 100 --niter_decay 0
    torchrun --nproc_per_node 8 train.py ...          # data-parallel, one process per GPU

Writes to <checkpoints_dir>/<name>/ (training/loop.py runs the loop): opt.txt, latest_net_G.pth and
<epoch>_net_G.pth (plain state_dicts with the original keys), resume_state.pth (for --resume),
loss_log.txt, loss_log.jsonl, web/index.html (visuals and loss curves), tensorboard/ (if installed).
Under torchrun --batch_size is per process; --max_dataset_size and the frequencies count global images.
Exit status: 0 done; 1 a failed save, --max_nonfinite non-finite steps in a row or processes out of
sync; 2 an unusable dataset, weight file or resume point; 128 + N stopped by signal N (SIGINT and
SIGTERM stop after the current step with a resume point).
"""
from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

from options.train_options import TrainOptions
from training.loop import EarlyExit, UnusableInput, train
from util.checkpoint import CheckpointError
from util.distributed import cleanup, init_distributed
from util.hints import get_colorization_data
from util.runtime import make_deterministic, resolve_device, wants_cuda


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse the options, start the process (under torchrun or not), train; returns the exit status."""
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
        # The batch maker is looked up here, at call time, so that a test can replace it.
        train(opt, options.parser, info, device, make_batch=get_colorization_data)
        return 0
    except UnusableInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except CheckpointError as e:  # a save that failed (the previous file is intact)
        print(f"error: {e}", file=sys.stderr)
        return 1
    except EarlyExit as e:  # its message is already printed
        return e.status
    finally:
        cleanup()


if __name__ == "__main__":
    sys.exit(main())
