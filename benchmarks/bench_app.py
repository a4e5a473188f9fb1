"""Click-to-result latency of the interactive editor (app.py): median and 95th percentile over
--edits edits, at each network size of --sizes, in fp32 and with the speed flags (--amp
--channels_last), and for the quick preview renders at --preview_size.

Each configuration runs the real server (webapp.server, uvicorn in a thread, port 0) over a
random-init generator (speed does not depend on the weights) and one --image_size photo-like
image. An edit moves one of three hint points and POSTs /api/colorize, timed from the request to
the last byte of the PNG: everything but the browser's decode and paint (a few ms for these
images). Beside the total it prints where the time goes, from the same requests: the generator
alone (``forward_ms``, the X-Forward-Ms header), the server's whole model call with the Lab
conversions and the PNG encoding (``server_ms``, X-Compute-Ms) and the rest (HTTP, JSON,
threads: ``http_ms`` = total - server). One JSON line per configuration; figures only.
"""
from __future__ import annotations

import json
import random
import os
import statistics
import sys
import threading
import time
import urllib.request
from typing import List, Optional, Sequence

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import benchmark_parser, device_info, emit, significant  # noqa: E402
from inference.colorize import Colorizer  # noqa: E402
from models.networks import define_G  # noqa: E402
from webapp.server import Editor, Limits, bind, create_app, make_server, png_bytes  # noqa: E402

CONFIGS = {"fp32": {}, "amp_cl": {"amp": True, "channels_last": True}}


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth random colour image (the latency does not depend on its content)."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, size=(max(2, height // 16), max(2, width // 16), 3)).astype(np.uint8)
    return Image.fromarray(small).resize((width, height), Image.BILINEAR)


def post(url: str, path: str, body: bytes, content_type: str):
    request = urllib.request.Request(url.rstrip("/") + path, data=body, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=600) as response:
        return response.headers, response.read()


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between the nearest ranks."""
    return float(np.percentile(np.asarray(values), q))


def edit_hints(rng: random.Random, width: int, height: int, step: int) -> List[dict]:
    """Three hint points, one of them moved to a random place: one edit of a user."""
    points = [(width // 4, height // 4), (width // 2, height // 2), (3 * width // 4, 3 * height // 4)]
    points[step % 3] = (rng.randrange(width), rng.randrange(height))
    colors = ("#c03020", "#20a040", "#3050d0")
    return [{"x": x, "y": y, "color": c, "size": 3} for (x, y), c in zip(points, colors)]


def measure(url: str, image_id: str, image: Image.Image, edits: int, warmup: int, preview: bool) -> dict:
    """Latency figures (ms) of ``edits`` edits after ``warmup`` untimed ones."""
    rng = random.Random(0)
    totals, servers, forwards, network = [], [], [], ""
    for step in range(warmup + edits):
        body = json.dumps({"id": image_id, "hints": edit_hints(rng, image.width, image.height, step),
                           "preview": preview}).encode()
        start = time.perf_counter()
        headers, _ = post(url, "/api/colorize", body, "application/json")
        total = 1000 * (time.perf_counter() - start)
        if step >= warmup:
            totals.append(total)
            servers.append(float(headers["X-Compute-Ms"]))
            forwards.append(float(headers["X-Forward-Ms"]))
            network = headers["X-Network"]
    return {"network": network, "median_ms": significant(statistics.median(totals)),
            "p95_ms": significant(percentile(totals, 95)), "forward_ms": significant(statistics.median(forwards)),
            "server_ms": significant(statistics.median(servers)),
            "http_ms": significant(statistics.median(t - s for t, s in zip(totals, servers)))}


def run_config(device: torch.device, size: int, config: str, preview_size: int, args) -> dict:
    """One server at network size ``size`` with the flags of ``config``; its figures."""
    torch.manual_seed(0)
    net = define_G().to(device).eval()
    colorizer = Colorizer.create(net, device, load_size=size, **CONFIGS[config])
    editor = Editor(colorizer, None, Limits(preview_size=preview_size))
    if args.threads:  # torch's thread count is per thread: set it in the server's worker threads too
        run_model = editor.run_model
        editor.run_model = lambda *a, **k: (torch.set_num_threads(args.threads), run_model(*a, **k))[1]
    sock, url = bind("127.0.0.1", 0)
    server = make_server(create_app(editor))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        image = photo(*args.image_size)
        _, body = post(url, "/api/images", png_bytes(image), "image/png")
        image_id = json.loads(body)["id"]
        record = {"size": size, "config": config, "mode": "preview" if preview_size else "full",
                  **measure(url, image_id, image, args.edits, args.warmup, bool(preview_size))}
    finally:
        server.should_exit = True
        thread.join(30)
    return record


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[176, 256], help="network sizes (--load_size)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS),
                        help="fp32: no flags; amp_cl: --amp --channels_last")
    parser.add_argument("--preview_size", type=int, default=128,
                        help="also time the preview renders at this network size (0: not)")
    parser.add_argument("--edits", type=int, default=50, help="timed edits per configuration")
    parser.add_argument("--warmup", type=int, default=3, help="untimed edits first")
    parser.add_argument("--image_size", type=int, nargs=2, default=[256, 256], metavar=("W", "H"),
                        help="the edited image (px)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if min(args.sizes) < 8 or args.edits < 1 or args.warmup < 0 or args.preview_size < 0:
        parser.error("--sizes must be >= 8, --edits >= 1, --warmup and --preview_size >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    info = device_info(args.device)
    jobs = [(size, config, 0) for size in args.sizes for config in args.configs]
    jobs += [(max(args.sizes), config, args.preview_size) for config in args.configs if args.preview_size]
    for size, config, preview in jobs:
        emit({**run_config(args.device, size, config, preview, args), **info})
    return 0


if __name__ == "__main__":
    sys.exit(main())
