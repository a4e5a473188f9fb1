"""The interactive editor's server: a FastAPI app over inference.colorize.Colorizer (docs/app.md).

The page (webapp/static/) and a small JSON API:

* ``POST /api/images``: the image file as the body or as multipart field ``file`` ->
  ``{"id", "width", "height", "color"}`` (``color``: whether the input had colours)
* ``GET /api/folder`` -> ``{"images": [path, ...]}``, the images of ``--images`` (relative paths);
  ``POST /api/folder/open`` ``{"path"}`` -> as ``POST /api/images``
* ``GET /api/images/{id}/original.png`` and ``.../gray.png`` (the input's lightness alone)
* ``POST /api/colorize`` ``{"id", "hints"[, "preview"]}`` -> the PNG at the input's size, byte for
  byte what ``colorize.py -i IMAGE --hints_json HINTS.json -o out.png`` writes; ``preview``: at
  the smaller ``--preview_size`` (a different image, for quick feedback while editing)
* ``POST /api/suggest`` ``{"id", "x", "y", "hints", "k"}`` -> ``{"colors": ["#rrggbb", ...], "L"}``
* ``GET /api/health`` -> 200, ``GET /api/config`` -> the settings the page needs

Errors are 4xx with a one-line ``{"error": "..."}``. The model runs one call at a time (a lock);
uploads are bounded in bytes (Content-Length) and pixels (PIL's decompression-bomb limit, then the
memory budget); the decoded images live in a bounded cache that drops the least recently used.
"""
from __future__ import annotations

import io
import json
import os
import secrets
import socket
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from data.datasets import UnreadableImageError, find_images, load_rgb
from inference.colorize import BudgetError, Colorizer, HintError, hints_from_json, pil_to_tensor, tensor_to_pil
from util.color import lab_norm2rgb, rgb2lab_norm

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
#: Largest JSON request body (bytes): a few thousand hints.
MAX_JSON_BYTES = 1 << 20


@dataclass(frozen=True)
class Limits:
    """What one server accepts. Sizes in bytes; preview_size in px (0: no preview renders)."""

    max_upload_bytes: int = 32 << 20
    cache_bytes: int = 512 << 20
    max_hints: int = 256
    max_k: int = 32
    preview_size: int = 128


def one_line(text: str) -> str:
    """The first line of ``text`` (an error message of the API is one line)."""
    lines = str(text).strip().splitlines()
    return lines[0] if lines else "error"


class ApiError(Exception):
    """A request the API refuses: HTTP ``status`` with a one-line ``{"error": message}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, one_line(message)


@dataclass
class Entry:
    image: Image.Image  #: 8-bit RGB, as data.datasets.load_rgb returns it
    has_color: bool

    @property
    def nbytes(self) -> int:
        return 3 * self.image.width * self.image.height


class ImageCache:
    """Decoded images by id, at most ``max_bytes`` of pixels (the newest is always kept), evicting
    the least recently used; thread-safe."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._entries: "OrderedDict[str, Entry]" = OrderedDict()
        self._lock = threading.Lock()

    def add(self, entry: Entry) -> str:
        key = secrets.token_hex(8)
        with self._lock:
            self._entries[key] = entry
            total = sum(e.nbytes for e in self._entries.values())
            while total > self.max_bytes and len(self._entries) > 1:
                _, dropped = self._entries.popitem(last=False)
                total -= dropped.nbytes
        return key

    def get(self, key) -> Entry:
        with self._lock:
            if not isinstance(key, str) or key not in self._entries:
                raise ApiError(404, f"unknown image id {key!r} (upload it again: the cache keeps the latest images)")
            self._entries.move_to_end(key)
            return self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


def lightness_image(image: Image.Image) -> Image.Image:
    """The image's CIE lightness alone (a = b = 0), as the network sees it: the gray input."""
    lab = rgb2lab_norm(pil_to_tensor(image))
    lab[:, 1:] = 0
    return tensor_to_pil(lab_norm2rgb(lab).clamp(0.0, 1.0))


def has_color(image: Image.Image) -> bool:
    """Whether any pixel of an RGB image is not gray (R, G, B not all equal)."""
    array = np.asarray(image)
    return bool((array[..., 0] != array[..., 1]).any() or (array[..., 1] != array[..., 2]).any())


