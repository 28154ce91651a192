"""Headless Chromium (Debian's) driven by Playwright, against the app served on `live_url`.

Every test in this folder is marked `browser`. Each test gets a fresh browser context
(its own cookies, so its own shopper) on one browser started for the whole run. A test
that fails leaves a screenshot under `.data/browser-failures/`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from sqlalchemy.ext.asyncio import AsyncSession

from sandbox.demo_data import load_demo_data

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HERE = Path(__file__).resolve().parent
FAILURE_SHOTS = HERE.parent.parent / ".data" / "browser-failures"
# Short waits: every page here is server-rendered and local, so a slow one is a bug,
# and a missing element should fail in seconds, not after Playwright's 30 s default.
ACTION_TIMEOUT_MS = 5_000
NAVIGATION_TIMEOUT_MS = 10_000

expect.set_options(timeout=ACTION_TIMEOUT_MS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/browser/ as `browser`."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, so the `page` fixture knows a test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def require_chromium() -> None:
    """Fail loudly, not skip, when Debian's Chromium is not installed."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's Chromium. Install it with "
            "`sudo apt-get install -y chromium` (CI's .ci/run does), or deselect these tests "
            "with `-m 'not browser'`.",
            pytrace=False,
        )


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium for the whole run (Debian's package, not Playwright's download)."""
    require_chromium()
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield chromium
        await chromium.close()


@pytest.fixture
async def page(
    browser: Browser, live_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[Page]:
    """A new shopper: a fresh context (no cookies) with a page on the live app."""
    context = await browser.new_context(base_url=live_url, locale="en-GB")
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
    tab = await context.new_page()
    yield tab
    report: Any = getattr(request.node, "report_call", None)
    if report is not None and report.failed and not tab.is_closed():
        FAILURE_SHOTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.name)
        await tab.screenshot(path=str(FAILURE_SHOTS / f"{name}.png"), full_page=True)
    await context.close()


@pytest.fixture
async def demo_shop(db: AsyncSession) -> None:
    """The demo pages, products and calendars, committed so the app sees them."""
    await load_demo_data(db)
    await db.commit()
