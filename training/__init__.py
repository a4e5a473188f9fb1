"""The training loop of train.py (loop.py), its resume points (resume.py) and its logs and
training page (visualizer.py)."""
