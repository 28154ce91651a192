"""Cart-wide actions: add, update, remove a line, take a booking out."""

from __future__ import annotations

from typing import Any

from quart import Blueprint

from bp.cart.forms import AddForm, PlainForm, RemoveForm, UpdateForm, quantity_of, raise_for_errors
from bp.cart.responses import after_write, settings, writing_identity
from bp.cart.services.calendar_cart import remove_entry_from_cart
from bp.cart.services.update_cart import add_to_cart, remove_from_cart, set_quantity
from services.db import db_session
from services.web import bind_form

bp = Blueprint("cart_global", __name__, url_prefix="/cart")


@bp.post("/add/<int:product_id>/")
async def add(product_id: int) -> Any:
    """Put a product in the cart (quantity 1 unless the form says more)."""
    form = await bind_form(AddForm)
    limit = settings().cart.max_quantity_per_line
    raise_for_errors(form, max_quantity=limit)
    change = await add_to_cart(
        db_session(),
        writing_identity(),
        product_id=product_id,
        quantity=quantity_of(form),
        market_place_id=form.market_place.data,
        max_quantity=limit,
    )
    return await after_write(f"{change.title}: {change.quantity} in your cart.", form.next.data)


@bp.post("/update/<int:product_id>/")
async def update(product_id: int) -> Any:
    """Set how many of a product the cart holds; 0 takes it out."""
    form = await bind_form(UpdateForm)
    limit = settings().cart.max_quantity_per_line
    raise_for_errors(form, max_quantity=limit)
    change = await set_quantity(
        db_session(),
        writing_identity(),
        product_id=product_id,
        quantity=quantity_of(form),
        market_place_id=form.market_place.data,
        max_quantity=limit,
    )
    message = (
        f"{change.title}: {change.quantity} in your cart."
        if change.quantity
        else f"{change.title} was taken out of your cart."
    )
    return await after_write(message, form.next.data)


@bp.post("/remove/<int:product_id>/")
async def remove(product_id: int) -> Any:
    """Take a product out of the cart."""
    form = await bind_form(RemoveForm)
    raise_for_errors(form, max_quantity=settings().cart.max_quantity_per_line)
    change = await remove_from_cart(
        db_session(),
        writing_identity(),
        product_id=product_id,
        market_place_id=form.market_place.data,
    )
    return await after_write(f"{change.title} was taken out of your cart.", form.next.data)


@bp.post("/entries/<int:entry_id>/remove/")
async def remove_entry(entry_id: int) -> Any:
    """Take a pending booking out of the cart."""
    form = await bind_form(PlainForm)
    name = await remove_entry_from_cart(db_session(), writing_identity(), entry_id=entry_id)
    return await after_write(f"{name} was taken out of your cart.", form.next.data)
