"""The training loop's own duties that the end-to-end tests do not show (CPU, tiny data)."""
import gc
import multiprocessing
import sys

import train
from tests.helpers import tiny_train_args
from training.visualizer import Visualizer


def test_the_workers_end_with_the_run_even_when_a_reference_cycle_holds_the_loop(tiny_data, tmp_path, monkeypatch):
    """DataLoader workers ignore SIGTERM, so a worker still running at interpreter exit hangs it
    (multiprocessing terminates, then waits for it). Reference cycles that hold a frame (matplotlib
    made some) keep the loop's frames, and the loader, until the garbage collector runs: the run
    must end its workers itself."""
    real = Visualizer.print_current_losses

    def with_a_cycle(self, *args, **kwargs):
        cycle = [sys._getframe()]  # this frame -> f_back -> the loop's frames, which hold the loader
        cycle.append(cycle)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Visualizer, "print_current_losses", with_a_cycle)
    gc.disable()
    try:
        assert train.main(tiny_train_args(tiny_data, tmp_path, "w", "--num_threads", "1", "--max_dataset_size", "4",
                                          "--print_freq", "4", "--no_html")) == 0
        assert multiprocessing.active_children() == []
    finally:
        gc.enable()
