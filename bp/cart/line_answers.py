"""The answers of the cart's line forms, given beside the line the shopper was on.

Add, update and remove answer with a 303 back to the page the form came from, at
`#line-<product id>` (`#entry-<id>` for a booking), where the message is shown and
takes the focus. A refused change answers the same way, with what is possible
instead (`you can add 39 more`), rather than a bare error page. htmx follows the
same 303 and swaps the cart in place. Scripts asking for JSON get JSON, as before.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, redirect, request, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from bp.cart.forms import ASCII_INTEGER
from bp.cart.responses import after_write, current_identity, settings, site_origins
from bp.cart.services.get_cart import get_cart_lines
from bp.cart.services.update_cart import LineChange, fits_sql_integer
from services.db import db_session, rollback_writes
from services.error_pages import error_response, wants_json
from services.errors import CartError, LineQuantityError, NotFoundError, ServiceError
from services.page_messages import flash_beside
from services.redirects import safe_next

LINE_ENDPOINTS = frozenset({"cart_global.add", "cart_global.update", "cart_global.remove"})
ENTRY_ENDPOINTS = frozenset({"cart_global.remove_entry"})


def line_anchor() -> str | None:
    """`line-<product id>` or `entry-<id>` for the line form being answered."""
    args = request.view_args or {}
    if request.endpoint in LINE_ENDPOINTS and "product_id" in args:
        return f"line-{args['product_id']}"
    if request.endpoint in ENTRY_ENDPOINTS and "entry_id" in args:
        return f"entry-{args['entry_id']}"
    return None


def back_to(next_url: str | None, anchor: str | None) -> WerkzeugResponse:
    """303 to `next` (on this site) or the cart; a page of this app at the line's anchor."""
    target = safe_next(next_url, allowed_origins=site_origins()) or url_for(
        "cart_overview.overview"
    )
    # Only this app's pages are known to have the anchor; a sibling's page is left as given.
    if anchor and target.startswith("/") and "#" not in target:
        target = f"{target}#{anchor}"
    response: WerkzeugResponse = redirect(target, 303)
    return response


async def line_answer(message: str, next_url: str | None) -> Any:
    """After a line change: JSON for scripts, else the message beside the line and 303 to it."""
    if wants_json():
        return await after_write(message, next_url)
    anchor = line_anchor()
    await flash_beside(anchor, message, "success")
    return back_to(next_url, anchor)


def line_change_message(change: LineChange) -> str:
    """What a line change did, in the words of the line forms' answers."""
    if change.quantity:
        return f"{change.title}: {change.quantity} in your cart."
    return f"{change.title} was taken out of your cart."


async def quantities_answer(
    changes: list[LineChange], pressed: int | None, next_url: str | None
) -> Any:
    """After the cart form's Update: each change told beside its line, and 303 to the first
    (or to the line whose button was pressed when nothing changed)."""
    if wants_json():
        text = " ".join(line_change_message(change) for change in changes)
        return await after_write(text or "Nothing to update.", next_url)
    for change in changes:
        await flash_beside(f"line-{change.product_id}", line_change_message(change), "success")
    changed = [change.product_id for change in changes]
    first = pressed if pressed in changed or not changed else changed[0]
    anchor = f"line-{first}" if first is not None else None
    if not changes:
        await flash_beside(anchor, "Nothing to update: the quantities are as they were.", "info")
    return back_to(next_url, anchor)


def _malformed(form: Any) -> bool:
    """Whether a number field holds something other than ASCII digits, or a market id
    no market can have."""
    values = ((form.get(name) or "").strip() for name in ("quantity", "market_place"))
    if any(value and not ASCII_INTEGER.fullmatch(value) for value in values):
        return True
    market = (form.get("market_place") or "").strip()
    return bool(market) and not fits_sql_integer(int(market))


def _int_or_none(value: str | None) -> int | None:
    text = (value or "").strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) < 10 else None


async def _held_quantity(product_id: int) -> int:
    identity = current_identity()
    if identity is None:
        return 0
    lines = await get_cart_lines(db_session(), identity)
    return sum(line.quantity for line in lines if line.product_id == product_id)


async def _line_is_shown(error: ServiceError) -> bool:
    """Whether the cart shows the line a refused change was about (a 404 is beside it
    only when it is: a product withdrawn while in the cart)."""
    if not isinstance(error, NotFoundError):
        return True
    product_id = (request.view_args or {}).get("product_id")
    return isinstance(product_id, int) and await _held_quantity(product_id) > 0


async def answer_line_error(error: ServiceError) -> Any:
    """A refused line change, beside the line; other errors of the blueprint as usual."""
    await rollback_writes()  # the refused change leaves nothing behind (nor holds a lock)
    anchor = line_anchor()
    form = await request.form
    if anchor is None or wants_json() or _malformed(form) or not await _line_is_shown(error):
        # Not a shopper's choice to answer beside a line: something no form of ours sends
        # (digits that are not ASCII, words for numbers), or a thing the cart does not show.
        return await error_response(error.status_code, error.title, error.message)
    limit = settings().cart.max_quantity_per_line
    asked = _int_or_none(form.get("quantity"))
    text, offer_add, offer_set = error.message, None, None
    if isinstance(error, CartError) and asked is not None and request.endpoint == "cart_global.add":
        held = await _held_quantity(int((request.view_args or {})["product_id"]))
        if held and held + asked > limit:
            room = limit - held
            more = f"you can add {room} more." if room > 0 else "it is full."
            text = f"{text} You already have {held}, and one line holds {limit}: {more}"
            offer_add = room if room > 0 else None
    elif isinstance(error, CartError) and asked is not None and asked > limit:
        offer_set = limit
    await flash_beside(anchor, text, "error", offer_add=offer_add, offer_set=offer_set)
    return back_to(form.get("next"), anchor)


async def answer_line_quantity_error(error: LineQuantityError) -> Any:
    """A typed quantity the cart refused (from the cart form: Update or a checkout button),
    said beside its line with what is possible; nothing was changed."""
    await rollback_writes()  # the quantities typed beside it are not saved either
    if wants_json():
        return await error_response(error.status_code, error.title, error.message)
    anchor = f"line-{error.product_id}"
    await flash_beside(anchor, error.message, "error", offer_set=error.offer_set)
    return back_to((await request.form).get("next"), anchor)


def init_quantity_answers(bp: Blueprint) -> None:
    """Quantities of the cart form that `bp`'s routes refuse answer beside their line."""
    bp.register_error_handler(LineQuantityError, answer_line_quantity_error)


def init_line_answers(bp: Blueprint) -> None:
    """Refused line changes of `bp` answer beside the line (CartError, NotFoundError)."""
    bp.register_error_handler(CartError, answer_line_error)
    bp.register_error_handler(NotFoundError, answer_line_error)
    init_quantity_answers(bp)
