"""SumUp through its official SDK: one async client per API key, reused.

This module is the one place that talks to SumUp: every SDK call is a function here
(create, get, find by reference, deactivate, refund, get a transaction). It picks the
account an order is paid to, counts every call, and turns the SDK's errors into the
typed `SumUpError`s below, whose messages a shopper can read (the technical detail
goes to the log, never a secret).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
from quart import Quart
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sumup import AsyncSumup
from sumup.errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    ConflictError,
    NotFoundError,
)

from config import Settings
from config.settings import Secret
from models import PageConfig
from services.errors import PaymentProviderError
from services.metrics import SUMUP_CALLS, observe_sumup

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SumUpAccount:
    """Where a payment goes: an API key, its merchant code and a reference prefix."""

    api_key: Secret
    merchant_code: str
    checkout_prefix: str


class SumUpClients:
    """A cache of SDK clients keyed by API key, closed with the app."""

    def __init__(self, *, base_url: str, timeout_seconds: float) -> None:
        self.base_url = base_url
        self.timeout = httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 5.0))
        self._clients: dict[str, AsyncSumup] = {}

    def for_account(self, account: SumUpAccount) -> AsyncSumup:
        """The client of an account, created on first use."""
        key = account.api_key.reveal()
        client = self._clients.get(key)
        if client is None:
            client = AsyncSumup(api_key=key, base_url=self.base_url, timeout=self.timeout)
            self._clients[key] = client
        return client

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


def init_sumup(app: Quart) -> None:
    """Create the client cache with the server and close it with it."""

    @app.before_serving
    async def _open() -> None:
        sumup = app.config["SETTINGS"].sumup
        app.extensions["sumup"] = SumUpClients(
            base_url=sumup.base_url, timeout_seconds=sumup.timeout_seconds
        )

    @app.after_serving
    async def _close() -> None:
        await app.extensions["sumup"].aclose()


def global_account(settings: Settings) -> SumUpAccount | None:
    """The coop's own SumUp account, when configured."""
    sumup = settings.sumup
    if sumup.api_key is None or not sumup.merchant_code:
        return None
    return SumUpAccount(sumup.api_key, sumup.merchant_code, sumup.checkout_prefix)


def page_account(config: PageConfig | None) -> SumUpAccount | None:
    """A page's own SumUp account, when it has one."""
    if config is None or not config.has_own_merchant:
        return None
    assert config.sumup_api_key and config.sumup_merchant_code
    return SumUpAccount(
        Secret(config.sumup_api_key),
        config.sumup_merchant_code,
        config.sumup_checkout_prefix or "PG",
    )


async def account_for_pages(
    session: AsyncSession, settings: Settings, *, page_ids: set[int]
) -> SumUpAccount:
    """The account for a checkout covering `page_ids`: a page's own when it is the only
    page involved, otherwise the coop's."""
    if len(page_ids) == 1:
        config = await session.scalar(select(PageConfig).where(PageConfig.post_id.in_(page_ids)))
        account = page_account(config)
        if account is not None:
            return account
    account = global_account(settings)
    if account is None:
        raise PaymentProviderError(
            "Online payment is not set up for this shop yet. Please contact us.",
            status_code=503,
        )
    return account


async def account_for_merchant(
    session: AsyncSession, settings: Settings, merchant_code: str
) -> SumUpAccount:
    """The account an existing order was sent to, found by its merchant code."""
    config = await session.scalar(
        select(PageConfig).where(PageConfig.sumup_merchant_code == merchant_code).limit(1)
    )
    account = page_account(config) or global_account(settings)
    if account is None or account.merchant_code != merchant_code:
        raise PaymentProviderError(
            "The payment account of this order is no longer configured.", status_code=503
        )
    return account


def to_sumup_amount(amount: Decimal) -> float:
    """The SDK wants major units as a float: the one place money leaves Decimal."""
    return float(amount)


def from_sumup_amount(amount: float | int | str | None) -> Decimal | None:
    """SumUp's amount back into Decimal pence, for comparison with ours."""
    if amount is None:
        return None
    return Decimal(str(amount)).quantize(Decimal("0.01"))


# --- errors ------------------------------------------------------------------------


class SumUpUnavailable(PaymentProviderError):
    """SumUp timed out, could not be reached or answered 5xx: the outcome is unknown."""

    status_code = 503


class SumUpRefused(PaymentProviderError):
    """SumUp answered and said no (4xx other than 404 and 409)."""

    status_code = 502


class SumUpConflict(PaymentProviderError):
    """409: a duplicate reference on create, a processed checkout on deactivate."""

    status_code = 409


class SumUpNotFound(PaymentProviderError):
    """404: SumUp has no such checkout or transaction."""

    status_code = 404


UNAVAILABLE = "SumUp did not answer in time. Your order is saved and not paid; please try again."
TROUBLE = "SumUp is having trouble right now. Your order is saved and not paid; please try again."
REFUSED = (
    "SumUp refused to start this payment. Your order is saved and not paid; "
    "please try again later or contact us."
)


