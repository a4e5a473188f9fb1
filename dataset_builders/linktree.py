"""Idempotent dataset layouts made of symlinks (or copies): plan everything, check, then apply.

The dataset tools (make_ilsvrc_dataset.py, make_coco_dataset.py) describe what has to exist under
their output folder as a :class:`Plan`. :meth:`Plan.check` looks at what is already there and
raises :class:`LayoutError` (one line) for the first thing in the way, before anything is
modified; :meth:`Plan.apply` then creates only what is missing, so a rerun with the same
arguments changes nothing and an interrupted run is completed by the next one. Source files are
only ever read.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Tuple

from util.fileio import atomic_copy, atomic_symlink_folder, atomic_write_text, is_temporary


class LayoutError(Exception):
    """A problem reported to the user as a single line; nothing has been modified."""


class Plan:
    """What has to exist under an output folder; checked completely before anything is created.

    Attributes (fill them, then call check() and apply()):
        dirs: directories to create (they may stay empty).
        link_dirs: (path, {name: target}, hint): real directories created as a whole, atomically;
            an existing one must hold exactly these links, else the conflict ends with ``hint``.
        links: (path, target) or (path, target, hint): single symlinks (targets absolute); the hint
            is added when a directory stands in the way.
        copies: (path, source): regular files copied from source (same size counts as present).
        texts: (path, text): small text files (manifests) written atomically; an existing one must
            be identical. Listed last, they are written last, so they mark a complete run.
        owned: directories that only this plan fills: any entry in them that the plan does not
            create is a conflict (a layout made with other options).
    """

    def __init__(self, hint: str = "was it made with other options?"):
        self.hint = hint  # the question that ends a conflict with texts or owned directories
        self.dirs: List[str] = []
        self.link_dirs: List[Tuple[str, Dict[str, str], str]] = []
        self.links: List[Tuple] = []
        self.copies: List[Tuple[str, str]] = []
        self.texts: List[Tuple[str, str]] = []
        self.owned: List[str] = []
        self.created = 0
        self.present = 0

    # -- checking -------------------------------------------------------------------------

    def check(self) -> Tuple[int, int]:
        """Raise LayoutError for the first thing in the way; return (to create, present)."""
        tally = _Tally()
        self._check_dirs(tally)
        for path, links, hint in self.link_dirs:
            self._check_link_dir(tally, path, links, hint)
        for entry in self.links:
            self._check_link(tally, entry)
        for path, source in self.copies:
            self._check_copy(tally, path, source)
        for path, text in self.texts:
            self._check_text(tally, path, text)
        tally.conflicts += self._foreign_entries()
        if tally.conflicts:
            extra = len(tally.conflicts) - 1
            more = " (and %d more conflict%s)" % (extra, "s" * (extra > 1)) if extra else ""
            raise LayoutError(tally.conflicts[0] + more + "; nothing was modified")
        return tally.to_create, tally.present

    def _check_dirs(self, tally: _Tally) -> None:
        for d in self.dirs:
            if os.path.lexists(d) and not os.path.isdir(d):
                tally.conflicts.append("%s exists and is not a directory" % d)

    def _check_link_dir(self, tally: _Tally, path: str, links: Dict[str, str], hint: str) -> None:
        if not os.path.lexists(path):
            tally.to_create += len(links)
            return
        if os.path.islink(path) or not os.path.isdir(path):
            tally.conflicts.append("%s exists and is not a directory of class links (%s)" % (path, hint))
            return
        existing = set(os.listdir(path))
        if existing != set(links):
            tally.conflicts.append("%s already holds a different set of classes (%d entries, expected %d; %s)"
                                   % (path, len(existing), len(links), hint))
            return
        for name, target in sorted(links.items()):
            tally.add(self._link_problem(os.path.join(path, name), target))

    def _check_link(self, tally: _Tally, entry: Tuple) -> None:
        path, target = entry[0], entry[1]
        if not os.path.lexists(path):
            tally.to_create += 1
            return
        problem = self._link_problem(path, target)
        if problem and len(entry) > 2 and os.path.isdir(path):
            problem += " (%s)" % entry[2]
        tally.add(problem)

    @staticmethod
    def _check_copy(tally: _Tally, path: str, source: str) -> None:
        if not os.path.lexists(path):
            tally.to_create += 1
        elif os.path.islink(path) or not os.path.isfile(path):
            tally.add("%s is in the way (expected a copy of %s, not a link or folder%s)"
                      % (path, source, "; was it made without --copy?" if os.path.islink(path) else ""))
        elif os.path.getsize(path) != os.path.getsize(source):
            tally.add("%s is in the way (a different file from %s)" % (path, source))
        else:
            tally.add(None)

    def _check_text(self, tally: _Tally, path: str, text: str) -> None:
        if not os.path.lexists(path):
            tally.to_create += 1
            return
        try:
            with open(path, encoding="utf-8", newline="") as f:
                same = f.read() == text
        except (OSError, UnicodeDecodeError):
            same = False
        tally.add(None if same else "%s differs from what these options give (%s)" % (path, self.hint))

    def _foreign_entries(self) -> List[str]:
        """Entries of the owned directories that this plan would not create."""
        if not self.owned:
            return []
        planned = set(self.dirs) | {e[0] for e in self.links} | {p for p, _ in self.copies} | \
            {p for p, _ in self.texts} | {e[0] for e in self.link_dirs}
        problems = []
        for d in self.owned:
            if not os.path.isdir(d) or os.path.islink(d):
                continue
            for name in sorted(os.listdir(d)):
                path = os.path.join(d, name)
                if path not in planned and not self._is_leftover(name):
                    problems.append("%s is in the way (this layout would not create it; %s)" % (path, self.hint))
        return problems

    @staticmethod
    def _is_leftover(name: str) -> bool:
        """A temporary of an interrupted copy or link folder (removed by apply)."""
        return is_temporary(name)

    @staticmethod
    def _link_problem(path: str, target: str) -> Optional[str]:
        """None if ``path`` is a symlink to ``target``, else a description of the conflict."""
        if not os.path.islink(path):
            if os.path.isdir(path):
                return "%s is in the way (a directory, expected a symlink to %s)" % (path, target)
            return "%s is in the way (not a symlink; expected a symlink to %s)" % (path, target)
        current = os.readlink(path)
        if current != target:
            return "%s is a symlink to %s, expected %s" % (path, current, target)
        return None

    # -- applying -------------------------------------------------------------------------

    def apply(self) -> None:
        """Create what check() found missing (call check() first)."""
        for d in self.dirs:
            os.makedirs(d, exist_ok=True)
        for d in self.owned:
            for name in (os.listdir(d) if os.path.isdir(d) else []):
                if self._is_leftover(name):
                    _remove_leftover(os.path.join(d, name))
        for path, links, _hint in self.link_dirs:
            if os.path.lexists(path):
                self.present += len(links)
            else:
                atomic_symlink_folder(path, links)
                self.created += len(links)
        for entry in self.links:
            path, target = entry[0], entry[1]
            if os.path.lexists(path):  # verified by check() to be the right link
                self.present += 1
            else:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                os.symlink(target, path)
                self.created += 1
        for path, source in self.copies:
            if os.path.lexists(path):
                self.present += 1
            else:
                atomic_copy(source, path, durable=False)  # bulk copies: no fsync each
                self.created += 1
        for path, text in self.texts:
            if os.path.lexists(path):
                self.present += 1
            else:
                atomic_write_text(path, text)
                self.created += 1


class _Tally:
    """What Plan.check found so far: conflicts (one line each, in plan order) and entry counts."""

    def __init__(self):
        self.conflicts: List[str] = []
        self.to_create = 0
        self.present = 0

    def add(self, problem: Optional[str]) -> None:
        """An existing entry: a conflict when ``problem`` is a description, else one present."""
        if problem:
            self.conflicts.append(problem)
        else:
            self.present += 1


def _remove_leftover(path: str) -> None:
    """Remove a temporary file, or a temporary folder of symlinks, left by a killed run."""
    if os.path.isdir(path) and not os.path.islink(path):
        for name in os.listdir(path):
            os.unlink(os.path.join(path, name))
        os.rmdir(path)
    else:
        os.unlink(path)
