"""Colour conversion, hint sampling, checkpoints, logging and HTML helpers."""
