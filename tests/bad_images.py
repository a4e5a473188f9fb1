"""A corpus of awkward and broken image files, generated at test time (no binary files in git).

:func:`make_corpus` writes one file per case into a folder and returns, per file name, what every
script must do with it (:class:`Expect`): ``ok`` files are converted by ``data.datasets.load_rgb``
to RGB of a known size and content, ``skip`` files are unreadable and skipped with one warning.
Among the ``ok`` files, ``colour=False`` ones have no colour (gray, or a single flat colour):
training reads them and its grayscale filter drops them ("grayscale" in its counts, not
"unreadable"); evaluation evaluates them.

The whole corpus is about 60 KB on disk and costs well under a second to write: the two
decompression bombs (more than PIL.Image.MAX_IMAGE_PIXELS pixels) are 1-bit PNGs of zeros written
chunk by chunk with zlib, so neither this module nor the scripts ever hold their pixels.
"""
from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import numpy as np
from PIL import Image

#: A marker of pure green drawn at the stored top-left of the EXIF-rotated JPEG.
MARKER = 8


@dataclass(frozen=True)
class Expect:
    """What load_rgb (and so every script) must make of one corpus file.

    status: "ok" (converted) or "skip" (unreadable: one warning, counted as skipped).
    size: (W, H) of the converted RGB image, as displayed (EXIF orientation applied).
    colour: the converted image has colour everywhere, so it passes training's grayscale filter
        (ab range >= 5) in any training crop; False for gray and flat images, which training drops.
    check: asserts on load_rgb's pixels (H x W x 3 uint8).
    what: the case, in words.
    """

    status: str
    what: str
    size: Optional[Tuple[int, int]] = None
    colour: bool = False
    check: Optional[Callable[[np.ndarray], None]] = None


def gradient(width: int, height: int) -> np.ndarray:
    """H x W x 3 uint8: red rises left to right, green top to bottom, blue falls with red.

    Every crop of at least an eighth of a side spans tens of levels of red or green, so any
    training crop of it is colourful (far above the grayscale filter's ab range of 5)."""
    red = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    green = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    return np.stack([red, green, 255 - red / 2], axis=-1).round().astype(np.uint8)


def _jpeg_bytes(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, **params)
    return buffer.getvalue()


