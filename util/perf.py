"""Speed switches shared by every script that runs the generator: ``--amp`` (mixed precision),
``--channels_last`` (memory layout) and ``--compile`` (torch.compile). All are off by default, so a
default run is the fp32 eager computation that the parity tests check against the original. What
each does, its fallbacks and its measured effect: docs/speed.md.
"""
from __future__ import annotations

import contextlib
import shutil
import sys
from typing import ContextManager, Optional

import torch
from torch import nn

from util.runtime import first_line


def amp_dtype(device: torch.device) -> torch.dtype:
    """The autocast dtype for ``device``: bfloat16 where supported, else float16."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


def autocast(device: torch.device, enabled: bool) -> ContextManager:
    """``torch.autocast`` to :func:`amp_dtype` on ``device`` when enabled, else a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype(device))


def grad_scaler(device: torch.device, amp: bool) -> Optional[torch.amp.GradScaler]:
    """A GradScaler when the run trains in float16 (bfloat16 has float32's range and needs none)."""
    if amp and amp_dtype(device) == torch.float16:
        return torch.amp.GradScaler(device.type)
    return None


def to_memory_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``x`` (N x C x H x W) in channels_last layout when asked; values and shape are unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def call_with_flags(net, inputs, device: torch.device, amp: bool, channels_last: bool):
    """``net(*inputs)`` with the inputs in channels_last layout when asked and under autocast when
    amp (the outputs are then in the autocast dtype: callers cast what needs float32)."""
    args = [to_memory_format(t, channels_last) for t in inputs]
    with autocast(device, amp):
        return net(*args)


def compile_unsupported_reason(device: torch.device) -> Optional[str]:
    """Why torch.compile cannot be used here, or None when it should work."""
    try:
        import torch._dynamo
    except Exception as e:  # a build without dynamo
        return f"torch._dynamo is not importable ({type(e).__name__})"
    if not torch._dynamo.is_dynamo_supported():
        return f"torch.compile does not support Python {sys.version.split()[0]} on {sys.platform}"
    if device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        return "the CPU backend needs a C++ compiler (g++ or clang++) on PATH"
    return None


def maybe_compile(net: nn.Module, device: torch.device, enabled: bool) -> nn.Module:
    """``torch.compile(net)`` when enabled and supported, else ``net`` (one-line warning if it was
    asked for). The compiled module shares its parameters with ``net``."""
    if not enabled:
        return net
    reason = compile_unsupported_reason(device)
    if reason is not None:
        warn_eager(reason)
        return net
    return torch.compile(net)


class FirstCallFallback:
    """Compilation happens on the first call of a compiled module (and, for the backward pass, on
    the first backward): ``guard(fn, use_eager)`` runs ``fn()``; if that is the first call and it
    raises, it warns in one line, calls ``use_eager()`` (switch to the eager module) and runs
    ``fn()`` again. Later calls run ``fn()`` unguarded, so later errors are real errors."""

    def __init__(self, pending: bool):
        self.pending = pending

    def __call__(self, fn, use_eager):
        if not self.pending:
            return fn()
        try:
            result = fn()
        except Exception as e:  # inductor/dynamo raise many types
            warn_eager(f"compiling failed ({first_line(e)})")
            use_eager()
            self.pending = False
            return fn()
        self.pending = False
        return result


def warn_eager(reason: str) -> None:
    """The one-line notice that --compile is not in effect."""
    print(f"warning: --compile: {reason}; running in eager mode", file=sys.stderr)

