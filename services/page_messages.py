"""Messages for the next page, shown beside the thing they are about.

A message flashed with an anchor (`line-12`) is shown beside the element that renders
it with `page_messages().beside("line-12")`, carrying that id, so a redirect to
`…#line-12` scrolls to it and puts the focus on it. Messages that no element took
are shown at the top of the page (with their anchor as id, so the link still lands).
The flash category carries the anchor and an offer: `error line-12 add=39`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from quart import Quart, flash, g, get_flashed_messages

LEVELS = ("success", "error", "info")


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
    """Flash `text` for the next page, to be shown beside `anchor`."""
    category = message_category(level, anchor, offer_add=offer_add, offer_set=offer_set)
    await flash(text, category)


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
        messages = PageMessages([parse_message(category, text) for category, text in flashed])
        g.page_messages = messages
    return messages


def init_page_messages(app: Quart) -> None:
    """`page_messages()` for every template."""
    app.jinja_env.globals["page_messages"] = page_messages
