"""Messages for the next page, shown beside the thing they are about.

A message flashed with an anchor (`line-12`) is shown beside the element that renders
it with `page_messages().beside("line-12")`, carrying that id, so a redirect to
`…#line-12` scrolls to it and puts the focus on it. Messages that no element took
are shown at the top of the page (with their anchor as id, so the link still lands).
The flash category carries the anchor and an offer: `error line-12 add=39`.

These messages travel in a short-lived signed cookie, not in the Redis session: a
refused change must leave no trace on the server (a visitor with no session gets
none for being told "no"), and a message needs no more than the next page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, cast

from itsdangerous import BadData, TimestampSigner
from itsdangerous.encoding import base64_decode, base64_encode
from quart import Quart, Response, current_app, g, get_flashed_messages, request

LEVELS = ("success", "error", "info")
NOTES_COOKIE = "cart_notes"
NOTES_MAX_AGE_SECONDS = 300
NOTES_MAX_CHARS = 3000


@dataclass
class PageMessage:
    text: str
    level: str = "success"
    anchor: str | None = None
    # What the shopper can do instead: add this many more, or set the line to this many.
    offer_add: int | None = None
    offer_set: int | None = None
    shown: bool = False

    @property
    def is_error(self) -> bool:
        return self.level == "error"


def message_category(
    level: str,
    anchor: str | None = None,
    *,
    offer_add: int | None = None,
    offer_set: int | None = None,
) -> str:
    """The flash category that carries a message's level, anchor and offer."""
    parts = [level if level in LEVELS else "info"]
    if anchor:
        parts.append(anchor)
    if offer_add:
        parts.append(f"add={offer_add}")
    if offer_set:
        parts.append(f"set={offer_set}")
    return " ".join(parts)


def parse_message(category: str, text: str) -> PageMessage:
    """A flashed (category, text) back as a `PageMessage`; plain categories still work."""
    level, *rest = (category or "info").split()
    message = PageMessage(text=text, level=level if level in LEVELS else "info")
    for part in rest:
        name, _, value = part.partition("=")
        if value.isdigit() and name in ("add", "set"):
            setattr(message, f"offer_{name}", int(value))
        elif not value:
            message.anchor = name
    return message


async def flash_beside(
    anchor: str | None,
    text: str,
    level: str = "success",
    *,
    offer_add: int | None = None,
    offer_set: int | None = None,
) -> None:
    """Keep `text` for the next page, to be shown beside `anchor` (in the notes cookie)."""
    category = message_category(level, anchor, offer_add=offer_add, offer_set=offer_set)
    notes: list[list[str]] = g.setdefault("new_notes", [])
    notes.append([category, text[:500]])


@lru_cache(maxsize=4)
def _notes_signer(secret_key: str) -> TimestampSigner:
    return TimestampSigner(secret_key, salt="cart-notes")


def _sign_notes(notes: list[list[str]]) -> str:
    """The notes as URL-safe base64 JSON, timestamped and signed. Not itsdangerous'
    `URLSafeTimedSerializer`: it tries zlib on every value, which cost two thirds of
    the 40 µs it took per answer, for a cookie that lives five minutes."""
    payload = base64_encode(json.dumps(notes, separators=(",", ":")).encode())
    return _notes_signer(current_app.config["SECRET_KEY"]).sign(payload).decode("ascii")


def _unsign_notes(raw: str) -> Any:
    """What `_sign_notes` signed, if the signature holds and it is not too old."""
    signer = _notes_signer(current_app.config["SECRET_KEY"])
    return json.loads(base64_decode(signer.unsign(raw, max_age=NOTES_MAX_AGE_SECONDS)))


def _notes_from_cookie() -> list[tuple[str, str]]:
    """The messages the previous answer left in the notes cookie (forged or old: none)."""
    raw = request.cookies.get(NOTES_COOKIE)
    if not raw:
        return []
    g.notes_read = True
    try:
        notes: Any = _unsign_notes(raw)
    except (BadData, ValueError):
        return []
    if not isinstance(notes, list):
        return []
    return [
        (str(note[0]), str(note[1])) for note in notes if isinstance(note, list) and len(note) == 2
    ]


async def _write_notes(response: Response) -> Response:
    """Set the notes cookie for the next page, or clear it once it has been shown."""
    notes: list[list[str]] | None = g.get("new_notes")
    secure = current_app.config["SETTINGS"].session.cookie_secure
    if notes:
        value = _sign_notes(notes)
        if len(value) > NOTES_MAX_CHARS:
            value = _sign_notes(notes[-1:])
        response.set_cookie(
            NOTES_COOKIE,
            value,
            max_age=NOTES_MAX_AGE_SECONDS,
            httponly=True,
            secure=secure,
            samesite="Lax",
        )
    elif g.get("notes_read"):
        response.delete_cookie(NOTES_COOKIE, httponly=True, secure=secure, samesite="Lax")
    return response


@dataclass
class PageMessages:
    """This request's flashed messages, handed out to the parts of the page they belong to."""

    messages: list[PageMessage] = field(default_factory=list)

    def beside(self, anchor: str) -> list[PageMessage]:
        """The messages about `anchor` not yet shown; they count as shown now."""
        found = [m for m in self.messages if m.anchor == anchor and not m.shown]
        for message in found:
            message.shown = True
        return found

    def rest(self) -> list[PageMessage]:
        """Every message no part of the page has shown."""
        found = [m for m in self.messages if not m.shown]
        for message in found:
            message.shown = True
        return found

    def __bool__(self) -> bool:
        return bool(self.messages)


def page_messages() -> PageMessages:
    """The messages of this request, read once (reading them takes them off the session)."""
    messages: PageMessages | None = g.get("page_messages")
    if messages is None:
        flashed = cast(list[tuple[str, str]], get_flashed_messages(with_categories=True))
        flashed = [*flashed, *_notes_from_cookie()]
        messages = PageMessages([parse_message(category, text) for category, text in flashed])
        g.page_messages = messages
    return messages


def init_page_messages(app: Quart) -> None:
    """`page_messages()` for every template, and the notes cookie on every answer."""
    app.jinja_env.globals["page_messages"] = page_messages
    app.after_request(_write_notes)
