"""Headless Chromium (Debian's) driven by Playwright, against the app served on `live_url`.

Every test in this folder is marked `browser`. A shopper is a fresh browser context
(its own cookies) at one of two sizes, desktop 1280×800 or phone 390×844, with
JavaScript on or off; `audit(page, "state")` runs axe-core on what the page shows and
fails on any critical or serious finding, and keeps a screenshot of the state under
`.data/browser-shots/` (git-ignored: CI's artefacts). A test that fails leaves a
screenshot under `.data/browser-failures/`.

The browser tests need /usr/bin/chromium (Debian's `chromium`) and axe-core (npm,
installed by `make test` under `.data/node`). When either is missing they are
skipped with the reason, except in CI (`CI=true`), where they fail.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect
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
ROOT = HERE.parent.parent
AXE_VERSION = "4.14.1"  # keep in step with the Makefile
AXE = ROOT / ".data" / "node" / "node_modules" / "axe-core" / "axe.min.js"
FAILURE_SHOTS = ROOT / ".data" / "browser-failures"
STATE_SHOTS = ROOT / ".data" / "browser-shots"
# Short waits: every page here is server-rendered and local, so a slow one is a bug,
# and a missing element should fail in seconds, not after Playwright's 30 s default.
ACTION_TIMEOUT_MS = 5_000
NAVIGATION_TIMEOUT_MS = 10_000
# axe's impacts that fail a page state (moderate and minor findings are reported only).
BLOCKING_IMPACTS = ("critical", "serious")

expect.set_options(timeout=ACTION_TIMEOUT_MS)


@dataclass(frozen=True)
class Device:
    name: str
    width: int
    height: int
    mobile: bool


DESKTOP = Device("desktop", 1280, 800, mobile=False)
PHONE = Device("phone", 390, 844, mobile=True)


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


def _installed_axe_version() -> str | None:
    manifest = AXE.parent / "package.json"
    if not manifest.exists():
        return None
    version: str | None = json.loads(manifest.read_text(encoding="utf-8")).get("version")
    return version


def require_browser_tools() -> None:
    """Skip (fail in CI) when Debian's Chromium or axe-core is not installed."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (Debian's chromium: `apt-get install -y chromium`)")
    if not AXE.exists() or _installed_axe_version() != AXE_VERSION:
        missing.append(f"axe-core {AXE_VERSION} (`make browser-tools` installs it in .data/node)")
    if not missing:
        return
    reason = "browser tests need " + " and ".join(missing)
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason + "; deselect them with -m 'not browser'")


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium for the whole run (Debian's package, not Playwright's download)."""
    require_browser_tools()
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield chromium
        await chromium.close()


@pytest.fixture(scope="session")
def axe_source() -> str:
    return AXE.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
async def auditor(browser: Browser, axe_source: str) -> AsyncIterator[Page]:
    """A JavaScript page that audits snapshots of pages whose own scripts may not run."""
    context = await browser.new_context()
    tab = await context.new_page()
    # The snapshot's own scripts stay off: it is audited as the shopper's browser showed it.
    await tab.route(re.compile(r".*\.js(\?.*)?$"), lambda route: route.abort())
    yield tab
    await context.close()


async def _new_context(browser: Browser, live_url: str, device: Device, js: bool) -> BrowserContext:
    context = await browser.new_context(
        base_url=live_url,
        locale="en-GB",
        viewport={"width": device.width, "height": device.height},
        is_mobile=device.mobile,
        has_touch=device.mobile,
        java_script_enabled=js,
    )
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
    return context


def _shot_name(node_name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", node_name).strip("_")


@dataclass
class Shopper:
    """One shopper's browser: the page, its size and whether it runs JavaScript."""

    page: Page
    device: Device
    js: bool
    audit: Callable[[str], Awaitable[None]]


Audit = Callable[[Page, str], Awaitable[None]]


def axe_report(violations: list[dict[str, Any]]) -> str:
    """axe's findings, one line per rule with the elements it names."""
    lines = []
    for violation in violations:
        targets = [", ".join(node["target"]) for node in violation["nodes"][:5]]
        lines.append(f"{violation['impact']}: {violation['id']} ({violation['help']}) on {targets}")
    return "\n".join(lines)