def png_bytes(image: Image.Image) -> bytes:
    """PNG encoding with PIL's defaults, as util.image.save_pil_atomic writes a .png file."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 411/413 when it has no Content-Length or exceeds ``limit``
    bytes (uvicorn never delivers more than the declared length)."""
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise ApiError(411, "the request needs a Content-Length header")
    if int(length) > limit:
        raise ApiError(413, f"request body of {int(length)} bytes is over the limit of {limit} bytes")
    return await request.body()


async def read_json(request: Request) -> dict:
    """The JSON object of a request body; 400 for anything else."""
    body = await read_body(request, MAX_JSON_BYTES)
    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ApiError(400, f"malformed JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ApiError(400, f"expected a JSON object, got {type(obj).__name__}")
    return obj


def int_field(obj: dict, name: str, default: Optional[int] = None) -> int:
    value = obj.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"{name!r} must be an integer, got {value!r}")
    return value


class Editor:
    """The server's state: the Colorizer (one call at a time), the image cache, the folder."""

    def __init__(self, colorizer: Colorizer, images_dir: Optional[str] = None, limits: Limits = Limits()):
        self.colorizer, self.limits = colorizer, limits
        self.images_dir = os.path.realpath(images_dir) if images_dir else None
        self.cache = ImageCache(limits.cache_bytes)
        self.model_lock = threading.RLock()  # colorize() holds it around run_model to read the forward time

    def folder_images(self) -> List[str]:
        """Relative paths of the images under --images (none without it), links leading out left out."""
        if self.images_dir is None:
            return []
        paths = (os.path.realpath(p) for p in find_images(self.images_dir))
        return [os.path.relpath(p, self.images_dir) for p in paths
                if os.path.commonpath([p, self.images_dir]) == self.images_dir]

    def add(self, image: Image.Image) -> dict:
        """Cache a decoded image after checking that it fits the memory budget (413 otherwise)."""
        try:
            self.colorizer.check(image.height, image.width)
            if self.limits.preview_size:
                self.colorizer.check(image.height, image.width, self.limits.preview_size)
        except BudgetError as e:
            raise ApiError(413, str(e)) from None
        key = self.cache.add(Entry(image, has_color(image)))
        return {"id": key, "width": image.width, "height": image.height, "color": self.cache.get(key).has_color}

    def open_upload(self, data: bytes) -> dict:
        """Decode uploaded bytes exactly as colorize.py reads a file (data.datasets.load_rgb)."""
        with tempfile.TemporaryDirectory(prefix="colorize-app-") as folder:
            path = os.path.join(folder, "upload")
            with open(path, "wb") as f:
                f.write(data)
            try:
                image = load_rgb(path)
            except UnreadableImageError as e:
                raise ApiError(400, f"not a readable image: {e.reason}") from None
        return self.add(image)

    def open_folder_image(self, relative) -> dict:
        if not isinstance(relative, str) or relative not in self.folder_images():
            raise ApiError(404, f"{relative!r} is not one of the images of --images")
        path = os.path.join(self.images_dir, relative)
        try:
            return self.add(load_rgb(path))
        except UnreadableImageError as e:
            raise ApiError(400, f"{relative}: not a readable image: {e.reason}") from None

    def hints(self, obj: dict) -> list:
        raw = obj.get("hints", [])
        if isinstance(raw, list) and len(raw) > self.limits.max_hints:
            raise ApiError(400, f"{len(raw)} hints, over the limit of {self.limits.max_hints}")
        try:
            return hints_from_json(raw, "hints")
        except HintError as e:
            raise ApiError(400, str(e)) from None

    def load_size(self, obj: dict) -> Optional[int]:
        """None (the run's --load_size), or --preview_size for {"preview": true} when it is set."""
        preview = obj.get("preview", False)
        if not isinstance(preview, bool):
            raise ApiError(400, f"'preview' must be true or false, got {preview!r}")
        return self.limits.preview_size if preview and self.limits.preview_size else None

    def run_model(self, fn, *args, **kwargs):
        """fn(*args, **kwargs) under the model lock; HintError -> 400, BudgetError -> 413."""
        try:
            with self.model_lock:
                return fn(*args, **kwargs)
        except HintError as e:
            raise ApiError(400, str(e)) from None
        except BudgetError as e:
            raise ApiError(413, str(e)) from None

    def colorize(self, obj: dict) -> Tuple[bytes, dict]:
        """The PNG of /api/colorize and headers: X-Network (WxH), X-Compute-Ms (the whole model
        call with its colour conversions, and the PNG encoding) and X-Forward-Ms (the generator alone)."""
        entry, hints, load_size = self.cache.get(obj.get("id")), self.hints(obj), self.load_size(obj)
        start = time.perf_counter()
        with self.model_lock:
            result = self.run_model(self.colorizer.colorize_image, entry.image, hints, load_size)
            forward_ms = self.colorizer.last_forward_ms
        data = png_bytes(result)
        net_h, net_w = self.colorizer.network_size(entry.image.height, entry.image.width, load_size)
        return data, {"X-Network": f"{net_w}x{net_h}", "X-Forward-Ms": f"{forward_ms:.1f}",
                      "X-Compute-Ms": f"{1000 * (time.perf_counter() - start):.1f}"}

    def suggest(self, obj: dict) -> dict:
        entry, hints = self.cache.get(obj.get("id")), self.hints(obj)
        x, y, k = int_field(obj, "x"), int_field(obj, "y"), int_field(obj, "k", 8)
        if not 1 <= k <= self.limits.max_k:
            raise ApiError(400, f"'k' must be 1..{self.limits.max_k}, got {k}")
        colors, lightness = self.run_model(self.colorizer.suggest, entry.image, x, y, hints, k, self.load_size(obj))
        return {"colors": ["#%02x%02x%02x" % c for c in colors], "L": round(lightness, 3)}


