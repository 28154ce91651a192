"""Static assets: a favicon, versioned URLs cached for a year, htmx pinned and CSP-friendly."""

from __future__ import annotations

import re
from pathlib import Path

from quart.typing import TestClientProtocol as Client

from services.page_assets import file_version

ROOT = Path(__file__).resolve().parent.parent.parent


async def test_the_favicon_is_served(client: Client) -> None:
    response = await client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.mimetype in ("image/vnd.microsoft.icon", "image/x-icon")
    assert (await response.get_data())[:4] == b"\x00\x00\x01\x00"  # an ICO file


async def test_pages_link_versioned_assets_that_may_be_cached_for_a_year(client: Client) -> None:
    html = await (await client.get("/cart/")).get_data(as_text=True)
    version = file_version(ROOT / "static" / "css" / "cart.css")
    assert f'href="/static/css/cart.css?v={version}"' in html
    response = await client.get(f"/static/css/cart.css?v={version}")
    assert response.status_code == 200
    assert response.cache_control.max_age == 365 * 24 * 3600
    assert response.cache_control.immutable


async def test_pages_load_no_inline_script_or_style(client: Client) -> None:
    html = await (await client.get("/cart/")).get_data(as_text=True)
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert "<style" not in html and " style=" not in html
    assert re.search(
        r'<meta name="htmx-config" content=\'[^\']*"includeIndicatorStyles": false', html
    )


def test_no_template_has_inline_script_style_or_event_handlers() -> None:
    for template in (ROOT / "templates").rglob("*.html"):
        text = template.read_text(encoding="utf-8")
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), template
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=|hx-on", text), template


def test_the_vendored_htmx_is_the_pinned_version_with_its_licence() -> None:
    [vendored] = (ROOT / "static" / "js").glob("htmx-*.min.js")
    text = vendored.read_text(encoding="utf-8")
    assert vendored.name == "htmx-2.0.11.min.js"
    assert text.startswith("/*! htmx 2.0.11") and "Zero-Clause BSD" in text[:2000]
    assert 'version:"2.0.11"' in text
