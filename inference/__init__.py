"""Colorizing a user's photo with a trained generator and user colour hints (colorize.py)."""
