"""What the cart's routes share: the current owner, and the answer after a write."""

from __future__ import annotations

import hmac
from typing import Any

from quart import current_app, flash, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from bp.cart.forms import CheckoutForm, raise_for_errors, shown_total, typed_quantities
from bp.cart.services.check_sumup_status import check_sumup_status
from bp.cart.services.checkout import CheckoutRequest, create_order_from_cart
from bp.cart.services.checkout_attempts import CheckoutContext, retire_open_attempts
from bp.cart.services.get_cart import PageRef
from bp.cart.services.hosted_checkout import start_hosted_checkout
from bp.cart.services.identity import Identity, ensure_identity, identity_from_session
from bp.cart.services.page_cart import get_cart_view
from bp.cart.services.refunds import settle_pending_refunds
from bp.cart.services.summary import get_cart_summary
from bp.cart.services.update_cart import LineChange, set_typed_quantities
from config import Settings
from models import Order
from services.csrf import bind_form
from services.db import db_connection, db_session
from services.error_pages import wants_json
from services.errors import PaymentProviderError
from services.formatting import format_money
from services.page_messages import flash_beside
from services.redirects import safe_next

# Where a cart page shows what its checkout changed before going on: beside the total.
CART_UPDATED = "cart-updated"


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


def cart_page_path(next_url: str | None, page: PageRef | None) -> str:
    """The path of the cart page a cart form came from (`next`), else the scope's own."""
    target = safe_next(next_url, allowed_origins=site_origins()) or ""
    if target.startswith("/"):
        return target.split("#", 1)[0].split("?", 1)[0]
    if page is not None:
        return str(url_for("cart_page.page_cart", page_slug=page.slug))
    return str(url_for("cart_overview.overview"))


async def cart_updated(changes: list[LineChange], page: PageRef | None, path: str) -> Any:
    """Checkout saved typed quantities instead of paying: back to the cart page, which
    says what changed and the total the shopper would now pay (PRG)."""
    config = settings()
    on_page_cart = page is not None and path == url_for("cart_page.page_cart", page_slug=page.slug)
    view = await get_cart_view(
        await db_connection(),  # the request's own: it sees the quantities just saved
        current_identity(),
        default_currency=config.cart.currency,
        page_slug=page.slug if page is not None and on_page_cart else None,
    )
    what = ", ".join(
        f"{change.quantity} × {change.title}" if change.quantity else f"{change.title} taken out"
        for change in changes
    )
    group = next((g for g in view.groups if page is None or g.page.id == page.id), None)
    if group is None:
        then = f"Nothing from {page.title} is in it now." if page else "It is empty now."
    elif page is None:
        then = f"Your new total is {format_money(view.total, view.currency)}"
    else:
        then = f"Your new total for {page.title} is {format_money(group.subtotal, group.currency)}"
    anchor = CART_UPDATED
    if group is not None and page is not None and len(view.groups) > 1:
        anchor = f"{CART_UPDATED}-{page.slug}"  # beside the page's own button, which it names
        then += f" — check it and press Pay for {page.title} only."
    elif group is not None:
        then += " — check it and press Checkout."
    await flash_beside(anchor, f"We updated your cart: {what}. {then}", "info")
    response: WerkzeugResponse = redirect(f"{path}#{anchor}", 303)
    return response


async def checkout_and_pay(page: PageRef | None) -> Any:
    """The checkout form's answer: quantities typed on the cart page are saved first, and
    if they changed the cart the shopper sees it again before paying; else an order from
    the cart (or one page), then SumUp."""
    form = await bind_form(CheckoutForm)
    max_quantity = settings().cart.max_quantity_per_line
    raise_for_errors(form, max_quantity=max_quantity)
    typed = typed_quantities(await request.form, max_quantity=max_quantity)
    db = db_session()
    identity = current_identity_or_empty()
    changes = await set_typed_quantities(db, identity, typed=typed, max_quantity=max_quantity)
    if changes:
        return await cart_updated(changes, page, cart_page_path(form.next.data, page))
    result = await create_order_from_cart(
        db,
        CheckoutRequest(
            identity,
            page,
            form.idempotency_key.data or None,
            shown_total=shown_total(form, for_page=page is not None),
        ),
        settings=settings(),
    )
    await db.commit()  # the order exists before SumUp is called, outside any lock
    await retire_superseded(result.superseded)
    return await go_to_payment(result.order.id)
