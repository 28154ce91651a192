"""SumUp through its official SDK: one async client per API key, reused.

This module is the one place that talks to SumUp. It picks the account an order is
paid to, and turns the SDK's errors into `PaymentProviderError`s with a message a
shopper can read (the technical detail goes to the log, never a secret).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

import httpx
from quart import Quart
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sumup import AsyncSumup

from config import Settings
from config.settings import Secret
from models import PageConfig
from services.errors import PaymentProviderError

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
