"""The cart's forms: parsed and validated by WTForms, CSRF-checked."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from werkzeug.datastructures import MultiDict
from wtforms import Form, IntegerField, StringField
from wtforms.validators import Length, Optional

from bp.cart.services.update_cart import TypedQuantity
from services.csrf import CsrfForm, checked_form
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


NEXT_MAX_LENGTH = 2048
LineKind = Literal["add", "update", "remove"]


@dataclass(frozen=True)
class LineForm:
    """A posted line form (add, update, remove), read as WTForms would bind and validate
    it (an optional market id and `next`; add's optional quantity of at least 1,
    update's required one of at least 0) without building a `Form` for it: binding one
    cost about a tenth of a line write (bench/README.md). `errors` names the fields
    refused, in the form's order, as `Form.errors` would.
    """

    kind: LineKind
    market_place: int | None
    next: str | None
    quantity: int | None
    errors: tuple[str, ...]

    @classmethod
    def parse(cls, posted: MultiDict[str, str], kind: LineKind) -> LineForm:
        """Bind `posted` (its CSRF token is checked by `services.csrf.checked_form`)."""
        errors = []
        market_place, bad_market = _optional_integer(posted, "market_place", None)
        if bad_market:
            errors.append("market_place")
        next_url = posted.get("next")
        if next_url is not None and next_url.strip() and len(next_url) > NEXT_MAX_LENGTH:
            errors.append("next")
        quantity: int | None = None
        if kind == "add":
            quantity, bad = _optional_integer(posted, "quantity", 1)
            if bad or (quantity is not None and quantity < 1):
                errors.append("quantity")
        elif kind == "update":
            values = posted.getlist("quantity")
            quantity = _ascii_integer(values[0]) if values else None
            if quantity is None or quantity < 0:
                errors.append("quantity")
        return cls(kind, market_place, next_url, quantity, tuple(errors))


def _ascii_integer(value: Any) -> int | None:
    return int(value) if isinstance(value, str) and ASCII_INTEGER.fullmatch(value) else None


def _optional_integer(
    posted: MultiDict[str, str], name: str, default: int | None
) -> tuple[int | None, bool]:
    """An `AsciiIntegerField` with `Optional()`: (its value, whether it is refused). A
    field left out takes `default`; one left blank is None and not refused."""
    values = posted.getlist(name)
    if not values:
        return default, False
    value = _ascii_integer(values[0])
    blank = isinstance(values[0], str) and not values[0].strip()
    return value, value is None and not blank


async def bind_line_form(kind: LineKind) -> LineForm:
    """The posted line form, CSRF checked (`CsrfError`), hostile input refused."""
    return LineForm.parse(await checked_form(), kind)


class PlainForm(CsrfForm):
    """A form whose only field is its CSRF token (and an optional `next`)."""

    next = StringField(validators=[Optional(), Length(max=2048)])


FIELD_MESSAGES = {
    "quantity": "Quantity must be a whole number",
    "market_place": "The market must be given as a number",
}


def raise_for_errors(form: Form | LineForm, *, max_quantity: int) -> None:
    """Turn a form's first error into a `CartError` with a sentence a shopper reads."""
    for name in form.errors:
        if name == "quantity":
            low = 0 if isinstance(form, LineForm) and form.kind == "update" else 1
            raise CartError(f"Quantity must be a whole number from {low} to {max_quantity}.")
        raise CartError(f"{FIELD_MESSAGES.get(name, 'The form is not filled in right')}.")


def quantity_of(form: LineForm) -> int:
    """The quantity asked for (1 when an add form leaves it out or blank)."""
    return 1 if form.quantity is None else form.quantity


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
