"""Evaluation protocols: the metrics of test.py (intrinsic.py) and PSNR against the number of hints (sweep.py)."""
