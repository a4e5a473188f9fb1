r"""Colorize your own photos with a trained SIGGRAPH17 model, optionally with user colour hints.

    python colorize.py -i photo.jpg -o photo_color.png --name siggraph_retrained
    python colorize.py -i photo.jpg -o out.png --name siggraph_caffemodel --mask_cent 0
    python colorize.py -i photos/ -o colorized/ --checkpoint my_model.pth \
        --hint 120,40,#3060c0 --hint 200,310,#40a040,3 --hints_json more_hints.json

Inputs, outputs, hints, unreadable files and exit statuses: docs/colorize.md. The library that
does the work: inference/colorize.py.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from PIL import Image

from data.datasets import SkipLog, SkippedImage, UnreadableImageError, find_images, load_rgb
from inference.colorize import BudgetError, Colorizer, Hint, HintError, load_hints_json, parse_hint
from inference.model_flags import UsageError, add_model_flags, check_sizes, checkpoint_path, load_colorizer
from options import flags
from util.checkpoint import CheckpointError
from util.image import save_pil_atomic

#: JPEG quality when OUTPUT ends in .jpg/.jpeg.
JPEG_QUALITY = 95


def build_parser() -> argparse.ArgumentParser:
    summary, _, details = __doc__.partition("\n")
    parser = argparse.ArgumentParser(
        description=summary + " IMPORTANT: the official caffemodel weights need --mask_cent 0.",
        epilog="usage notes:" + details.replace("``", ""), formatter_class=flags.HelpFormatter)
    parser.add_argument("-i", "--input", required=True,
                        help="image file, or folder of images (searched recursively)")
    parser.add_argument("-o", "--output", required=True,
                        help="output image file (its extension picks the format) for a file INPUT; "
                             "output folder (mirrors INPUT's tree, .png files) for a folder INPUT")
    parser.add_argument("--hint", action="append", default=[], metavar="X,Y,#rrggbb[,SIZE]",
                        help="colour hint (repeatable): X = column, Y = row in input pixels (0-based), "
                             "SIZE = patch side in network pixels (default 1)")
    parser.add_argument("--hints_json", metavar="FILE",
                        help='JSON file of hints: [{"x": X, "y": Y, "color": "#rrggbb", "size": SIZE}, ...] '
                             'or {"hints": [...]}; applied before the --hint ones')
    add_model_flags(parser)
    return parser


def read_hints(opt: argparse.Namespace) -> List[Hint]:
    hints = load_hints_json(opt.hints_json) if opt.hints_json else []
    return hints + [parse_hint(text) for text in opt.hint]


def folder_jobs(input_dir: str, output_dir: str) -> List[Tuple[str, str]]:
    """(input, output) pairs mirroring input_dir into output_dir as .png files.

    Inputs already under output_dir (an output folder inside the input folder) are left out.
    Two inputs with the same stem in one folder (a.jpg, a.png) keep their full names (a.jpg.png).
    """
    output_abs = os.path.abspath(output_dir)
    inputs = [p for p in find_images(input_dir)
              if os.path.commonpath([os.path.abspath(p), output_abs]) != output_abs]
    stems: Dict[str, int] = {}
    for path in inputs:
        stem = os.path.splitext(os.path.relpath(path, input_dir))[0]
        stems[stem] = stems.get(stem, 0) + 1
    jobs = []
    for path in inputs:
        rel = os.path.relpath(path, input_dir)
        stem = os.path.splitext(rel)[0]
        jobs.append((path, os.path.join(output_dir, (rel if stems[stem] > 1 else stem) + ".png")))
    return jobs


def plan_jobs(opt: argparse.Namespace) -> Tuple[List[Tuple[str, str]], bool]:
    """The (input, output) pairs and whether INPUT is a folder; UsageError for wrong paths."""
    if os.path.isdir(opt.input):
        if os.path.exists(opt.output) and not os.path.isdir(opt.output):
            raise UsageError(f"{opt.output}: INPUT is a folder, so OUTPUT must be a folder, not a file")
        jobs = folder_jobs(opt.input, opt.output)
        if not jobs:
            raise UsageError(f"{opt.input}: no images found")
        return jobs, True
    if not os.path.exists(opt.input):
        raise UsageError(f"{opt.input}: no such file or folder")
    if os.path.isdir(opt.output):
        raise UsageError(f"{opt.output}: is a folder; for a single INPUT file give an output file name, "
                         f"e.g. {os.path.join(opt.output, os.path.splitext(os.path.basename(opt.input))[0] + '.png')}")
    extension = os.path.splitext(opt.output)[1].lower()
    if Image.registered_extensions().get(extension) not in Image.SAVE:
        raise UsageError(f"{opt.output}: cannot tell the image format from the extension "
                         f"{extension or '(none)'!r}; use e.g. .png or .jpg")
    if os.path.exists(opt.output) and os.path.samefile(opt.input, opt.output):
        raise UsageError(f"{opt.output}: would overwrite the input image")
    return [(opt.input, opt.output)], False


def colorize_file(colorizer: Colorizer, source: str, target: str, hints: Sequence[Hint]) -> str:
    """Colorize one file; returns a one-line summary. Raises UnreadableImageError, BudgetError,
    HintError, OSError."""
    image = load_rgb(source)
    result = colorizer.colorize_image(image, hints)
    extra = {"quality": JPEG_QUALITY} if target.lower().endswith((".jpg", ".jpeg")) else {}
    save_pil_atomic(result, target, **extra)  # atomic: an interrupted run leaves no half-written output
    net_h, net_w = colorizer.network_size(image.height, image.width)
    return f"{source} -> {target} ({image.width}x{image.height}, network {net_w}x{net_h})"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    opt = parser.parse_args(argv)
    try:
        check_sizes(opt)
        checkpoint_path(opt)
        hints = read_hints(opt)
        jobs, is_folder = plan_jobs(opt)
        colorizer = load_colorizer(opt)
    except (UsageError, HintError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    done = failed = 0
    skip_log = SkipLog()
    for source, target in jobs:
        try:
            print(colorize_file(colorizer, source, target, hints))
            done += 1
            continue
        except UnreadableImageError as e:
            if is_folder:
                skip_log.add([SkippedImage(e.path, e.reason)])
                continue
            problem, status = f"unreadable image {e}", 1
        except HintError as e:
            problem, status = f"{source}: {e}", 2
        except BudgetError as e:
            problem, status = f"{source}: {e}", 1
        except OSError as e:
            problem, status = f"{target}: cannot write ({e})", 1
        except torch.OutOfMemoryError:
            print(f"error: {source}: out of GPU memory; use a smaller --load_size", file=sys.stderr)
            return 1
        if not is_folder:
            print(f"error: {problem}", file=sys.stderr)
            return status
        print(f"warning: skipping {problem}", file=sys.stderr)
        failed += 1
    if is_folder:
        print(f"colorized {done} of {len(jobs)} image(s) into {opt.output}"
              + (f"; {failed} could not be colorized (see the warnings above)" if failed else ""))
        skip_log.report(opt.output)
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
