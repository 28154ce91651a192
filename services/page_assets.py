"""Static assets of the pages: versioned URLs that browsers may cache for a year, the favicon.

`asset_url("css/cart.css")` gives `/static/css/cart.css?v=<hash of the file>`: a new
file is a new URL, so the old one can be cached for good.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from quart import Quart, Response, request, send_from_directory, url_for

ONE_YEAR = 365 * 24 * 3600
ONE_DAY = 24 * 3600


def file_version(path: Path) -> str:
    """A short hash of the file's bytes: changes whenever the file does."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def init_page_assets(app: Quart) -> None:
    """`asset_url()` for templates, long caching of versioned files, and `/favicon.ico`."""
    static_folder = Path(app.static_folder or "static")
    # A file's URL only changes with a deploy (its bytes) or where the app is mounted:
    # built once, not four times on every page.
    urls: dict[tuple[str, str], str] = {}

    def asset_url(filename: str) -> str:
        key = (request.root_path, filename)
        url = urls.get(key)
        if url is None:
            version = file_version(static_folder / filename)
            url = urls[key] = url_for("static", filename=filename, v=version)
        return url

    app.jinja_env.globals["asset_url"] = asset_url

    @app.after_request
    async def _cache_static(response: Response) -> Response:
        if request.endpoint == "static" and response.status_code in (200, 304):
            if request.args.get("v"):
                response.cache_control.max_age = ONE_YEAR
                response.cache_control.public = True
                response.cache_control.immutable = True
            else:
                response.cache_control.max_age = ONE_DAY
                response.cache_control.public = True
        return response

    async def favicon() -> Response:
        """The site icon browsers ask for on every site, whatever the page says."""
        response = await send_from_directory(static_folder, "favicon.ico")
        response.cache_control.max_age = ONE_DAY
        response.cache_control.public = True
        return response

    app.add_url_rule("/favicon.ico", "favicon", favicon, methods=["GET"])
