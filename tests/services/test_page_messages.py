"""Flashed messages carry where they belong and what the shopper can do instead."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from quart import Quart

from services.page_messages import (
    NOTES_COOKIE,
    NOTES_MAX_AGE_SECONDS,
    NOTES_MAX_CHARS,
    PageMessages,
    flash_beside,
    message_category,
    page_messages,
    parse_message,
)


def test_a_message_keeps_its_level_anchor_and_offer_through_the_flash() -> None:
    category = message_category("error", "line-12", offer_add=39)
    message = parse_message(category, "You already have 60")
    assert (message.level, message.anchor, message.offer_add, message.offer_set) == (
        "error",
        "line-12",
        39,
        None,
    )


def test_plain_categories_of_other_flashes_still_read() -> None:
    message = parse_message("success", "Signed in.")
    assert (message.level, message.anchor) == ("success", None)
    assert parse_message("weird", "x").level == "info"


def test_a_message_shown_beside_its_line_is_not_shown_again_on_top() -> None:
    messages = PageMessages(
        [parse_message("success line-1", "Eggs: 3"), parse_message("success", "Signed in.")]
    )
    assert [m.text for m in messages.beside("line-1")] == ["Eggs: 3"]
    assert messages.beside("line-1") == []
    assert [m.text for m in messages.rest()] == ["Signed in."]
    assert messages.rest() == []


# --- the notes cookie: what one answer leaves for the next page ------------------------


@pytest.fixture
async def notes_app(settings: Any) -> Any:
    from app import create_app

    app: Quart = create_app(settings)

    @app.get("/t/say")
    async def say() -> str:
        await flash_beside("line-3", "3 × Eggs in your cart", offer_add=2)
        return "said"

    @app.get("/t/say-a-lot")
    async def say_a_lot() -> str:
        for n in range(12):
            await flash_beside(None, f"{n} " + "x" * 490)
        return "said"

    @app.get("/t/show")
    async def show() -> str:
        return json.dumps(
            [[m.level, m.anchor, m.offer_add, m.text] for m in page_messages().rest()]
        )

    async with app.test_app() as test_app:
        yield test_app


def _notes_cookie(response: Any) -> str:
    [cookie] = [c for c in response.headers.getlist("Set-Cookie") if c.startswith(NOTES_COOKIE)]
    return cookie.split(";")[0].split("=", 1)[1]


async def test_a_note_reaches_the_next_page_once(notes_app: Any) -> None:
    client = notes_app.test_client()
    said = await client.get("/t/say")
    assert "Max-Age=300" in said.headers["Set-Cookie"] and "HttpOnly" in said.headers["Set-Cookie"]
    shown = await client.get("/t/show")
    assert json.loads(await shown.get_data(as_text=True)) == [
        ["success", "line-3", 2, "3 × Eggs in your cart"]
    ]
    assert f"{NOTES_COOKIE}=;" in shown.headers["Set-Cookie"]  # read, so cleared
    assert json.loads(await (await client.get("/t/show")).get_data(as_text=True)) == []


async def test_a_forged_or_stale_note_is_not_shown(notes_app: Any, settings: Any) -> None:
    from itsdangerous import TimestampSigner
    from itsdangerous.encoding import base64_encode

    cookie = _notes_cookie(await notes_app.test_client().get("/t/say"))
    payload, _, signature = cookie.rpartition(".")
    forged = f"{payload}.{'A' * len(signature)}"

    class LongAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - NOTES_MAX_AGE_SECONDS - 5

    notes = base64_encode(json.dumps([["success", "old news"]]).encode())
    stale = LongAgo(settings.secret_key.reveal(), salt="cart-notes").sign(notes).decode()
    for value in (forged, stale, "not-a-cookie", "e30.x.y"):
        client = notes_app.test_client()
        client.cookie_jar.clear()
        client.set_cookie("localhost", NOTES_COOKIE, value)
        shown = await client.get("/t/show")
        assert shown.status_code == 200
        assert json.loads(await shown.get_data(as_text=True)) == []


async def test_notes_too_long_for_a_cookie_keep_the_last_one(notes_app: Any) -> None:
    client = notes_app.test_client()
    said = await client.get("/t/say-a-lot")
    assert len(_notes_cookie(said)) <= NOTES_MAX_CHARS
    shown = json.loads(await (await client.get("/t/show")).get_data(as_text=True))
    assert [text[:3] for *_, text in shown] == ["11 "]
