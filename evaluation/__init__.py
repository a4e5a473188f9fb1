"""Evaluation protocols: PSNR against the number of hints (sweep.py)."""
