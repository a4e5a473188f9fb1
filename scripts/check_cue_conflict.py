"""The download step's check of the cue-conflict set, and the human shape bias from its trials.

    python scripts/check_cue_conflict.py STIMULI_DIR RAW_DATA_DIR OUT_JSON

STIMULI_DIR must be the whole published set (evaluation.shape_bias.read_stimuli, 1,280 files, 80
of them same-category); RAW_DATA_DIR holds rgeirhos/texture-vs-shape's
raw-data/style-transfer-512-nomask-experiment/*_subject-*.csv. OUT_JSON gets the human
observers' figures (evaluation.shape_bias.human_shape_bias: shape_bias, shape_fraction, ...,
subjects, trials), which test_shape_bias.py and the report draw as the human reference.
Run by scripts/download_cue_conflict.sh; one-line error and exit status 2 on a bad input.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from evaluation.shape_bias import (PUBLISHED_NUM_STIMULI, ShapeBiasError, human_shape_bias,  # noqa: E402
                                   read_stimuli)
from util.fileio import atomic_write_text  # noqa: E402

PUBLISHED_NUM_SAME = 80


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stimuli", help="style-transfer-preprocessed-512 folder")
    parser.add_argument("raw_data", help="raw-data/style-transfer-512-nomask-experiment folder")
    parser.add_argument("out", help="the human figures' JSON file to write")
    args = parser.parse_args(argv)
    try:
        stimuli = read_stimuli(args.stimuli)
        same = sum(s.shape == s.texture for s in stimuli)
        if (len(stimuli), same) != (PUBLISHED_NUM_STIMULI, PUBLISHED_NUM_SAME):
            raise ShapeBiasError(f"{args.stimuli}: {len(stimuli)} stimuli, {same} same-category; the published set "
                                 f"has {PUBLISHED_NUM_STIMULI}, {PUBLISHED_NUM_SAME}")
        human = human_shape_bias(args.raw_data)
    except (ShapeBiasError, OSError, KeyError, UnicodeDecodeError) as e:
        print(f"check_cue_conflict.py: error: {type(e).__name__ + ': ' if isinstance(e, KeyError) else ''}{e}",
              file=sys.stderr)
        return 2
    atomic_write_text(args.out, json.dumps(human, indent=2) + "\n")
    print(f"{len(stimuli)} stimuli; human shape bias {100 * human['shape_bias']:.1f}% over {human['trials']} trials "
          f"of {len(human['subjects'])} observers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
