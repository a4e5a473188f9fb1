"""Minimal HTML result pages (dominate), as the original's util/html.py."""
from __future__ import annotations

import os
from typing import Sequence

import dominate
from dominate.tags import a, br, h3, img, meta, p, table, td, tr

from util.fileio import atomic_write_text


class HTML:
    """A page at <web_dir>/index.html whose images live in <web_dir>/images/.

    refresh: seconds between automatic reloads (0: none); the training page uses it so a browser
    follows the run.
    """

    def __init__(self, web_dir: str, title: str, refresh: int = 0):
        self.title = title
        self.web_dir = web_dir
        self.img_dir = os.path.join(web_dir, "images")
        os.makedirs(self.img_dir, exist_ok=True)
        self.doc = dominate.document(title=title)
        if refresh > 0:
            with self.doc.head:
                meta(http_equiv="refresh", content=str(refresh))

    def get_image_dir(self) -> str:
        return self.img_dir

    def add_header(self, text: str, anchor: str = None) -> None:
        with self.doc:
            h3(text, id=anchor) if anchor else h3(text)

    def add_text(self, text: str) -> None:
        with self.doc:
            p(text)

    def add_images(self, ims: Sequence[str], txts: Sequence[str], links: Sequence[str], width: int = 256) -> None:
        """One table row of images (paths relative to images/) with a caption and a link each.

        width: the images' width in CSS px where the window has room; in a narrower window they
        shrink alike (max-width 100% of their cell) so that the row fits without horizontal scrolling.
        """
        cells = [td(p(a(img(style=f"width:{width}px; max-width:100%", src=os.path.join("images", im)),
                        href=os.path.join("images", link)), br(), p(txt)),
                    style="word-wrap: break-word;", halign="center", valign="top")
                 for im, txt, link in zip(ims, txts, links)]
        # Fixed layout at a set width gives every column the same share, so the images shrink alike.
        row_px = len(cells) * (width + 12)  # + the cell's padding and borders
        self.doc.add(table(tr(*cells), border=1, style=f"table-layout: fixed; width: min(100%, {row_px}px);"))

    def save(self) -> str:
        """Write <web_dir>/index.html atomically (a reader never sees half a page); returns its path."""
        path = os.path.join(self.web_dir, "index.html")
        atomic_write_text(path, self.doc.render())
        return path