def _typed(error: APIError, operation: str) -> PaymentProviderError:
    if isinstance(error, APIConnectionError):
        return SumUpUnavailable(UNAVAILABLE, status_code=504)
    status = error.status if isinstance(error, APIStatusError) else None
    if isinstance(error, NotFoundError) or status == 404:
        return SumUpNotFound(f"SumUp has no such {operation} object.")
    if isinstance(error, ConflictError) or status == 409:
        body = getattr(error, "body", None)
        code = getattr(body, "error_code", None) or (
            body.get("error_code") if isinstance(body, dict) else None
        )
        return SumUpConflict(str(code or "CONFLICT"))
    if status is None or status >= 500:
        return SumUpUnavailable(TROUBLE, status_code=502)
    return SumUpRefused(REFUSED)


@asynccontextmanager
async def _call(operation: str, **context: object) -> AsyncIterator[None]:
    """Time and count one SDK call; its errors leave as typed `SumUpError`s."""
    try:
        async with observe_sumup(operation):
            yield
    except APIError as error:
        typed = _typed(error, operation)
        SUMUP_CALLS.labels(operation, type(typed).__name__).inc()
        expected = isinstance(typed, SumUpConflict | SumUpNotFound)
        level = logging.INFO if expected else logging.WARNING
        log.log(
            level,
            "SumUp %s: %s (%s)",
            operation,
            type(typed).__name__,
            type(error).__name__,
            extra={"sumup_operation": operation, **context},
        )
        raise typed from None
    SUMUP_CALLS.labels(operation, "ok").inc()


# --- the calls ---------------------------------------------------------------------


@dataclass(frozen=True)
class NewCheckout:
    """What a hosted checkout is created with."""

    reference: str
    amount: Decimal
    currency: str
    description: str
    return_url: str
    redirect_url: str


async def create_checkout(clients: SumUpClients, account: SumUpAccount, wanted: NewCheckout) -> Any:
    """Create a hosted checkout; `SumUpConflict` when the reference exists already."""
    client = clients.for_account(account)
    async with _call("create", reference=wanted.reference):
        return await client.checkouts.create(
            checkout_reference=wanted.reference,
            amount=to_sumup_amount(wanted.amount),
            currency=wanted.currency,
            merchant_code=account.merchant_code,
            description=wanted.description,
            return_url=wanted.return_url,
            redirect_url=wanted.redirect_url,
            hosted_checkout={"enabled": True},
        )


async def _read_twice(read: Callable[[], Awaitable[Any]]) -> Any:
    """A read, tried again once when the pooled connection it went out on was already
    closed by the other side (keep-alive race): nothing changes at SumUp by reading."""
    try:
        return await read()
    except APITimeoutError:
        raise
    except APIConnectionError:
        return await read()


async def get_checkout(clients: SumUpClients, account: SumUpAccount, checkout_id: str) -> Any:
    """The checkout as SumUp has it now."""
    client = clients.for_account(account)
    async with _call("get", checkout_id=checkout_id):
        return await _read_twice(lambda: client.checkouts.get(checkout_id))


async def find_checkout(clients: SumUpClients, account: SumUpAccount, reference: str) -> Any:
    """The account's checkout with this reference, or None."""
    client = clients.for_account(account)
    async with _call("list", reference=reference):
        found = await _read_twice(lambda: client.checkouts.list(checkout_reference=reference))
    return found[0] if found else None


async def deactivate_checkout(
    clients: SumUpClients, account: SumUpAccount, checkout_id: str
) -> None:
    """Retire a checkout; `SumUpConflict` (CHECKOUT_PROCESSED) when it was paid or ended."""
    client = clients.for_account(account)
    async with _call("deactivate", checkout_id=checkout_id):
        await client.checkouts.deactivate(checkout_id)


async def refund_transaction(
    clients: SumUpClients, account: SumUpAccount, transaction_id: str, amount: Decimal
) -> None:
    """Give back `amount` of a transaction (SumUp's refund API, major units)."""
    client = clients.for_account(account)
    async with _call("refund", transaction_id=transaction_id):
        await client.transactions.refund(
            account.merchant_code, transaction_id, amount=to_sumup_amount(amount)
        )


async def refunded_so_far(
    clients: SumUpClients, account: SumUpAccount, transaction_id: str
) -> Decimal:
    """How much of a transaction SumUp has refunded, to settle a refund whose answer
    was lost."""
    client = clients.for_account(account)
    async with _call("get_transaction", transaction_id=transaction_id):
        transaction = await _read_twice(
            lambda: client.transactions.get(account.merchant_code, id=transaction_id)
        )
    # The SDK's TransactionFull has no `refunded_amount`: add up its REFUND events.
    total = Decimal("0.00")
    for event in transaction.transaction_events or []:
        if str(event.event_type) == "REFUND" and str(event.status) != "FAILED":
            total += from_sumup_amount(event.amount) or Decimal("0.00")
    return total