def create_app(editor: Editor) -> FastAPI:
    """The FastAPI app of ``editor``: the API routes, then the static page at /."""
    app = FastAPI(title="Interactive colorization", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.editor = editor

    @app.exception_handler(ApiError)
    async def api_error(_request, e: ApiError):
        return JSONResponse({"error": e.message}, status_code=e.status)

    @app.exception_handler(HTTPException)
    async def http_error(_request, e: HTTPException):
        return JSONResponse({"error": one_line(str(e.detail))}, status_code=e.status_code)

    @app.get("/api/health")
    async def health():
        return {"ok": True}

    @app.get("/api/config")
    async def config():
        c = editor.colorizer
        return {"load_size": c.load_size, "max_side": c.max_side, "preview_size": editor.limits.preview_size,
                "max_hints": editor.limits.max_hints, "folder": editor.images_dir is not None,
                "max_upload_bytes": editor.limits.max_upload_bytes}

    @app.get("/api/folder")
    async def folder():
        return {"images": await run_in_threadpool(editor.folder_images)}

    @app.post("/api/folder/open")
    async def folder_open(request: Request):
        obj = await read_json(request)
        return await run_in_threadpool(editor.open_folder_image, obj.get("path"))

    @app.post("/api/images")
    async def upload(request: Request):
        data = await read_body(request, editor.limits.max_upload_bytes)
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            data = await form_file(request, editor.limits.max_upload_bytes)
        return await run_in_threadpool(editor.open_upload, data)

    @app.get("/api/images/{key}/{kind}.png")
    async def image_file(key: str, kind: str):
        if kind not in ("original", "gray"):
            raise ApiError(404, f"no such image kind {kind!r} (original or gray)")
        image = editor.cache.get(key).image
        data = await run_in_threadpool(png_bytes, image if kind == "original" else lightness_image(image))
        return Response(data, media_type="image/png")

    @app.post("/api/colorize")
    async def colorize(request: Request):
        data, headers = await run_in_threadpool(editor.colorize, await read_json(request))
        return Response(data, media_type="image/png", headers=headers)

    @app.post("/api/suggest")
    async def suggest(request: Request):
        return await run_in_threadpool(editor.suggest, await read_json(request))

    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="static")
    return app


async def form_file(request: Request, limit: int) -> bytes:
    """The bytes of multipart field ``file`` (400 if there is none)."""
    try:
        form = await request.form(max_files=1, max_fields=8, max_part_size=limit)
    except HTTPException as e:
        raise ApiError(400, f"malformed multipart body ({e.detail})") from None
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise ApiError(400, "multipart body without a file field named 'file'")
    return await upload.read()


def bind(host: str = "127.0.0.1", port: int = 0) -> Tuple[socket.socket, str]:
    """A socket listening address bound now (port 0: a free port) and the URL it serves; OSError
    if the address is unusable or taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    bound = sock.getsockname()[1]
    return sock, f"http://{'[' + host + ']' if family == socket.AF_INET6 else host}:{bound}/"


def make_server(app: FastAPI) -> uvicorn.Server:
    """A uvicorn server for ``app``: run it with ``server.run(sockets=[sock])`` (a socket of
    :func:`bind`); ``server.should_exit = True`` stops it."""
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=1))
