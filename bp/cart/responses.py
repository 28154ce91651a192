"""What the cart's routes share: the current owner, and the answer after a write."""

from __future__ import annotations

from typing import Any

from quart import current_app, flash, redirect, session, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from bp.cart.services.identity import Identity, ensure_identity, identity_from_session
from bp.cart.services.summary import get_cart_summary
from config import Settings
from services.db import db_session
from services.web import safe_next, wants_json


def settings() -> Settings:
    """The app's validated settings."""
    value: Settings = current_app.config["SETTINGS"]
    return value


def current_identity() -> Identity | None:
    """The shopper's cart owner, if they have one yet."""
    return identity_from_session(session)


def writing_identity() -> Identity:
    """The shopper's cart owner, created now if this is their first cart write."""
    return ensure_identity(session)


def site_origins() -> list[str]:
    """Origins `next` may point to: this app and its siblings."""
    config = settings()
    return [config.public_url, *config.app_urls.values()]


async def after_write(message: str, next_url: str | None) -> Any:
    """JSON summary for scripts, else flash and 303 back to `next` or the cart."""
    config = settings()
    if wants_json():
        summary = await get_cart_summary(
            db_session(), current_identity(), default_currency=config.cart.currency
        )
        return {"message": message, "summary": summary.as_json()}
    await flash(message, "success")
    target = safe_next(next_url, allowed_origins=site_origins())
    response: WerkzeugResponse = redirect(target or url_for("cart_overview.overview"), 303)
    return response
