"""Resume points of train.py: all that is needed to continue a run exactly where it stopped.

``<checkpoints_dir>/<name>/resume_state.pth`` holds the weights, the optimizer, the LR
schedulers, the GradScaler, the epoch and the position inside it, the counters, every RNG state
(python, numpy, torch, CUDA, the hint generator; the data order and augmentations are functions of
the seed, epoch and position, see data/samplers.py) and the options. It is written atomically, read
with ``weights_only=True`` (no code is ever unpickled), and kept separate from the plain weight
files so that those stay interchangeable with the official ones.
"""
from __future__ import annotations

import random
import signal
import sys
from typing import Dict, List, Optional

import numpy as np
import torch

from util.checkpoint import CheckpointError, load_tensor_file, save_checked

RESUME_FILE = "resume_state.pth"
FORMAT = "colorization-pytorch resume point, version 1"

#: Options that only change what is logged or where: a resumed run may change them silently.
COSMETIC_OPTIONS = {"resume", "verbose", "print_freq", "display_freq", "save_latest_freq", "save_epoch_freq",
                    "no_html", "display_winsize", "num_threads", "gpu_ids", "checkpoints_dir", "suffix", "isTrain"}


def rng_state(hint_generator: torch.Generator) -> dict:
    """Every RNG state of this process: python, numpy, torch (CPU and CUDA) and the hint generator."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "hints": hint_generator.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict, hint_generator: torch.Generator) -> None:
    """Undo :func:`rng_state` (CUDA states only when this machine has as many devices)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npst = state["numpy"]
    np.random.set_state((npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                         npst["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    hint_generator.set_state(state["hints"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def plain_options(opt) -> Dict[str, object]:
    """The options as a dict of plain values (what weights_only loading accepts)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(opt).items()
            if isinstance(v, (str, int, float, bool, list, tuple, type(None)))}


def changed_options(saved: Dict[str, object], opt) -> List[str]:
    """'name old -> new' for every non-cosmetic option that differs from the saved run's."""
    now = plain_options(opt)
    return [f"{k} {saved.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(saved) | set(now))
            if k not in COSMETIC_OPTIONS and saved.get(k) != now.get(k)]


def save_resume_point(path: str, state: dict) -> None:
    """Write a resume point atomically (without zip checksums, see atomic_torch_save: it is
    rewritten every few thousand images); CheckpointError (one line) if it cannot be written."""
    save_checked(dict(state, format=FORMAT), path, checksums=False)


def load_resume_point(path: str) -> dict:
    """Read a resume point safely. CheckpointError (one line naming the file) when it cannot be
    read, would need arbitrary unpickling, or is not a resume point of this program."""
    state = load_tensor_file(path, "resume point")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a resume point of this train.py (format {state.get('format')!r})"
                              if isinstance(state, dict) else f"{path}: not a resume point of this train.py")
    missing = [k for k in ("net", "optimizers", "schedulers", "epoch", "position", "counters", "rng", "options")
               if k not in state]
    if missing:
        raise CheckpointError(f"{path}: incomplete resume point, missing {', '.join(missing)}")
    return state


class StopSignals:
    """Turn SIGINT/SIGTERM into a request (``.signum``) that the training loop honours after the
    current step by saving a resume point.

    A second SIGINT (Ctrl-C twice) interrupts at once, as usual. Further SIGTERMs are ignored:
    under a scheduler every process of the job gets one and torchrun forwards its own to its
    workers too, so a worker often receives two, and the second must not kill it mid-save (the
    scheduler's SIGKILL after its grace period still does)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: dict = {}

    def __enter__(self) -> "StopSignals":
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. called from a test runner thread)
                pass
        return self

    def _handle(self, signum, _frame) -> None:
        first = self.signum is None
        self.signum = self.signum or signum
        if signum == signal.SIGINT:
            signal.signal(signum, self._previous.get(signum, signal.default_int_handler))
        if first:
            print(f"\n{signal.Signals(signum).name} received: stopping after this step and saving a resume point"
                  + (" (Ctrl-C again to stop at once)" if signum == signal.SIGINT else ""), file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @property
    def requested(self) -> bool:
        return self.signum is not None


def ignore_stop_signals(_worker_id: int) -> None:
    """DataLoader worker_init_fn: SIGINT/SIGTERM are for the main process, which shuts the
    workers down itself; a worker killed by a signal sent to the whole process group (Ctrl-C,
    SLURM) would otherwise crash the main process before it could save."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
