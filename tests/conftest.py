"""Shared test setup: make the repository importable however pytest is started."""
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """The sample dataset cut from scikit-image's photos at 40 px: train/ (12 images in 6 classes),
    train_small/ and val/ (4 images); read-only for the tests that share it."""
    from scripts import make_sample_dataset

    root = tmp_path_factory.mktemp("tiny_data")
    make_sample_dataset.main(["--out_path", str(root), "--size", "40", "--per_image", "2", "--val_per_image", "2"])
    return root
