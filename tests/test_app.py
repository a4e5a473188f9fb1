"""The interactive editor (app.py, webapp/): its JSON API over HTTP and its page in headless Chromium.

One uvicorn server for the module (a background thread, port 0) over a seeded generator whose
output layer is scaled up (as in test_colorize.py) so that hints visibly change the result; tiny
images, network size 32 (preview 16). The page flow is one browser session. With APP_SCREENSHOT
set to a path, the page test also writes its screenshot there.
"""
import base64
import io
import json
import os
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

import app
import colorize
from inference.colorize import Hint
from tests.bad_images import write_blank_png
from tests.browser import open_page
from tests.helpers import save_vivid_generator, smooth_rgb
from webapp.server import ApiError, png_bytes

SERVER_FLAGS = ["--gpu_ids", "-1", "--load_size", "32", "--preview_size", "16", "--port", "0",
                "--max_upload_mb", "0.25", "--max_hints", "20", "--max_memory_gb", "0.1"]



def png_of(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def weights(module_tmp):
    return save_vivid_generator(module_tmp / "net_G.pth")


@pytest.fixture(scope="module")
def folder(module_tmp):
    images = module_tmp / "images"
    (images / "sub").mkdir(parents=True)
    Image.fromarray(smooth_rgb(48, 64)).save(images / "photo.png")
    Image.fromarray(smooth_rgb(40, 32, seed=1)).save(images / "sub" / "other.jpg")
    secret = module_tmp / "secret.png"
    Image.fromarray(smooth_rgb(8, 8)).save(secret)
    (images / "link_out.png").symlink_to(secret)  # a link leading out of --images: never offered
    return images


@pytest.fixture(scope="module")
def server(weights, folder):
    """(base URL, the Editor) of a running server made by app.py's own parser and prepare()."""
    opt = app.build_parser().parse_args(["--checkpoint", str(weights), "--images", str(folder), *SERVER_FLAGS])
    uvicorn_server, sock, url = app.prepare(opt)
    thread = threading.Thread(target=uvicorn_server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uvicorn_server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield url, uvicorn_server.config.app.state.editor
    uvicorn_server.should_exit = True
    thread.join(10)


def request(url, path, body=None, content_type=None, method=None):
    """(status, headers, body bytes) of one HTTP request; a dict body is sent as JSON."""
    if isinstance(body, (dict, list)):
        body, content_type = json.dumps(body).encode(), "application/json"
    req = urllib.request.Request(url.rstrip("/") + path, data=body, method=method)
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def upload(url, data):
    status, _, body = request(url, "/api/images", data, "application/octet-stream")
    assert status == 200, body
    return json.loads(body)


def colorize_cli(weights, source, hints_file, out):
    """colorize.py with the server's model flags; returns the bytes it wrote."""
    assert colorize.main(["-i", str(source), "-o", str(out), "--hints_json", str(hints_file), "--checkpoint",
                          str(weights), "--gpu_ids", "-1", "--load_size", "32"]) == 0
    return out.read_bytes()


# --- the API ------------------------------------------------------------------------------------

def test_api_colorize_equals_colorize_py_and_suggests(server, weights, folder, tmp_path):
    url, _ = server
    assert request(url, "/api/health")[0] == 200
    info = upload(url, (folder / "photo.png").read_bytes())
    assert (info["width"], info["height"], info["color"]) == (64, 48, True)
    hints = [{"x": 5, "y": 7, "color": "#ff2000", "size": 3}, {"x": 60, "y": 40, "color": "#2040ff"}]
    status, headers, png = request(url, "/api/colorize", {"id": info["id"], "hints": hints})
    assert status == 200 and headers["X-Network"] == "40x32"  # 64 x 48 at --load_size 32
    (tmp_path / "hints.json").write_text(json.dumps(hints))
    assert png == colorize_cli(weights, folder / "photo.png", tmp_path / "hints.json", tmp_path / "out.png")
    status, headers, preview = request(url, "/api/colorize", {"id": info["id"], "hints": hints, "preview": True})
    assert status == 200 and headers["X-Network"] == "24x16" and preview != png
    assert Image.open(io.BytesIO(preview)).size == (64, 48)
    # multipart upload of the same file: same pixels, same result
    boundary = "xyzzy"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + (folder / "photo.png").read_bytes() + \
        f"\r\n--{boundary}--\r\n".encode()
    status, _, answer = request(url, "/api/images", body, f"multipart/form-data; boundary={boundary}")
    second = json.loads(answer)
    assert status == 200 and request(url, "/api/colorize", {"id": second["id"], "hints": hints})[2] == png
    status, _, answer = request(url, "/api/suggest", {"id": info["id"], "x": 10, "y": 20, "hints": hints, "k": 5})
    colors = json.loads(answer)["colors"]
    assert status == 200 and len(colors) == 5 and len(set(colors)) > 1
    assert all(len(c) == 7 and c[0] == "#" for c in colors)


def test_api_suggestions_are_the_most_probable_bins(server, folder):
    """The suggestions are the top-k bins of the class head at the point, most probable first:
    the first one is the argmax bin's colour at the pixel's lightness."""
    from inference.colorize import network_inputs, run_network, suggest_colors
    from util.color import decode_ind_ab, lab2rgb, rgb2lab
    _, editor = server
    image = Image.open(folder / "photo.png").convert("RGB")
    rgb = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float() / 255
    net = editor.colorizer.net
    colors, lightness = suggest_colors(net, rgb, 33, 20, [Hint(3, 3, (200, 30, 30), 2)], k=4, load_size=32)
    inputs = network_inputs(rgb, [Hint(3, 3, (200, 30, 30), 2)], 32, 0.5)
    logits, _ = run_network(net, inputs)
    cell = logits[0, :, 13 // 4, 20 // 4]  # (33, 20) -> network pixel (row 13, col 20) of 32 x 40
    ab = decode_ind_ab(cell.argmax().view(1, 1, 1, 1)) * 110
    expected = lab2rgb(torch.cat((torch.full((1, 1, 1, 1), lightness), ab), 1)).clamp(0, 1) * 255
    assert np.allclose(colors[0], expected.flatten().numpy(), atol=1.01)
    assert len(colors) == 4 and len(set(colors)) == 4
    assert abs(lightness - float(rgb2lab(rgb[:, :, 20:21, 33:34]).flatten()[0])) < 1e-3  # the pixel's own L


def test_api_bad_inputs_are_4xx_one_line_and_the_server_goes_on(server, folder, tmp_path):
    url, editor = server
    info = upload(url, (folder / "photo.png").read_bytes())
    write_blank_png(str(tmp_path / "bomb.png"), 13500, 13500)  # > 2 x PIL.Image.MAX_IMAGE_PIXELS
    truncated = (folder / "photo.png").read_bytes()[:300]
    too_many = [{"x": 1, "y": 1, "color": "#ff0000"}] * 21
    cases = [
        ("/api/images", b"this is not an image", 400, "not a readable image"),
        ("/api/images", truncated, 400, "not a readable image"),
        ("/api/images", (tmp_path / "bomb.png").read_bytes(), 400, "decompression bomb"),
        ("/api/images", os.urandom(300_000), 413, "over the limit"),
        ("/api/images", png_of(np.full((1000, 1000, 3), 90, np.uint8)), 413, "--max_memory_gb"),
        ("/api/colorize", b'{"id": "', 400, "malformed JSON"),
        ("/api/colorize", [1, 2], 400, "expected a JSON object"),
        ("/api/colorize", {"id": "nope", "hints": []}, 404, "unknown image id"),
        ("/api/colorize", {"id": info["id"], "hints": [{"x": 64, "y": 0, "color": "#ff0000"}]}, 400, "outside"),
        ("/api/colorize", {"id": info["id"], "hints": [{"x": 1, "y": 0, "color": "red"}]}, 400, "#rrggbb"),
        ("/api/colorize", {"id": info["id"], "hints": too_many}, 400, "over the limit of 20"),
        ("/api/colorize", {"id": info["id"], "hints": [], "preview": "yes"}, 400, "preview"),
        ("/api/suggest", {"id": info["id"], "x": 0, "y": 48, "hints": []}, 400, "outside"),
        ("/api/suggest", {"id": info["id"], "x": 0, "y": 0, "hints": [], "k": 0}, 400, "'k' must be"),
        ("/api/suggest", {"id": info["id"], "x": "1", "y": 0, "hints": []}, 400, "'x' must be an integer"),
        ("/api/folder/open", {"path": "../secret.png"}, 404, "not one of the images"),
        ("/api/folder/open", {"path": "link_out.png"}, 404, "not one of the images"),
        ("/api/folder/open", {"path": str(folder / "photo.png")}, 404, "not one of the images"),
    ]
    for path, body, status, message in cases:
        got, headers, answer = request(url, path, body, None if isinstance(body, (dict, list)) else "image/png")
        assert got == status, (path, message, answer)
        error = json.loads(answer)["error"]
        assert message in error and "\n" not in error and "Traceback" not in error, (message, error)
        assert request(url, "/api/health")[0] == 200
    boundary = "b0"
    got, _, answer = request(url, "/api/images", f"--{boundary}\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1"
                             f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}")
    assert got == 400 and "field named 'file'" in json.loads(answer)["error"]
    for path in ("/../secret.png", "/%2e%2e/secret.png", "/api/images/" + info["id"] + "/secret.png",
                 "/images/photo.png", "/photo.png"):
        got, _, answer = request(url, path)
        assert got == 404 and b"\x89PNG" not in answer, path
    status, _, answer = request(url, "/api/folder")
    assert json.loads(answer)["images"] == ["photo.png", os.path.join("sub", "other.jpg")]
    opened = json.loads(request(url, "/api/folder/open", {"path": "sub/other.jpg"})[2])
    assert (opened["width"], opened["height"]) == (32, 40)
    assert request(url, "/api/colorize", {"id": info["id"], "hints": []})[0] == 200  # still serving


def test_api_strips_run_bounded_and_cache_is_bounded(server):
    """3 x 2000 and 2000 x 3 images run at a network of 8 x 2048 (--max_side's default cap)."""
    url, editor = server
    for shape, network in (((3, 2000, 3), "2048x8"), ((2000, 3, 3), "8x2048")):
        info = upload(url, png_of(smooth_rgb(*shape[:2])))
        status, headers, png = request(url, "/api/colorize", {"id": info["id"], "hints": [
            {"x": info["width"] - 1, "y": info["height"] - 1, "color": "#00ff00"}]})
        assert status == 200 and headers["X-Network"] == network
        assert Image.open(io.BytesIO(png)).size == (shape[1], shape[0])
    # The cache keeps at most --cache_mb of pixels, the least recently used going first.
    cache = editor.cache
    limit, cache.max_bytes = cache.max_bytes, 3 * 64 * 48 * 2
    try:
        ids = [upload(url, png_of(smooth_rgb(48, 64, seed=s)))["id"] for s in range(4)]
        assert len(cache) == 2 and request(url, "/api/colorize", {"id": ids[0], "hints": []})[0] == 404
        assert request(url, "/api/colorize", {"id": ids[3], "hints": []})[0] == 200
    finally:
        cache.max_bytes = limit


def test_api_concurrent_requests_are_all_answered(server, folder):
    """50 requests from 8 threads (the model runs one at a time): each gets its own correct PNG.
    (Previews of a 16 x 16 image, a 16 x 16 network: the cheapest model calls.)"""
    url, editor = server
    info = upload(url, png_of(smooth_rgb(16, 16)))
    image = editor.cache.get(info["id"]).image
    hint_sets = [[{"x": 3 * i, "y": 2 * i, "color": "#%02x40c0" % (40 * i)}] for i in range(5)]
    expected = [png_bytes(editor.colorizer.colorize_image(image, [Hint(h["x"], h["y"], (40 * i, 0x40, 0xc0))], 16))
                for i, (h,) in enumerate(hint_sets)]
    assert len(set(expected)) == 5

    def one(n):
        status, _, png = request(url, "/api/colorize", {"id": info["id"], "hints": hint_sets[n % 5], "preview": True})
        return status, png == expected[n % 5]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(50)))
    assert answers == [(200, True)] * 50


def test_app_script_flags(weights, tmp_path, capsys):
    """app.py's own checks: one-line errors, and the limits its flags set."""
    base = ["--checkpoint", str(weights), "--gpu_ids", "-1"]
    for extra, message in ((["--images", str(tmp_path / "missing")], "not a folder"),
                           (["--preview_size", "-1"], "--preview_size must be >= 0"),
                           (["--max_side", "3"], "--max_side must be 0"),
                           (["--which_epoch", "3"], "only applies with --name"),
                           (["--port", "0", "--host", "256.0.0.1"], "cannot listen on 256.0.0.1")):
        assert app.main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    opt = app.build_parser().parse_args(base + ["--max_upload_mb", "2", "--cache_mb", "3", "--max_hints", "7",
                                                "--preview_size", "0"])
    limits = app.limits_of(opt)
    assert (limits.max_upload_bytes, limits.cache_bytes, limits.max_hints, limits.preview_size) == (
        2 << 20, 3 << 20, 7, 0)
    # --load_size 0 (native size) under a small budget: a strip fits, a large photo is a 413 at upload
    server, sock, url = app.prepare(app.build_parser().parse_args(
        base + ["--port", "0", "--load_size", "0", "--max_memory_gb", "0.05", "--preview_size", "0"]))
    try:
        assert sock.getsockname()[0] == "127.0.0.1" and url == f"http://127.0.0.1:{sock.getsockname()[1]}/"
        editor = server.config.app.state.editor
        assert editor.add(Image.fromarray(smooth_rgb(3, 2000)))["width"] == 2000  # 8 x 2000 network: 39 MB
        with pytest.raises(ApiError) as info:
            editor.add(Image.fromarray(smooth_rgb(200, 300)))
        assert info.value.status == 413 and "over the budget of 0.05 GB (--max_memory_gb)" in info.value.message
    finally:
        sock.close()


def test_bench_app_prints_its_figures(capsys):
    from benchmarks import bench_app

    assert bench_app.main(["--device", "cpu", "--sizes", "16", "--configs", "fp32", "--edits", "2", "--warmup", "0",
                           "--preview_size", "8", "--image_size", "24", "16", "--threads", "1"]) == 0
    full, preview = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (full["mode"], full["network"], preview["mode"], preview["network"]) == ("full", "24x16", "preview", "16x8")
    for key in ("median_ms", "p95_ms", "server_ms", "http_ms", "forward_ms"):
        assert full[key] > 0 and preview[key] > 0, key
    assert full["p95_ms"] >= full["median_ms"] >= full["server_ms"] >= full["forward_ms"]


# --- the page in headless Chromium ----------------------------------------------------------------

def result_bytes(page):
    """The bytes of the result image the page shows."""
    data = page.evaluate("""async () => {
        const buffer = await (await fetch(document.getElementById('result').src)).arrayBuffer();
        let s = ''; new Uint8Array(buffer).forEach(b => { s += String.fromCharCode(b); }); return btoa(s); }""")
    return base64.b64decode(data)


def settle(page):
    """Wait until the full render of the current state is on screen."""
    page.wait_for_function("document.body.dataset.state === 'idle'", timeout=30000)


def hints_of(page):
    return page.evaluate("state.hints.map(h => [h.x, h.y, h.color, h.size])")


@pytest.fixture
def colorize_calls(server, monkeypatch):
    """Records of the server's /api/colorize calls: "preview" flags, and the most in flight at once."""
    _, editor = server
    record, lock = {"preview": [], "active": 0, "most": 0}, threading.Lock()
    original = editor.colorize

    def counting(obj):
        with lock:
            record["active"] += 1
            record["most"] = max(record["most"], record["active"])
            record["preview"].append(obj.get("preview", False))
        try:
            return original(obj)
        finally:
            with lock:
                record["active"] -= 1
    monkeypatch.setattr(editor, "colorize", counting)
    return record


def test_page_flow(server, weights, folder, tmp_path, colorize_calls):
    url, _ = server
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with open_page(tmp_path / "unused.html", viewport={"width": 1200, "height": 640}, url=url) as (page, errors):
        page.wait_for_selector("#folder-label:not([hidden])")
        page.set_input_files("#upload", str(folder / "photo.png"))
        settle(page)
        automatic = result_bytes(page)
        assert automatic == request(url, "/api/colorize", {"id": page.evaluate("state.image.id"), "hints": []})[2]
        assert "full 40x32" in page.inner_text("#latency") and " ms " in page.inner_text("#latency")

        box = page.locator("#input").bounding_box()
        page.mouse.click(box["x"] + box["width"] * 20.5 / 64, box["y"] + box["height"] * 15.5 / 48)  # pixel (20, 15)
        page.wait_for_selector("#suggestions button >> nth=7")
        assert hints_of(page)[0][:2] == [20, 15]
        settle(page)
        with_point = result_bytes(page)
        current = hints_of(page)[0][2]
        choice = [c for c in page.eval_on_selector_all("#suggestions button", "bs => bs.map(b => b.dataset.color)")
                  if c != current][0]
        page.click(f"#suggestions button[data-color='{choice}']")
        settle(page)
        picked = result_bytes(page)
        assert hints_of(page)[0][2] == choice and picked != with_point
        if os.environ.get("APP_SCREENSHOT"):
            page.screenshot(path=os.environ["APP_SCREENSHOT"])

        # drag the point; then the gamut and the free picker set its colour
        page.mouse.move(box["x"] + box["width"] * 20.5 / 64, box["y"] + box["height"] * 15.5 / 48)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 40.5 / 64, box["y"] + box["height"] * 30.5 / 48, steps=4)
        page.mouse.up()
        settle(page)
        assert hints_of(page)[0][:2] == [40, 30] and result_bytes(page) != picked
        gamut = page.locator("#gamut").bounding_box()
        page.mouse.click(gamut["x"] + gamut["width"] / 2 + 5, gamut["y"] + gamut["height"] / 2 - 5)  # a, b = 5, 5
        assert hints_of(page)[0][2] != choice
        page.eval_on_selector("#picker", "p => { p.value = '#3070d0'; p.dispatchEvent(new Event('change')); }")
        settle(page)
        assert hints_of(page)[0][2] == "#3070d0"
        for _ in range(3):  # undo the picker, the gamut pick and the move
            page.click("#undo")
        settle(page)
        assert hints_of(page) == [[20, 15, choice, 3]] and result_bytes(page) == picked
        page.click("#undo")  # the suggested colour
        settle(page)
        assert result_bytes(page) == with_point

        page.mouse.click(box["x"] + box["width"] * 20.5 / 64, box["y"] + box["height"] * 15.5 / 48)  # select
        page.click("#suggestions button >> nth=0")
        page.locator("#patch").fill("5")
        page.locator("#patch").dispatch_event("change")
        page.mouse.click(box["x"] + box["width"] * 50.5 / 64, box["y"] + box["height"] * 10.5 / 48)
        settle(page)
        assert [h[3] for h in hints_of(page)] == [5, 5]
        with page.expect_download() as download:
            page.click("#save-hints")
        hints_file = tmp_path / "hints.json"
        download.value.save_as(hints_file)
        with page.expect_download() as download:
            page.click("#download")
        download.value.save_as(tmp_path / "page.png")
        assert download.value.suggested_filename == "photo_color.png"
        assert json.loads(hints_file.read_text()) == [{"x": x, "y": y, "color": c, "size": s}
                                                     for x, y, c, s in hints_of(page)]
        assert (tmp_path / "page.png").read_bytes() == colorize_cli(weights, folder / "photo.png", hints_file,
                                                                    tmp_path / "cli.png")
        final = result_bytes(page)

        page.mouse.click(box["x"] + box["width"] * 50.5 / 64, box["y"] + box["height"] * 10.5 / 48, button="right")
        settle(page)
        assert len(hints_of(page)) == 1
        page.click("#clear")
        settle(page)
        assert hints_of(page) == [] and result_bytes(page) == automatic
        page.set_input_files("#load-hints", str(hints_file))
        settle(page)
        assert result_bytes(page) == final

        page.check("#show-original")
        assert page.is_visible("#original") and not page.is_visible("#result")
        page.uncheck("#show-original")

        page.set_input_files("#upload", str(bad))
        page.wait_for_function("document.getElementById('error').textContent.includes('not a readable image')")
        page.set_input_files("#upload", str(folder / "sub" / "other.jpg"))
        page.wait_for_function("state.image && state.image.width === 32")
        settle(page)
        assert page.inner_text("#error") == "" and "full 32x40" in page.inner_text("#latency")
        page.select_option("#folder", "photo.png")
        page.wait_for_function("state.image && state.image.width === 64")
        settle(page)
        assert result_bytes(page) == automatic
        # edits were previewed, then rendered in full; the page never had two renders in flight
        assert True in colorize_calls["preview"] and False in colorize_calls["preview"]
        assert colorize_calls["most"] == 1
        # the browser logs the refused upload's 400; nothing else
        assert [e for e in errors if "status of 400" not in e] == [], errors
