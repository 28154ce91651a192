"""Typed errors the services raise; app-level handlers turn each kind into an answer."""

from __future__ import annotations


class ServiceError(Exception):
    """An error with a message fit for the shopper and an HTTP status."""

    status_code = 400
    title = "Something is not right"

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code


class NotFoundError(ServiceError):
    """The thing asked for does not exist, or is not the asker's."""

    status_code = 404
    title = "Not found"


class CartError(ServiceError):
    """The cart cannot do what was asked (bad quantity, unknown product, …)."""

    status_code = 422
    title = "Your cart could not be changed"


class CheckoutError(ServiceError):
    """The cart cannot be turned into an order (empty, mixed currencies, …)."""

    status_code = 409
    title = "Checkout could not start"


class PaymentProviderError(ServiceError):
    """SumUp failed, timed out or refused; the order stays unpaid."""

    status_code = 502
    title = "The payment provider did not answer"


class LineQuantityError(CartError):
    """A quantity typed for one cart line that the cart cannot take; answered beside it."""

    def __init__(
        self,
        message: str,
        *,
        product_id: int,
        offer_set: int | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.product_id = product_id
        # What the shopper can have instead (the line's maximum), offered as a button.
        self.offer_set = offer_set
