"""The engines of the make_*_dataset.py scripts: idempotent symlink layouts (linktree.py), the
COCO one-class-per-image rule (coco.py) and AdaIN stylization of a folder (stylize.py)."""
