"""Atomic file writing, torch-free: every file the project writes goes through here.

A file (or a folder of symlinks) is first made under a hidden temporary name beside its
destination, ``.<name>.<random>.tmp``, flushed (fsync unless ``durable=False``) and then renamed
over the destination: readers, and a process killed at any moment, see the old file or the new
one, never a partial one. A killed writer can leave a temporary behind; :func:`is_temporary`
recognises one and :func:`remove_stale_temporaries` deletes them.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from typing import Callable, Iterable, Optional

_TMP_SUFFIX = ".tmp"


def _temporary_prefix(path: str) -> str:
    return "." + os.path.basename(path) + "."


def is_temporary(name: str, of: Optional[str] = None) -> bool:
    """Is the file name ``name`` a temporary of this module (of the destination ``of``, when given)?"""
    if not (name.startswith(".") and name.endswith(_TMP_SUFFIX)):
        return False
    return of is None or name.startswith(_temporary_prefix(of))


def remove_stale_temporaries(folders: Iterable[str], keep: Callable[[str], bool] = lambda name: False) -> int:
    """Delete the temporary files that killed writers left in ``folders`` (not recursive), except
    those whose name ``keep`` accepts. Returns how many were deleted."""
    removed = 0
    for folder in folders:
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(folder):
                if is_temporary(entry.name) and not keep(entry.name) and entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
                    removed += 1
    return removed


def atomic_write(path: str, write: Callable[[io.BufferedWriter], None], durable: bool = True) -> None:
    """Call ``write(binary_file)`` on a temporary file beside ``path``, fsync it (skipped with
    durable=False: safe against a killed process, not against a power cut; for bulk outputs),
    then rename it over ``path``. The temporary is removed on any failure."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=_TMP_SUFFIX, dir=folder)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # already renamed, or the folder became read-only
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda f: f.write(data), durable)


def atomic_write_text(path: str, text: str) -> None:
    """Write a text file (UTF-8) atomically: results and reports are never left half-written."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_savefig(fig, path: str, **kwargs) -> str:
    """Save a matplotlib Figure atomically (format from the extension, e.g. .png). Returns ``path``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=os.path.splitext(path)[1].lstrip(".").lower() or "png", **kwargs)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def atomic_copy(source: str, path: str, durable: bool = True) -> None:
    """Copy ``source`` to ``path`` atomically, keeping its permission bits and times (shutil.copy2)."""
    with open(source, "rb") as f:
        atomic_write(path, lambda out: shutil.copyfileobj(f, out, 1 << 24), durable)
    shutil.copystat(source, path)


def atomic_link(source: str, path: str) -> None:
    """Make ``path`` a second name (hard link) of the finished file ``source``, atomically (a
    temporary link renamed over ``path``), copying the bytes where the file system has no hard
    links. Replacing ``source`` later with a new file leaves ``path`` as it is. OSError on failure."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f"{_temporary_prefix(path)}{os.getpid()}{_TMP_SUFFIX}")
    try:
        os.link(source, tmp)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        with open(source, "rb") as f:
            atomic_write(path, lambda out: shutil.copyfileobj(f, out, 1 << 24))


def atomic_symlink_folder(path: str, links: dict) -> None:
    """Create the folder ``path`` holding the symlinks ``{name: target}``, atomically: a killed
    run leaves no partial folder at ``path``, at most a hidden temporary one beside it."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=_temporary_prefix(path), suffix=_TMP_SUFFIX, dir=parent)
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
        for name, target in sorted(links.items()):
            os.symlink(target, os.path.join(tmp, name))
        os.rename(tmp, path)
    except BaseException:
        for name in os.listdir(tmp):
            os.unlink(os.path.join(tmp, name))
        os.rmdir(tmp)
        raise


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def check_writable(folder: str) -> None:
    """Create ``folder`` if needed and check that a file can be created in it (the file is
    removed again); raises OSError otherwise. For scripts that write their results only at the
    end of a long run."""
    os.makedirs(folder, exist_ok=True)
    tempfile.TemporaryFile(dir=folder).close()