async def run_axe(page: Page, *, js: bool, auditor: Page, axe_source: str) -> list[dict[str, Any]]:
    """axe-core's findings on the page as it stands (a snapshot when its JavaScript is off)."""
    target = page
    if not js:
        # axe cannot run where scripts are off: audit the same DOM and CSS in a page that can.
        html = await page.content()
        base = f'<base href="{page.url}">'
        html = re.sub(r"<head>", "<head>" + base, html, count=1)
        await auditor.set_viewport_size(page.viewport_size or {"width": 1280, "height": 800})
        await auditor.set_content(html, wait_until="load")
        target = auditor
    await target.evaluate(axe_source)
    result = await target.evaluate(
        """() => axe.run(document, {resultTypes: ["violations"]})
                 .then(r => JSON.stringify(r.violations))"""
    )
    violations: list[dict[str, Any]] = json.loads(result)
    return violations


@pytest.fixture(params=[DESKTOP, PHONE], ids=lambda d: d.name)
def device(request: pytest.FixtureRequest) -> Device:
    value = request.param
    return value


@pytest.fixture(params=[True, False], ids=["js", "no-js"])
def js(request: pytest.FixtureRequest) -> bool:
    value = request.param
    return value


ShopperFactory = Callable[[Device, bool], Awaitable[Shopper]]


@pytest.fixture
async def new_shopper(
    browser: Browser,
    live_url: str,
    request: pytest.FixtureRequest,
    auditor: Page,
    axe_source: str,
) -> AsyncIterator[ShopperFactory]:
    """`await new_shopper(PHONE, js)`: a shopper of their own (fresh cookies) at that size."""
    opened: list[tuple[BrowserContext, Page]] = []
    shots = STATE_SHOTS / _shot_name(request.node.name)
    counter = [0]

    async def open_shopper(device: Device, js: bool) -> Shopper:
        context = await _new_context(browser, live_url, device, js)
        tab = await context.new_page()
        opened.append((context, tab))

        async def audit(state: str) -> None:
            counter[0] += 1
            shots.mkdir(parents=True, exist_ok=True)
            name = f"{counter[0]:02d}-{_shot_name(state)}.png"
            await tab.screenshot(path=str(shots / name), full_page=True)
            violations = await run_axe(tab, js=js, auditor=auditor, axe_source=axe_source)
            blocking = [v for v in violations if v["impact"] in BLOCKING_IMPACTS]
            assert not blocking, f"axe on {state} ({tab.url}):\n{axe_report(blocking)}"

        return Shopper(tab, device, js, audit)

    yield open_shopper
    report: Any = getattr(request.node, "report_call", None)
    for number, (context, tab) in enumerate(opened):
        if report is not None and report.failed and not tab.is_closed():
            FAILURE_SHOTS.mkdir(parents=True, exist_ok=True)
            name = f"{_shot_name(request.node.name)}-{number}.png"
            await tab.screenshot(path=str(FAILURE_SHOTS / name), full_page=True)
        await context.close()


@pytest.fixture
async def shopper(new_shopper: ShopperFactory, device: Device, js: bool) -> Shopper:
    """A new shopper at each size, with and without JavaScript (four runs of a test)."""
    return await new_shopper(device, js)


@pytest.fixture
async def js_shopper(new_shopper: ShopperFactory, device: Device) -> Shopper:
    """A new shopper with JavaScript, at each size."""
    return await new_shopper(device, True)


@pytest.fixture
async def phone_shopper(new_shopper: ShopperFactory, js: bool) -> Shopper:
    """A new shopper on a phone, with and without JavaScript."""
    return await new_shopper(PHONE, js)


@pytest.fixture
async def desktop_shopper(new_shopper: ShopperFactory, js: bool) -> Shopper:
    """A new shopper on a desktop, with and without JavaScript."""
    return await new_shopper(DESKTOP, js)


@pytest.fixture
async def demo_shop(db: AsyncSession) -> None:
    """The demo pages, products and calendars, committed so the app sees them."""
    await load_demo_data(db)
    await db.commit()
