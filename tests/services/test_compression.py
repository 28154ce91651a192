"""Pages, CSS and JS go out brotli- or gzip-compressed when the browser takes it."""

from __future__ import annotations

import gzip

import brotli
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from services.compression import choose_encoding


@pytest.mark.parametrize(
    ("header", "chosen"),
    [
        ("gzip, deflate, br, zstd", "br"),
        ("gzip", "gzip"),
        ("br;q=0, gzip", "gzip"),
        ("identity", None),
        ("", None),
        ("*", "br"),
        ("gzip;q=0, br;q=0", None),
    ],
)
def test_the_encoding_follows_accept_encoding(header: str, chosen: str | None) -> None:
    assert choose_encoding(header) == chosen


async def test_a_page_is_sent_brotli_compressed(client: Client) -> None:
    response = await client.get("/cart/", headers={"Accept-Encoding": "br, gzip"})
    assert response.status_code == 200
    assert response.headers["Content-Encoding"] == "br"
    assert "Accept-Encoding" in response.headers["Vary"]
    html = brotli.decompress(await response.get_data(as_text=False)).decode()
    assert "<h1>Your cart</h1>" in html


async def test_the_stylesheet_is_sent_gzip_compressed_to_a_gzip_only_client(
    client: Client, app: Quart
) -> None:
    plain = await (await client.get("/static/css/cart.css")).get_data()
    response = await client.get("/static/css/cart.css", headers={"Accept-Encoding": "gzip"})
    assert response.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(await response.get_data(as_text=False)) == plain
    assert len(await response.get_data()) < len(plain) / 2


async def test_a_client_that_takes_no_compression_gets_the_plain_body(client: Client) -> None:
    response = await client.get("/static/js/cart.js", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in response.headers
    assert b"use strict" in await response.get_data()


async def test_json_and_small_answers_are_left_alone_when_tiny(client: Client) -> None:
    response = await client.get("/healthz", headers={"Accept-Encoding": "br"})
    assert "Content-Encoding" not in response.headers


async def test_an_answer_too_small_to_compress_is_sent_as_is_without_vary(client: Client) -> None:
    response = await client.get("/healthz", headers={"Accept-Encoding": "br, gzip"})
    assert response.status_code == 200
    assert "Content-Encoding" not in response.headers
    assert "Vary" not in response.headers  # the same bytes whatever the client accepts


async def test_a_not_modified_answer_still_says_it_varies_by_encoding(client: Client) -> None:
    first = await client.get("/static/css/cart.css", headers={"Accept-Encoding": "gzip"})
    etag = first.headers["ETag"]
    again = await client.get(
        "/static/css/cart.css", headers={"Accept-Encoding": "gzip", "If-None-Match": etag}
    )
    assert again.status_code == 304
    assert "Accept-Encoding" in again.headers["Vary"]
