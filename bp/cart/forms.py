"""The cart's forms: parsed and validated by WTForms, CSRF-checked."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from werkzeug.datastructures import MultiDict
from wtforms import Form, IntegerField, StringField
from wtforms.validators import Length, NumberRange, Optional

from bp.cart.services.update_cart import TypedQuantity
from services.csrf import CsrfForm
from services.errors import CartError, LineQuantityError
from services.input_guard import UnreadableForm

ASCII_INTEGER = re.compile(r"\s*[-+]?[0-9]{1,18}\s*")


class AsciiIntegerField(IntegerField):
    """A whole number in ASCII digits: `int()` would also take "١٢", "1_0" or "²"."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        if valuelist and not (
            isinstance(valuelist[0], str) and ASCII_INTEGER.fullmatch(valuelist[0])
        ):
            self.data = None
            raise ValueError(self.gettext("Not a valid integer value."))
        super().process_formdata(valuelist)


class _LineForm(CsrfForm):
    market_place = AsciiIntegerField(validators=[Optional()], render_kw={"min": 1}, default=None)
    next = StringField(validators=[Optional(), Length(max=2048)])


class AddForm(_LineForm):
    quantity = AsciiIntegerField(default=1, validators=[Optional(), NumberRange(min=1)])


class UpdateForm(_LineForm):
    quantity = AsciiIntegerField(validators=[NumberRange(min=0)])


class RemoveForm(_LineForm):
    pass


class PlainForm(CsrfForm):
    """A form whose only field is its CSRF token (and an optional `next`)."""

    next = StringField(validators=[Optional(), Length(max=2048)])


FIELD_MESSAGES = {
    "quantity": "Quantity must be a whole number",
    "market_place": "The market must be given as a number",
}


def raise_for_errors(form: Form, *, max_quantity: int) -> None:
    """Turn a form's first error into a `CartError` with a sentence a shopper reads."""
    for name in form.errors:
        if name == "quantity":
            low = 0 if isinstance(form, UpdateForm) else 1
            raise CartError(f"Quantity must be a whole number from {low} to {max_quantity}.")
        raise CartError(f"{FIELD_MESSAGES.get(name, 'The form is not filled in right')}.")


def quantity_of(form: AddForm | UpdateForm) -> int:
    """The quantity asked for (1 when an add form leaves it out)."""
    value = form.quantity.data
    return 1 if value is None else int(value)


class CheckoutForm(CsrfForm):
    """Carries the idempotency key rendered with the cart, so a resubmit is recognised."""

    idempotency_key = StringField(validators=[Optional(), Length(min=8, max=64)])
    # The total the cart page showed next to this button: checkout charges only that.
    shown_total = StringField(validators=[Optional(), Length(max=20)])
    # A page's subtotal, sent by that page's own "Pay for … only" button of the cart form.
    page_total = StringField(validators=[Optional(), Length(max=20)])
    # The cart page the form is on: where to come back to when typed quantities changed it.
    next = StringField(validators=[Optional(), Length(max=2048)])


class QuantitiesForm(CsrfForm):
    """The cart form sent by an Update button: every line's quantity box."""

    next = StringField(validators=[Optional(), Length(max=2048)])
    # The product whose Update button was pressed (none for Enter in a box).
    update = AsciiIntegerField(validators=[Optional()], default=None)


def shown_total(form: CheckoutForm, *, for_page: bool = False) -> Decimal | None:
    """The total the shopper saw beside the button they pressed, when the form carries
    one (`12.50`): a page's own button carries that page's subtotal."""
    value = ((form.page_total.data if for_page else None) or form.shown_total.data or "").strip()
    if not value:
        return None
    if not re.fullmatch(r"[0-9]{1,10}(\.[0-9]{1,2})?", value, flags=re.ASCII):
        raise CartError("The cart total in the form is not a sum of money; please reload.")
    return Decimal(value).quantize(Decimal("0.01"))


# A line of the cart form: `<product id>:<market place id>:<quantity the page showed>`.
LINE_KEY = re.compile(r"([0-9]{1,10}):([0-9]{1,10}):([0-9]{1,10})", flags=re.ASCII)
MAX_FORM_LINES = 500


def typed_quantities(posted: MultiDict[str, str], *, max_quantity: int) -> list[TypedQuantity]:
    """The cart form's quantity boxes, each with the line it belongs to (none from a form
    that has no boxes). A box that is empty or below 0 is refused beside its line; a
    form no page of ours sends (unpaired or unreadable fields) is refused whole."""
    keys, values = posted.getlist("line"), posted.getlist("quantity")
    if len(keys) != len(values) or len(keys) > MAX_FORM_LINES:
        raise UnreadableForm("The form does not match any form of this shop.")
    typed = []
    for key, value in zip(keys, values, strict=True):
        line = LINE_KEY.fullmatch(key)
        if line is None:
            raise UnreadableForm("The form does not match any form of this shop.")
        product_id, market_place_id, shown = (int(part) for part in line.groups())
        text = value.strip()
        if text and not ASCII_INTEGER.fullmatch(text):
            raise UnreadableForm("Quantities must be whole numbers written in digits 0 to 9.")
        if not text or int(text) < 0:
            raise LineQuantityError(
                f"Quantity must be a whole number from 0 to {max_quantity}.",
                product_id=product_id,
            )
        typed.append(TypedQuantity(product_id, market_place_id, shown, int(text)))
    return typed
