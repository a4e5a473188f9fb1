"""Saving and loading weight files and other torch files.

Weight files are plain state_dicts with the original key names and no ``module.`` prefix, so the
official SIGGRAPH17 files, the ideepcolor GUI and ours are interchangeable. Writes are atomic
(util.fileio), so an interrupted save leaves the previous file intact. Loading never unpickles
code (``weights_only=True``) and reports problems in one line.
"""
from __future__ import annotations

import os
import pickle
import re
from collections import OrderedDict
from typing import Mapping

import torch
from torch import nn

from util.fileio import atomic_link, atomic_write
from util.runtime import first_line

try:
    from torch.utils.serialization import config as _serialization_config  # torch >= 2.6
except ImportError:
    _serialization_config = None

#: Prefixes added by DataParallel/DistributedDataParallel (``module.``) and torch.compile (``_orig_mod.``).
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(RuntimeError):
    """A weight file that cannot be read or does not fit the network (message is one line)."""


def unwrap(net: nn.Module) -> nn.Module:
    """The bare module inside DataParallel / DistributedDataParallel / torch.compile wrappers."""
    while True:
        if hasattr(net, "module") and isinstance(net.module, nn.Module):
            net = net.module
        elif hasattr(net, "_orig_mod") and isinstance(net._orig_mod, nn.Module):
            net = net._orig_mod
        else:
            return net


def atomic_torch_save(obj, path: str, checksums: bool = True) -> None:
    """torch.save ``obj`` to ``path`` atomically (util.fileio.atomic_write).

    checksums=False skips the zip records' CRC-32 where torch can (torch.utils.serialization
    config, torch >= 2.6): that is half the time of writing a large file; the atomic write
    already rules out torn files. Used for resume points, which are rewritten often and read
    only by this code; weight files keep their checksums for every other tool that reads them.
    """
    config = getattr(_serialization_config, "save", None)
    if checksums or config is None or not hasattr(config, "compute_crc32"):
        atomic_write(path, lambda f: torch.save(obj, f))
        return
    previous, config.compute_crc32 = config.compute_crc32, False
    try:
        atomic_write(path, lambda f: torch.save(obj, f))
    finally:
        config.compute_crc32 = previous


def _cannot_save(path: str, e: OSError) -> "CheckpointError":
    """The one-line error of a failed save, with the OS's reason (read-only, no space left, ...)."""
    return CheckpointError(f"{path}: cannot save ({e.strerror or str(e) or type(e).__name__})")


def link_checked(source: str, path: str) -> None:
    """util.fileio.atomic_link (``path`` becomes a second name of the finished file ``source``),
    with any failure as a one-line CheckpointError."""
    try:
        atomic_link(source, path)
    except OSError as e:
        raise _cannot_save(path, e) from None


def nonfinite_keys(state: Mapping[str, torch.Tensor]) -> list:
    """Keys of the floating-point tensors of ``state`` holding a NaN or an infinity."""
    return [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def save_checked(obj, path: str, checksums: bool = True) -> None:
    """atomic_torch_save, with any failure (read-only folder, full disk, ...) as a one-line
    CheckpointError; the file at ``path`` is then the previous one, untouched."""
    try:
        atomic_torch_save(obj, path, checksums)
    except OSError as e:
        raise _cannot_save(path, e) from None


def cpu_state_dict(net: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    """The bare network's state_dict as detached, contiguous CPU tensors (a --channels_last run
    gives the same NCHW layout as any other) under the original key names."""
    return OrderedDict((k, v.detach().cpu().contiguous()) for k, v in unwrap(net).state_dict().items())


def save_network(net: nn.Module, path: str) -> None:
    """Save the bare network's state_dict (CPU tensors, original key names) atomically.

    Raises CheckpointError (one line) if a weight is not finite (nothing is written) or the
    file cannot be written (the previous file stays intact).
    """
    state = cpu_state_dict(net)
    bad = nonfinite_keys(state)
    if bad:
        raise CheckpointError(f"{path}: not saved, non-finite values in {', '.join(bad[:5])}"
                              f"{f' (+{len(bad) - 5} more)' if len(bad) > 5 else ''}")
    save_checked(state, path)


#: How torch names the global a weights-only unpickler refused (two wordings across versions).
_REFUSED_GLOBAL = re.compile(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)")
_UNPICKLER_ERROR = re.compile(r"WeightsUnpickler error:\s*(\S[^\n]*)")


def load_tensor_file(path: str, what: str = "file", mmap: bool = False):
    """``torch.load`` a file safely: on the CPU, ``weights_only=True`` (tensors, dicts, lists,
    numbers and strings; never code), optionally memory-mapped.

    Every failure is a CheckpointError with a one-line message naming the file: missing, empty,
    not a torch file, truncated, or refused because unpickling it would call something (the
    message names what, e.g. ``posix.system``; none of it runs). ``what`` names the kind of file
    in the messages ("checkpoint", "feature cache", ...).
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such {what} file")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path}: cannot read {what} (empty file)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        called = _REFUSED_GLOBAL.search(str(e))
        if called:
            detail = f"unpickling it would call {called.group(1)}; only tensors and plain containers are loaded"
        else:
            found = _UNPICKLER_ERROR.search(str(e))
            detail = found.group(1).strip() if found else first_line(e, sentence=True)
        raise CheckpointError(f"{path}: refused to load, the file is not a plain weights file ({detail})") from None
    except Exception as e:  # truncated or not a torch file at all
        raise CheckpointError(f"{path}: cannot read {what} ({first_line(e, sentence=True)})") from None


def read_state_dict(path: str) -> "OrderedDict[str, torch.Tensor]":
    """Read a weight file safely and normalise it to bare key names.

    Accepts a plain state_dict, optionally nested under 'state_dict'/'model'/'netG', with or
    without ``module.``/``_orig_mod.`` prefixes. Raises CheckpointError (one line) otherwise.
    """
    obj = load_tensor_file(path, "checkpoint")
    for key in ("state_dict", "model", "netG"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: not a state_dict of tensors")
    state = OrderedDict()
    for key, value in obj.items():
        stripped = True
        while stripped:  # wrappers nest in any order, e.g. _orig_mod.module.
            stripped = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix):], True
        state[key] = value
    return state


def load_network(net: nn.Module, path: str) -> None:
    """Load a weight file into ``net`` strictly.

    A missing BatchNorm ``num_batches_tracked`` (files written by PyTorch 0.4.0) is filled with 0,
    as the original's loader did; any other missing or unexpected key, or a shape mismatch, is a
    CheckpointError naming the keys.
    """
    apply_state_dict(net, read_state_dict(path), path)


def apply_state_dict(net: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """load_network's checks and strict load of an in-memory state_dict read from ``source``
    (named in the errors)."""
    target = unwrap(net)
    state = OrderedDict(state)
    expected = target.state_dict()
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)):
            if keys:
                shown = ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
                parts.append(f"{label}: {shown}")
        raise CheckpointError(f"{source}: does not fit the network; " + "; ".join(parts))
    target.load_state_dict(state, strict=True)
