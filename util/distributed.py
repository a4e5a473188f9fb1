r"""Data-parallel training with PyTorch's own engine: torchrun launches the processes,
torch.distributed (NCCL on CUDA, gloo on the CPU) connects them, DistributedDataParallel averages
the gradients.

    torchrun --nproc_per_node 8 train.py --name siggraph_class ...          # one machine, 8 GPUs
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d \
        --rdzv_endpoint HOST:29400 --rdzv_id JOB train.py ...              # on each of 2 machines

The environment torchrun sets (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) is all
that is read; without it everything here is a no-op for a single process.

A hard kill of the job must not leave workers behind (:func:`die_with_launcher`), and a collective
whose peer is gone or stuck fails within :data:`COLLECTIVE_TIMEOUT` instead of hanging; the
training loop turns such a failure into one line (training/loop.py).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import re
import signal
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Optional

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclass
class DistInfo:
    """Where this process stands: rank, local_rank and world_size (0, 0, 1 for one process)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


#: The longest a collective waits for the other processes before it fails: longer than any
#: legitimate wait (rank 0 writing checkpoints or the web page while the others wait at the next
#: collective), far shorter than gloo's default of 30 minutes.
COLLECTIVE_TIMEOUT = timedelta(minutes=10)

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_launcher() -> None:
    """Have the kernel SIGKILL this process when its parent (torchrun's agent) dies (Linux).

    torchrun starts every worker in a session of its own, so a SIGKILL of torchrun, or of its
    process group as a scheduler or a user's ``kill -9 -PGID`` sends it, leaves the workers
    running: they go on training and rewriting the checkpoints while the requeued job starts and
    reads them, and its processes can resume from different resume points (seen as a gloo
    "Received data size doesn't match expected size" at the end of the first resumed epoch).
    A parent that died before this call leaves this process to init (or a subreaper): exit then.
    """
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        return  # not allowed here (seccomp): the collective timeout still bounds a stray worker's life
    if parent == 1 or os.getppid() != parent:
        raise SystemExit("error: torchrun, which started this process, is gone; not starting")


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def init_distributed(device_hint: str) -> tuple[DistInfo, Optional[torch.device]]:
    """Join the process group torchrun set up, if any.

    device_hint: 'cuda' or 'cpu', the kind of device the run asked for. On CUDA each process
    takes GPU LOCAL_RANK and the backend is NCCL; on the CPU it is gloo. Returns the DistInfo
    and the device of this process (None without torchrun: the caller picks it).
    """
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) <= 1:
        return DistInfo(), None
    info = DistInfo(int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"]))
    die_with_launcher()
    if device_hint == "cuda":
        if info.local_rank >= torch.cuda.device_count():
            raise SystemExit(f"error: LOCAL_RANK {info.local_rank} but only {torch.cuda.device_count()} CUDA "
                             f"device(s) on this machine (--nproc_per_node too large?)")
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device, timeout=COLLECTIVE_TIMEOUT)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo", timeout=COLLECTIVE_TIMEOUT)
    return info, device


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


_BACKEND_LOCATION = re.compile(r"^\[[^\]]*\.(?:cc|cpp|h)(?::\d+)?\]\s*")  # gloo's "[.../pair.cc:545] "


def collective_failure(e: BaseException) -> Optional[str]:
    """The reason, in one line, when ``e`` is a failed collective (another process died, hung past
    COLLECTIVE_TIMEOUT, or called another collective), else None. gloo raises plain
    RuntimeErrors naming its source file; NCCL raises torch.distributed.DistError."""
    dist_error = getattr(dist, "DistError", ())
    text = str(e).strip()
    if not (isinstance(e, dist_error) or (isinstance(e, RuntimeError) and ("gloo" in text or "NCCL" in text))):
        return None
    line = _BACKEND_LOCATION.sub("", text.splitlines()[0] if text else type(e).__name__)
    return line.split(". This is typically")[0].rstrip(". ")


def any_flag(flags: Tensor, info: DistInfo) -> Tensor:
    """Element-wise logical OR of a small int/bool tensor over all processes (itself alone
    without torchrun): used so that every process takes the same decision (skip a step, stop)."""
    flags = flags.to(torch.int32)
    if info.enabled:
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return flags.bool()


def sum_over_processes(values: Tensor, info: DistInfo) -> Tensor:
    """The element-wise sum of ``values`` over all processes (``values`` itself for one)."""
    if not info.enabled:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def mean_over_processes(values: Tensor, info: DistInfo) -> Tensor:
    """The element-wise mean of ``values`` over all processes (for logging and the LR plateau)."""
    return sum_over_processes(values, info) / info.world_size


def gather_objects(obj, info: DistInfo) -> list:
    """Every process's python object, in rank order, on every process ([obj] for one)."""
    if not info.enabled:
        return [obj]
    gathered = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


class _AllReduceSum(torch.autograd.Function):
    """Differentiable all-reduce (sum): the gradient of a global sum w.r.t. a process's local
    term is the sum over processes of their losses' gradients w.r.t. that sum."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def replicas_in_sync(net: nn.Module, info: DistInfo, buffers: bool = True) -> bool:
    """Do all processes hold bit-identical parameters (and buffers)? SHA-1 of every tensor's
    bytes, gathered and compared; True for one process. Without SyncBatchNorm the running
    statistics legitimately differ (each process normalises its own share; DDP copies rank 0's
    at the start of each forward), so pass buffers=False then."""
    if not info.enabled:
        return True
    digest = hashlib.sha1()
    tensors = net.state_dict().items() if buffers else net.named_parameters()
    for key, value in tensors:
        digest.update(key.encode())
        digest.update(value.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    digests = [None] * info.world_size
    dist.all_gather_object(digests, digest.hexdigest())
    return len(set(digests)) == 1


class GlooSyncBatchNorm2d(nn.BatchNorm2d):
    """Batch normalisation over the global batch of a CPU (gloo) data-parallel run.

    torch.nn.SyncBatchNorm only runs on GPUs; this does the same on the CPU so that a CPU
    torchrun computes what one process with the whole batch computes. The batch statistics are
    two-pass sums (mean, then squared deviations) all-reduced with :class:`_AllReduceSum`, whose
    backward sums the gradients of every process's loss, as SyncBatchNorm's does. Without a process group, in eval mode or without batch statistics it is BatchNorm2d.
    Same parameters, buffers and state-dict keys as BatchNorm2d.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        all_reduce = _AllReduceSum.apply
        count = torch.tensor([x.numel() / x.shape[1]], dtype=torch.float64)
        dist.all_reduce(count)
        n = float(count)
        mean = all_reduce(x.sum(dim=(0, 2, 3))) / n
        centred = x - mean.view(1, -1, 1, 1)
        var = all_reduce(centred.square().sum(dim=(0, 2, 3))) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                unbiased = var.detach() * (n / max(n - 1.0, 1.0))
                self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
        out = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            out = out * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return out


def convert_sync_batchnorm(net: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm2d of ``net`` synchronised across processes: torch's SyncBatchNorm on
    CUDA, :class:`GlooSyncBatchNorm2d` elsewhere. Parameters and buffers are carried over."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(net)
    for name, child in list(net.named_children()):
        if type(child) is nn.BatchNorm2d:
            sync = GlooSyncBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                       child.track_running_stats)
            sync.load_state_dict(child.state_dict())
            sync.train(child.training)
            setattr(net, name, sync.to(child.running_mean.device if child.track_running_stats else child.weight.device))
        else:
            convert_sync_batchnorm(child, device)
    return net