def write_blank_png(path: str, width: int, height: int, rows_per_chunk: int = 256) -> None:
    """A 1-bit grayscale PNG of zeros of any size, streamed: memory is one chunk of rows."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte 0, then the packed bits
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row * min(rows_per_chunk, height - y)) for y in range(0, height, rows_per_chunk)]
    data = b"".join(parts) + compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, grayscale
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def _close(a: np.ndarray, b: np.ndarray, tolerance: float, what: str) -> None:
    error = np.abs(a.astype(np.float64) - b.astype(np.float64)).mean()
    assert error <= tolerance, f"{what}: mean abs error {error:.2f} > {tolerance}"


def _gray(rgb: np.ndarray) -> None:
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all(), "not gray"


def make_corpus(folder: str, size: int = 48) -> Dict[str, Expect]:
    """Write the corpus into ``folder`` (created) and return {file name: Expect}.

    size: side of the ordinary images (px, >= 24). ``small.png`` is size/2 - 4 x size/4 (20 x 12
    at 48: smaller than a 32 px training crop and a 40 px resize), ``one_pixel.png`` is 1 x 1.
    """
    os.makedirs(folder, exist_ok=True)
    path = lambda name: os.path.join(folder, name)  # noqa: E731
    corpus: Dict[str, Expect] = {}
    photo = gradient(size, size)

    Image.fromarray(photo).save(path("photo.png"))
    corpus["photo.png"] = Expect("ok", "an ordinary RGB PNG", (size, size), True,
                                 lambda rgb: _close(rgb, photo, 0, "photo"))

    # Unreadable files.
    whole = _jpeg_bytes(Image.fromarray(photo))
    with open(path("truncated.jpg"), "wb") as f:
        f.write(whole[: len(whole) // 2])
    corpus["truncated.jpg"] = Expect("skip", "a valid JPEG cut in half")
    open(path("empty.jpg"), "wb").close()
    corpus["empty.jpg"] = Expect("skip", "a zero-byte .jpg")
    with open(path("text.jpg"), "w") as f:
        f.write("this is a text file, not a JPEG\n")
    corpus["text.jpg"] = Expect("skip", "a text file named .jpg")
    side = int(Image.MAX_IMAGE_PIXELS ** 0.5) + 100  # just above the limit: PIL only warns here
    write_blank_png(path("bomb.png"), side, side)
    corpus["bomb.png"] = Expect("skip", f"a {side} x {side} PNG: more than MAX_IMAGE_PIXELS (PIL warns)")
    side = int((2 * Image.MAX_IMAGE_PIXELS) ** 0.5) + 100  # above twice the limit: PIL raises
    write_blank_png(path("bomb_huge.png"), side, side)
    corpus["bomb_huge.png"] = Expect("skip", f"a {side} x {side} PNG: more than twice MAX_IMAGE_PIXELS (PIL raises)")

    # Converted files.
    Image.fromarray(photo).convert("CMYK").save(path("cmyk.jpg"), quality=95)
    corpus["cmyk.jpg"] = Expect("ok", "a CMYK JPEG", (size, size), True,
                                lambda rgb: _close(rgb, photo, 4, "CMYK -> RGB"))

    ramp = np.linspace(0, 65535, size).round().astype(np.uint16)[None, :].repeat(size // 2, 0)
    deep = Image.fromarray(ramp)
    assert deep.mode == "I;16"
    deep.save(path("gray16.png"))

    def check_deep(rgb):
        _gray(rgb)
        assert (rgb[..., 0] == (ramp >> 8)).all(), "16-bit values not scaled by 1/256"  # 65535 -> 255, 32768 -> 128

    corpus["gray16.png"] = Expect("ok", "a 16-bit grayscale PNG (I;16)", (size, size // 2), False, check_deep)

    palette = np.random.default_rng(0).integers(0, 256, (16, 3)).astype(np.uint8)
    palette[1] = (200, 40, 20)
    alpha = np.full(16, 255, np.uint8)
    alpha[0], alpha[1] = 0, 128  # index 0 transparent, index 1 half transparent
    yy, xx = np.mgrid[:size, :size]
    indices = ((xx // 3 + 5 * (yy // 3)) % 16).astype(np.uint8)
    pal_image = Image.fromarray(indices, "P")
    pal_image.putpalette(palette.flatten().tolist())
    pal_image.save(path("palette_alpha.png"), transparency=alpha.tobytes())  # tRNS as bytes: PIL's UserWarning case

    def check_palette(rgb):
        opaque = alpha[indices] == 255
        assert (rgb[opaque] == palette[indices][opaque]).all(), "opaque palette colours changed"
        assert (rgb[indices == 0] == 255).all(), "transparent pixels not composited on white"
        half = palette[1] * (128 / 255) + 255 * (127 / 255)
        assert np.abs(rgb[indices == 1].astype(float) - half).max() <= 1, "half-transparent pixels not composited"

    corpus["palette_alpha.png"] = Expect("ok", "a palette PNG with transparent and half-transparent entries",
                                         (size, size), True, check_palette)

    lum = gradient(size, size)[..., 0]
    la_alpha = np.where(yy < size // 2, 255, 64).astype(np.uint8)
    Image.fromarray(np.stack([lum, la_alpha], axis=-1), "LA").save(path("la.png"))

    def check_la(rgb):
        _gray(rgb)
        expected = lum * (la_alpha / 255) + 255 * (1 - la_alpha / 255)
        assert np.abs(rgb[..., 0] - expected).max() <= 1, "LA not composited on white"

    corpus["la.png"] = Expect("ok", "a gray + alpha PNG (LA)", (size, size), False, check_la)

    Image.new("RGB", (1, 1), (200, 30, 40)).save(path("one_pixel.png"))
    corpus["one_pixel.png"] = Expect("ok", "a 1 x 1 image (one flat colour: training's filter drops it)", (1, 1),
                                     False, lambda rgb: _close(rgb, np.array([[[200, 30, 40]]]), 0, "1 x 1"))

    small = gradient(size // 2 - 4, size // 4)
    Image.fromarray(small).save(path("small.png"))
    corpus["small.png"] = Expect("ok", "an image smaller than the crop and the resize", small.shape[1::-1], True,
                                 lambda rgb: _close(rgb, small, 0, "small"))

    stored = gradient(size, size * 2 // 3)
    stored[:MARKER, :MARKER] = (0, 255, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    Image.fromarray(stored).save(path("exif_rotated.jpg"), quality=95, exif=exif.tobytes())

    def check_exif(rgb):
        # Displayed upright the stored top-left marker is at the top-right, and the image is tall.
        shown = np.rot90(stored, k=-1)
        _close(rgb, shown, 4, "EXIF orientation 6")
        top_right = rgb[1:MARKER - 1, -MARKER + 1:-1].reshape(-1, 3).mean(0)
        assert top_right[1] > 200 and top_right[0] < 60, f"green marker not at the top-right: {top_right}"

    corpus["exif_rotated.jpg"] = Expect("ok", "a JPEG stored sideways with EXIF Orientation 6",
                                        (size * 2 // 3, size), True, check_exif)

    colours = np.array([(230, 30, 30), (30, 200, 40), (40, 60, 220), (240, 220, 30)], np.uint8)
    first = ((xx // 3 + yy // 3) % 4).astype(np.uint8)
    frames = []
    for frame_indices in (first, np.full_like(first, 1)):  # frame 2 all green: must not be what is read
        frame = Image.fromarray(frame_indices, "P")
        frame.putpalette(colours.flatten().tolist())
        frames.append(frame)
    frames[0].save(path("animated.gif"), save_all=True, append_images=frames[1:], duration=100, loop=0)
    corpus["animated.gif"] = Expect("ok", "an animated GIF (the first frame is used)", (size, size), True,
                                    lambda rgb: _close(rgb, colours[first], 0, "GIF frame 0"))

    Image.fromarray(lum).save(path("gray.jpg"), quality=95)
    corpus["gray.jpg"] = Expect("ok", "a grayscale JPEG", (size, size), False, _gray)
    return corpus


def names(corpus: Dict[str, Expect], status: str, colour: Optional[bool] = None):
    """Sorted names of the files with this status (and, for "ok", this colour flag)."""
    return sorted(n for n, e in corpus.items() if e.status == status and (colour is None or e.colour == colour))
