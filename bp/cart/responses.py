"""What the cart's routes share: the current owner, and the answer after a write."""

from __future__ import annotations

import hmac
from typing import Any

from quart import current_app, flash, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from bp.cart.forms import CheckoutForm, raise_for_errors, shown_total
from bp.cart.services.check_sumup_status import check_sumup_status
from bp.cart.services.checkout import CheckoutRequest, create_order_from_cart
from bp.cart.services.checkout_attempts import CheckoutContext, retire_open_attempts
from bp.cart.services.get_cart import PageRef
from bp.cart.services.hosted_checkout import start_hosted_checkout
from bp.cart.services.identity import Identity, ensure_identity, identity_from_session
from bp.cart.services.refunds import settle_pending_refunds
from bp.cart.services.summary import get_cart_summary
from config import Settings
from models import Order
from services.csrf import bind_form
from services.db import db_connection, db_session
from services.error_pages import wants_json
from services.errors import PaymentProviderError
from services.redirects import safe_next


def settings() -> Settings:
    """The app's validated settings."""
    value: Settings = current_app.config["SETTINGS"]
    return value


def current_identity() -> Identity | None:
    """The shopper's cart owner, if they have one yet."""
    return identity_from_session(session)


def current_identity_or_empty() -> Identity:
    """The shopper's cart owner, or a throwaway one that owns nothing (an empty cart)."""
    return identity_from_session(session) or Identity(session_id="-")


def writing_identity() -> Identity:
    """The shopper's cart owner, created now if this is their first cart write."""
    return ensure_identity(session)


def internal_caller_is_authorised() -> bool:
    """Whether the request carries the internal API's bearer token (sibling apps)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    expected = settings().internal_api_token.reveal()
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), expected.encode()
    )


def site_origins() -> list[str]:
    """Origins `next` may point to: this app and its siblings."""
    config = settings()
    return [config.public_url, *config.app_urls.values()]


async def after_write(message: str, next_url: str | None) -> Any:
    """JSON summary for scripts, else flash and 303 back to `next` or the cart."""
    config = settings()
    if wants_json():
        summary = await get_cart_summary(
            await db_connection(), current_identity(), default_currency=config.cart.currency
        )
        return {"message": message, "summary": summary.as_json()}
    await flash(message, "success")
    target = safe_next(next_url, allowed_origins=site_origins())
    response: WerkzeugResponse = redirect(target or url_for("cart_overview.overview"), 303)
    return response


def checkout_context() -> CheckoutContext:
    """Settings and SumUp clients, for the checkout services."""
    return CheckoutContext(settings(), current_app.extensions["sumup"])


async def check_payment(order_id: int) -> Order:
    """Ask SumUp about the order now (in the request's transaction, committed here), then
    give back at once any money the order could not take."""
    db = db_session()
    order = await check_sumup_status(db, order_id, context=checkout_context())
    await db.commit()
    await settle_pending_refunds(
        current_app.extensions["db_sessionmaker"], checkout_context(), order_id=order_id
    )
    return order


async def retire_superseded(order_ids: list[int]) -> None:
    """Retire the SumUp checkouts of orders a checkout just superseded (after its commit);
    what SumUp cannot be told now, the sweep tells it later."""
    sessions = current_app.extensions["db_sessionmaker"]
    for order_id in order_ids:
        try:
            async with sessions() as session, session.begin():
                await retire_open_attempts(session, order_id, checkout_context())
        except PaymentProviderError:
            continue


async def go_to_payment(order_id: int, *, reuse_open: bool = True) -> Any:
    """303 to SumUp's hosted page; a page that says what happened when SumUp fails."""
    sessions = current_app.extensions["db_sessionmaker"]
    try:
        hosted = await start_hosted_checkout(
            sessions, order_id, checkout_context(), reuse_open=reuse_open
        )
    except PaymentProviderError as error:
        page = await render_template(
            "cart/payment_problem.html", order_id=order_id, message=error.message
        )
        return page, error.status_code
    if hosted.paid or hosted.url is None:
        return redirect(url_for("cart_global.checkout_return", order_id=order_id), 303)
    return redirect(hosted.url, 303)


async def checkout_and_pay(page: PageRef | None) -> Any:
    """The checkout form's answer: an order from the cart (or one page), then SumUp."""
    form = await bind_form(CheckoutForm)
    raise_for_errors(form, max_quantity=settings().cart.max_quantity_per_line)
    db = db_session()
    result = await create_order_from_cart(
        db,
        CheckoutRequest(
            current_identity_or_empty(),
            page,
            form.idempotency_key.data or None,
            shown_total=shown_total(form),
        ),
        settings=settings(),
    )
    await db.commit()  # the order exists before SumUp is called, outside any lock
    await retire_superseded(result.superseded)
    return await go_to_payment(result.order.id)
