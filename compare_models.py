r"""One HTML report comparing several colorization models.

    python compare_models.py --names siggraph_caffemodel siggraph_reg2 siggraph_reg2_sat \
        --probes siggraph_caffemodel=./probes/pretrained siggraph_reg2=./probes/baseline \
        --out ./results/comparison

It reads what test.py, test_sweep.py and test_shape_bias.py wrote under --results_dir (and
train_linear_classifiers.py under each --probes DIR) and writes <out>/index.html (evaluation/report.py; docs/evaluation.md).
A missing result is shown as such; the report fails (one line, exit 2) only when none is found.
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from evaluation.report import gather, write_report
from options import flags


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=flags.HelpFormatter)
    parser.add_argument("--names", nargs="+", required=True, metavar="NAME[=SUBDIR]",
                        help="model names (folders under --results_dir), or LABEL=SUBDIR")
    parser.add_argument("--results_dir", default="./results/", help="where test.py and test_sweep.py wrote")
    evaluated = parser.add_argument_group("the evaluated checkpoint", "the one whose test.py and test_sweep.py "
                                          "results are read:\n<results_dir>/<name>/val_<which_epoch>/ and "
                                          "sweep_<which_epoch>/")
    flags.add_flags(evaluated, "which_epoch")
    parser.add_argument("--probes", nargs="*", default=[], metavar="NAME=DIR",
                        help="linear-probe output folder (--linear_checkpoints) of a model")
    parser.add_argument("--out", default="./results/comparison", help="report folder")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    subdirs = {}  # label -> folder under --results_dir
    for item in args.names:
        label, _, subdir = item.partition("=")
        if not label or label in subdirs or (not subdir and "=" in item):
            parser.error(f"--names expects distinct NAME or LABEL=SUBDIR entries (got {item!r})")
        subdirs[label] = subdir or label
    probe_dirs = {}
    for item in args.probes:
        name, sep, folder = item.partition("=")
        if not sep or name not in subdirs:
            parser.error(f"--probes expects NAME=DIR with NAME one of --names (got {item!r})")
        probe_dirs[name] = folder
    models = [gather(n, args.results_dir, args.which_epoch, probe_dirs.get(n), d) for n, d in subdirs.items()]
    for m in models:
        missing = [k for k in ("metrics", "sweep") if m[k] is None] + (["probes"] if m["name"] in probe_dirs and not m["probes"] else [])
        if missing:
            print(f"note: {m['name']}: no {', '.join(missing)} results found", file=sys.stderr)
    if not any(m["metrics"] or m["sweep"] or m["probes"] or m["shape_bias"] for m in models):
        print(f"error: no results found for {', '.join(subdirs)} under {args.results_dir}", file=sys.stderr)
        return 2
    try:
        path = write_report(models, args.out, args.which_epoch)
    except OSError as e:  # every file is written atomically: a failed write leaves the earlier report whole
        print(f"error: cannot write the report in {args.out}: {e}", file=sys.stderr)
        return 1
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
