"""The cart's forms: parsed and validated by WTForms, CSRF-checked."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from wtforms import Form, IntegerField, StringField
from wtforms.validators import Length, NumberRange, Optional

from services.csrf import CsrfForm
from services.errors import CartError

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


def shown_total(form: CheckoutForm) -> Decimal | None:
    """The total the shopper saw, when the form carries one (`12.50`)."""
    value = (form.shown_total.data or "").strip()
    if not value:
        return None
    if not re.fullmatch(r"[0-9]{1,10}(\.[0-9]{1,2})?", value, flags=re.ASCII):
        raise CartError("The cart total in the form is not a sum of money; please reload.")
    return Decimal(value).quantize(Decimal("0.01"))
