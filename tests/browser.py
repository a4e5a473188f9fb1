"""Open a generated HTML page in headless Chromium and report broken images and console errors.

Needs Debian's chromium (``apt-get install chromium``; .ci/run installs it) and the Python package
playwright (requirements-dev.txt), which drives the system browser: no browser download.
Tests call :func:`check_page`; without Chromium they are skipped with the reason.
"""
import contextlib
import os
import pathlib
import shutil

import pytest

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
# Flags for a root user in a sandbox with no network (see the env notes): no background traffic.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def open_page(path, viewport=None, url=None):
    """A headless Chromium page showing ``path`` (a local HTML file), or ``url`` when given (a
    page served over HTTP), loaded; yields (page, errors).

    viewport: {"width": px, "height": px}, or None for playwright's default. errors: console
    messages of type 'error' and uncaught page errors. Skips the calling test if no browser.
    """
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport=viewport)
            errors = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url or pathlib.Path(path).resolve().as_uri(), wait_until="load")
            yield page, errors
        finally:
            browser.close()


def loaded_images(page):
    """[(src, naturalWidth)] for every <img> of a loaded page (0 for one that did not load)."""
    images = page.evaluate(
        "Array.from(document.images).map(i => [i.getAttribute('src'), i.complete ? i.naturalWidth : 0])")
    return [tuple(i) for i in images]


def check_page(path):
    """Load ``path`` (a local HTML file) and return (images, errors): see loaded_images and open_page."""
    with open_page(path) as (page, errors):
        return loaded_images(page), errors


def page_width(path, width, height):
    """Open ``path`` in a width x height window; return (document width, window width, images) in
    CSS px: document.scrollingElement.scrollWidth, window.innerWidth and loaded_images."""
    with open_page(path, viewport={"width": width, "height": height}) as (page, _errors):
        scroll, inner = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
        return scroll, inner, loaded_images(page)


def assert_page_ok(path, min_images=1):
    """Every <img> of the page loaded (naturalWidth > 0), at least ``min_images`` of them, no console errors."""
    images, errors = check_page(path)
    assert len(images) >= min_images, images
    broken = [src for src, width in images if width <= 0]
    assert not broken, f"images that did not load: {broken[:5]}"
    assert not errors, errors
