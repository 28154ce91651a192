"""Fixtures of the SumUp sandbox tests: the sandbox in its own process and its clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sumup import AsyncSumup

from sandbox.sumup_sandbox import RunningSandbox, SandboxControl, running_sandbox
from tests.sandbox.factories import COOP_KEY, FARM_KEY, WebhookReceiver


@pytest.fixture(autouse=True)
def clean_state() -> None:
    """Replaces any project-wide database clean-up: these tests touch no database."""


@pytest.fixture(scope="module")
def sandbox() -> Iterator[RunningSandbox]:
    """The sandbox in its own process, as the cart's tests and `make run` use it."""
    with running_sandbox() as running:
        yield running


@pytest.fixture(scope="module")
async def control(sandbox: RunningSandbox) -> AsyncIterator[SandboxControl]:
    """The sandbox's control API."""
    async with SandboxControl(sandbox.base_url) as client:
        yield client


@pytest.fixture(autouse=True)
async def fresh_sandbox(control: SandboxControl) -> None:
    """Every test starts with no checkouts and normal behaviour."""
    await control.reset()


@pytest.fixture
async def coop(sandbox: RunningSandbox) -> AsyncIterator[AsyncSumup]:
    """SumUp's SDK with the co-op's sandbox key."""
    async with AsyncSumup(api_key=COOP_KEY, base_url=sandbox.base_url) as client:
        yield client


@pytest.fixture
async def farm(sandbox: RunningSandbox) -> AsyncIterator[AsyncSumup]:
    """SumUp's SDK with the farm's sandbox key."""
    async with AsyncSumup(api_key=FARM_KEY, base_url=sandbox.base_url) as client:
        yield client


@pytest.fixture
async def web(sandbox: RunningSandbox) -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client: the shopper's browser, or a caller the SDK would not allow."""
    async with httpx.AsyncClient(base_url=sandbox.base_url, timeout=10) as client:
        yield client


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A return_url that records the webhooks the sandbox delivers."""
    with WebhookReceiver() as running:
        yield running
