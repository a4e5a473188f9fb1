r"""Shape bias per layer of a colorization model: 16-way linear probes on its frozen conv1..conv5
features, then the cue-conflict stimuli of Geirhos et al. (ICLR 2019).

    python test_shape_bias.py --name siggraph_caffemodel --mask_cent 0 \
        --dataroot ./dataset/geirhos16/train --dataroot_validation ./dataset/geirhos16/val \
        --stimuli ./dataset/cue-conflict/style-transfer-preprocessed-512

The probes are train_linear_classifiers.py's corrected protocol (cached features, standardised
heads, best epoch by val top-1) with its defaults, trained on the 16 category folders of
make_geirhos16_dataset.py. Every stimulus is then classified by each layer's best head and
<results_dir>/<name>/shape_bias/ gets shape_bias.json, decisions.csv and shape_bias.png (the
probes in its probes/ folder). The engine is evaluation/shape_bias.py; docs/shape_bias.md.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from evaluation.probes import ProbeError, check_sizes
from evaluation.shape_bias import measure, prepare
from models import probes
from options import flags
from util.checkpoint import CheckpointError
from util.runtime import save_options

#: The probes' settings that this script does not expose: train_linear_classifiers.py's defaults
#: (tests/test_shape_bias.py checks that they still are).
PROBE_SETTINGS = dict(protocol="corrected", lr=1e-3, train_augment=1, head_batch_size=256, cache_dtype="bfloat16",
                      no_cache=False, train_subset=None, val_subset=None, max_dataset_size=None,
                      layers=list(probes.LAYERS))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=flags.HelpFormatter)
    model = parser.add_argument_group("the colorization model")
    flags.add_checkpoint_flags(model)
    flags.add_flags(model, "mask_cent")
    parser.add_argument("--dataroot", default="./dataset/geirhos16/train",
                        help="training images of the probes, <root>/<category>/<img> (the 16 categories)")
    parser.add_argument("--dataroot_validation", default="./dataset/geirhos16/val",
                        help="validation images of the probes, <root>/<category>/<img>")
    parser.add_argument("--stimuli", default="./dataset/cue-conflict/style-transfer-preprocessed-512",
                        help="the cue-conflict stimuli, <stimuli>/<shape>/<shape><n>-<texture><m>.png; "
                             "a human_shape_bias.json beside it is drawn as a reference")
    parser.add_argument("--results_dir", default="./results/", help="outputs go to <results_dir>/<name>/shape_bias/")
    parser.add_argument("--niter", type=int, default=200, help="epochs")
    flags.add_flags(parser, "gpu_ids", "seed")
    flags.add_loader_flags(parser.add_argument_group("loading", "--batch_size: images per backbone batch"))
    flags.add_size_flags(parser.add_argument_group(
        "image sizes", "training views: the original's random training resize, then RandomResizedCrop(--fineSize)\n"
                       "and a flip; validation views and stimuli: shorter side to --loadSize, centre crop to\n"
                       "--fineSize. --fineSize is at least 8"))
    flags.add_speed_flags(parser.add_argument_group("speed", "of the frozen backbone, as in train_linear_classifiers.py"))
    return parser


def parse(argv: Optional[Sequence[str]] = None):
    parser = build_parser()
    opt = parser.parse_args(argv)
    check_sizes(opt, parser.error)
    opt.shape_bias_dir = os.path.join(opt.results_dir, opt.name, "shape_bias")
    opt.linear_checkpoints = os.path.join(opt.shape_bias_dir, "probes")
    opt.cache_dir = os.path.join(opt.linear_checkpoints, "feature_cache")
    for key, value in PROBE_SETTINGS.items():
        setattr(opt, key, list(value) if isinstance(value, list) else value)
    return opt, parser


def print_summary(summary: dict, folder: str) -> None:
    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f}%"

    print(f"{summary['num_stimuli']} stimuli classified, {summary['num_conflict']} with a cue conflict:")
    for layer, r in summary["layers"].items():
        print(f"{layer}: shape bias {pct(r['shape_bias'])}  (shape {pct(r['shape_fraction'])}, texture "
              f"{pct(r['texture_fraction'])} of the conflicts; same-category {pct(r['same_category_accuracy'])}; "
              f"val top-1 {pct(r['val_top1'])})")
    print(f"results: {os.path.join(folder, 'shape_bias.json')}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    opt, parser = parse(argv)
    try:
        prepared = prepare(opt)
        os.makedirs(opt.shape_bias_dir, exist_ok=True)
        save_options(opt, parser, opt.shape_bias_dir)
        summary = measure(opt, prepared)
    except (ProbeError, CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a read-only or full output folder: files already there stay whole (atomic writes)
        print(f"error: cannot write to {opt.shape_bias_dir}: {e}", file=sys.stderr)
        return 1
    print_summary(summary, opt.shape_bias_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
