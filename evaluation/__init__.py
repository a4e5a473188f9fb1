"""Evaluation protocols: the metrics of test.py (intrinsic.py), PSNR against the number of hints
(sweep.py), the linear probes' engine (probes.py), their feature cache (feature_cache.py), records
(probe_results.py) and toy data (layout_dataset.py), the comparison report of several models (report.py)."""
