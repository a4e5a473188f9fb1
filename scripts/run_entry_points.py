"""Run several of this repository's scripts one after the other in ONE Python process.

    python scripts/run_entry_points.py test.py --name a --dataroot val ::: test_sweep.py --name a

Each group is a script path (relative to the repository root, or absolute) and its arguments;
groups are separated by a lone ``:::``. Every script must define ``main(argv) -> int``. The
groups run in order; the first one that fails (non-zero status, or argparse's SystemExit) stops
the run with its status, like ``set -e``. Why: importing torch and torchvision costs about
2.5 s of CPU per process, which dominates the evaluation steps of ``scripts/run_study.sh`` on
small data (12 evaluation and probe runs in SMOKE mode); on real data it is just harmless.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import time
from types import ModuleType
from typing import List, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEPARATOR = ":::"


def split_groups(argv: Sequence[str]) -> List[List[str]]:
    groups: List[List[str]] = [[]]
    for arg in argv:
        if arg == SEPARATOR:
            groups.append([])
        else:
            groups[-1].append(arg)
    return [g for g in groups if g]


def load_script(path: str) -> ModuleType:
    """Load the script at ``path`` (relative to the repository root, or absolute) as a fresh
    module, under a private name: ``test.py`` would clash with the standard library's ``test``
    package. FileNotFoundError if there is no such file."""
    full = path if os.path.isabs(path) else os.path.join(REPO, path)
    if not os.path.isfile(full):
        raise FileNotFoundError(full)
    name = "_entry_" + os.path.splitext(os.path.basename(full))[0]
    spec = importlib.util.spec_from_file_location(name, full)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    return module


def run_script(path: str, argv: Sequence[str]) -> int:
    """``main(argv)`` of the script at ``path`` (see load_script)."""
    try:
        module = load_script(path)
    except FileNotFoundError:
        print(f"run_entry_points.py: error: no such script: {path}", file=sys.stderr)
        return 2
    try:
        status = module.main(list(argv))
    except SystemExit as e:  # argparse errors and scripts that exit themselves
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return status or 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    groups = split_groups(sys.argv[1:] if argv is None else argv)
    if not groups:
        print(f"usage: run_entry_points.py SCRIPT ARGS... [{SEPARATOR} SCRIPT ARGS...]", file=sys.stderr)
        return 2
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    for script, *args in groups:
        start = time.time()
        print(f"---- {script} {' '.join(args)}", flush=True)
        status = run_script(script, args)
        if status:
            print(f"run_entry_points.py: {script} failed (exit status {status})", file=sys.stderr)
            return status
        print(f"---- {script}: done in {time.time() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
