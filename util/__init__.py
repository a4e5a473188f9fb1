"""The ground floor: colour, hints, atomic file writing, weight files, metrics, images, HTML,
run-time plumbing, distributed helpers and speed flags. Imports nothing else of the project."""
