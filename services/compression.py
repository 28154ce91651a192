"""Brotli or gzip for text answers (pages, CSS, JS, JSON), as the browser accepts.

A few lines of our own: the Quart extension for this is unmaintained and speaks one
encoding at a time. Static files are compressed once per file version and encoding.
"""

from __future__ import annotations

import gzip

import brotli
from quart import Quart, Response, request

COMPRESSIBLE = frozenset(
    {
        "text/html",
        "text/css",
        "text/plain",
        "text/javascript",
        "application/javascript",
        "application/json",
        "image/svg+xml",
        "image/x-icon",
        "image/vnd.microsoft.icon",
    }
)
MIN_SIZE = 500
BROTLI_QUALITY = 5  # dynamic pages: fast enough per request, close to gzip -9 in size
STATIC_BROTLI_QUALITY = 11  # static files: compressed once, so the smallest
GZIP_LEVEL = 6


def choose_encoding(accept_encoding: str) -> str | None:
    """`br` or `gzip` when the client takes it (q=0 refuses), else None."""
    accepted: dict[str, float] = {}
    for part in accept_encoding.lower().split(","):
        name, _, params = part.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                quality = 0.0
        if name:
            accepted[name.strip()] = quality
    for encoding in ("br", "gzip"):
        if accepted.get(encoding, accepted.get("*", 0.0)) > 0:
            return encoding
    return None


def compress(data: bytes, encoding: str, *, static: bool = False) -> bytes:
    """`data` compressed with `encoding` (`br` or `gzip`)."""
    if encoding == "br":
        quality = STATIC_BROTLI_QUALITY if static else BROTLI_QUALITY
        return bytes(brotli.compress(data, quality=quality))
    return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)


def _worth_compressing(response: Response) -> bool:
    # The cheap checks first: most API answers stop at the length.
    length = response.content_length
    return (
        response.status_code == 200
        and (length is None or length >= MIN_SIZE)
        and response.mimetype in COMPRESSIBLE
        and "Content-Encoding" not in response.headers
    )


def _vary_on_encoding(response: Response) -> None:
    if "Vary" in response.headers:
        response.vary.add("Accept-Encoding")
    else:
        response.headers["Vary"] = "Accept-Encoding"


def init_compression(app: Quart) -> None:
    """Compress every text answer after it is built."""
    static_cache: dict[tuple[str, str, str], bytes] = {}

    @app.after_request
    async def _compress(response: Response) -> Response:
        if response.status_code == 304:
            _vary_on_encoding(response)  # what the 200 it stands for would say
            return response
        if not _worth_compressing(response):
            return response  # the same bytes whatever the client accepts: no Vary
        _vary_on_encoding(response)
        encoding = choose_encoding(request.headers.get("Accept-Encoding", ""))
        if encoding is None:
            return response
        is_static = request.endpoint == "static" or request.path == "/favicon.ico"
        etag, _ = response.get_etag()
        key = (request.path, etag or "", encoding)
        body = static_cache.get(key) if is_static and etag else None
        if body is None:
            data = await response.get_data(as_text=False)
            if len(data) < MIN_SIZE:
                return response
            body = compress(data, encoding, static=is_static)
            if is_static and etag:
                static_cache[key] = body
        response.set_data(body)
        response.headers["Content-Encoding"] = encoding
        response.headers.pop("Accept-Ranges", None)  # byte ranges of the plain file only
        if etag:
            # The same file in another encoding: a weak tag still answers If-None-Match.
            response.set_etag(etag, weak=True)
        return response

    app.extensions["compression"] = static_cache
