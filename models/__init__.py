"""The SIGGRAPH17 generator (networks.py) and the colorization model around it (pix2pix_model.py)."""
