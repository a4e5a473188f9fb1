"""The interactive colorization editor: a local web app (app.py, docs/app.md)."""
