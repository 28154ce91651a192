"""Development stand-ins for the sibling apps: login (blog) and a shop (market, events).

Registered only when `APP_ENV` is development or test; in production these paths 404.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from quart import Blueprint, flash, redirect, render_template, session, url_for
from sqlalchemy import select
from werkzeug.wrappers import Response as WerkzeugResponse
from wtforms import StringField
from wtforms.validators import InputRequired, Length

from bp.cart.forms import PlainForm
from bp.cart.responses import after_write, settings, writing_identity
from bp.cart.services.calendar_cart import add_entry_to_cart
from bp.cart.services.identity import USER_KEY
from models import Calendar, MarketPlace, Post, Product, User
from sandbox.demo_data import DEMO_SLOTS
from services.csrf import CsrfForm, bind_form
from services.db import db_session
from services.errors import NotFoundError, ServiceError
from services.rate_limits import rate_limited
from services.sessions import RedisSession

bp = Blueprint("dev", __name__, url_prefix="/dev")


class LoginForm(CsrfForm):
    email = StringField(validators=[InputRequired(), Length(max=255)])


@bp.get("/login")
async def login_page() -> str:
    """A stand-in for the blog app's sign-in page."""
    users = list(await db_session().scalars(select(User).order_by(User.id)))
    return await render_template("dev/login.html", users=users)


@bp.post("/login")
@rate_limited("write")
async def login() -> WerkzeugResponse:
    """Sign in as an existing user: put `uid` in the shared session, as the blog app does."""
    form = await bind_form(LoginForm)
    if not form.validate():
        raise ServiceError("Please give the email address of a user.", status_code=422)
    user = await db_session().scalar(select(User).where(User.email == form.email.data))
    if user is None:
        raise ServiceError("There is no user with that email address.", status_code=422)
    if isinstance(session, RedisSession):
        session.regenerate()
    session[USER_KEY] = user.id
    await flash(f"Signed in as {user.email}.", "success")
    return redirect(url_for("cart_overview.overview"), 303)


@bp.post("/logout")
@rate_limited("write")
async def logout() -> WerkzeugResponse:
    """Sign out: the whole session goes, as with the blog app."""
    await bind_form(PlainForm)
    session.clear()
    return redirect(url_for("dev.shop"), 303)


@bp.get("/shop")
async def shop() -> str:
    """Demo products with add-to-cart forms, and bookable slots."""
    db = db_session()
    rows = await db.execute(
        select(Product, MarketPlace, Post)
        .join(MarketPlace, MarketPlace.id == Product.market_place_id)
        .join(Post, Post.id == MarketPlace.post_id)
        .where(Product.deleted_at.is_(None))
        .order_by(Post.nav_order, Product.id)
    )
    calendars = {c.slug: c for c in await db.scalars(select(Calendar))}
    slots = [
        (slot, calendars[slot.calendar_slug])
        for slot in DEMO_SLOTS
        if slot.calendar_slug in calendars
    ]
    return await render_template(
        "dev/shop.html", products=list(rows), slots=slots, signed_in=session.get(USER_KEY)
    )


def _slot_start(days_ahead: int) -> datetime:
    day = datetime.now(UTC).date() + timedelta(days=days_ahead)
    return datetime.combine(day, time(18, 0), tzinfo=UTC)


@bp.post("/shop/book/<slot_key>/")
@rate_limited("write")
async def book(slot_key: str) -> Any:
    """Book a demo slot: a pending calendar entry in the cart."""
    form = await bind_form(PlainForm)
    slot = next((s for s in DEMO_SLOTS if s.key == slot_key), None)
    if slot is None:
        raise NotFoundError("There is no such slot.")
    db = db_session()
    calendar = await db.scalar(select(Calendar).where(Calendar.slug == slot.calendar_slug))
    if calendar is None:
        raise NotFoundError("There is no such slot.")
    start = _slot_start(slot.days_ahead)
    await add_entry_to_cart(
        db,
        writing_identity(),
        calendar_id=calendar.id,
        name=slot.name,
        start_at=start,
        end_at=start + timedelta(hours=slot.hours),
        cost=slot.cost,
        currency=settings().cart.currency,
    )
    return await after_write(f"{slot.name} was added to your cart.", form.next.data)
