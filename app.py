r"""Interactive colorization in the browser: click points, pick colours, see the result follow.

    python app.py --name siggraph_caffemodel --mask_cent 0 --images photos/
    python app.py --checkpoint my_model.pth --port 8000

Prints the URL to open (127.0.0.1 by default; from another machine through an SSH tunnel:
ssh -N -L 8000:127.0.0.1:8000 user@server, then http://127.0.0.1:8000/). The model flags are
colorize.py's, and the page's result equals colorize.py's for the same image and hints.
The page, the API and the limits: docs/app.md. The server: webapp/server.py.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from inference.model_flags import UsageError, add_model_flags, load_colorizer
from options import flags
from util.checkpoint import CheckpointError
from webapp.server import Editor, Limits, bind, create_app, make_server

_DEFAULTS = Limits()


def build_parser() -> argparse.ArgumentParser:
    summary, _, details = __doc__.partition("\n")
    parser = argparse.ArgumentParser(
        description=summary + " IMPORTANT: the official caffemodel weights need --mask_cent 0.",
        epilog="usage notes:" + details, formatter_class=flags.HelpFormatter)
    server = parser.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; 127.0.0.1 (loopback: this machine only) unless you mean "
                             "to expose the model to your network")
    server.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one")
    server.add_argument("--images", metavar="DIR", help="offer the images of this folder in the page")
    server.add_argument("--preview_size", type=int, default=_DEFAULTS.preview_size, metavar="PX",
                        help="network size of the quick renders while you edit (the full --load_size render "
                             "follows when you pause); 0: full renders only")
    server.add_argument("--max_upload_mb", type=float, default=_DEFAULTS.max_upload_bytes / 2**20, metavar="MB",
                        help="largest upload")
    server.add_argument("--cache_mb", type=float, default=_DEFAULTS.cache_bytes / 2**20, metavar="MB",
                        help="decoded images kept in memory (3 bytes per pixel); the least recently used go first")
    server.add_argument("--max_hints", type=int, default=_DEFAULTS.max_hints, help="most hints per request")
    add_model_flags(parser)
    return parser


def limits_of(opt: argparse.Namespace) -> Limits:
    """The server's Limits from its flags; UsageError for impossible values."""
    if opt.preview_size < 0 or not opt.max_upload_mb > 0 or not opt.cache_mb > 0 or opt.max_hints < 1:
        raise UsageError("--preview_size must be >= 0, --max_upload_mb and --cache_mb > 0, --max_hints >= 1")
    return Limits(max_upload_bytes=int(opt.max_upload_mb * 2**20), cache_bytes=int(opt.cache_mb * 2**20),
                  max_hints=opt.max_hints, preview_size=opt.preview_size)


def prepare(opt: argparse.Namespace):
    """(uvicorn server, bound socket, URL) for parsed options; UsageError, CheckpointError. The
    address is bound before the model loads, so that a taken port fails at once."""
    limits = limits_of(opt)
    if opt.images is not None and not os.path.isdir(opt.images):
        raise UsageError(f"--images {opt.images}: not a folder")
    try:
        sock, url = bind(opt.host, opt.port)
    except OSError as e:
        raise UsageError(f"cannot listen on {opt.host}:{opt.port} ({e.strerror or e})") from None
    try:
        editor = Editor(load_colorizer(opt), opt.images, limits)
    except BaseException:
        sock.close()
        raise
    return make_server(create_app(editor)), sock, url


def main(argv: Optional[Sequence[str]] = None) -> int:
    opt = build_parser().parse_args(argv)
    try:
        server, sock, url = prepare(opt)
    except (UsageError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"open {url} in a browser (Ctrl-C stops the server)", flush=True)
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
