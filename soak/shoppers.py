"""Simulated shoppers, and the admin who refunds, driving the site over HTTP.

Each shopper is one browser: its own httpx client and cookie jar, a home instance,
pages read for their CSRF tokens, ids and forms as a person's browser would. It adds,
changes and removes lines, books slots, checks out (the whole cart or one page),
pays or declines on the sandbox's hosted page or through its control API (a payer
SumUp's page sends back), sometimes leaves a hosted page open to pay it later from
the old tab, pays again, cancels, rechecks, and some sign in part way (a login
merge). Every step is bounded; the run ends at a deadline or a request budget.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx

from sandbox.demo_data import DEMO_SLOTS
from sandbox.sumup_sandbox import SandboxControl
from soak.traffic import Site, Traffic

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CHECKOUT_FORM = re.compile(
    r'<form method="post" action="(/cart/(?:[a-z0-9-]+/)?checkout/)"[^>]*>\s*'
    r'<input type="hidden" name="csrf_token" value="[^"]+">\s*'
    r'<input type="hidden" name="idempotency_key" value="([^"]+)">\s*'
    r'<input type="hidden" name="shown_total" value="([^"]*)">'
)
# A page's own "Pay for … only" button of the cart form: its action and subtotal.
PAGE_BUTTON = re.compile(
    r'formaction="(/cart/[a-z0-9-]+/checkout/)" name="page_total" value="([^"]*)"'
)
ENTRY = re.compile(r'data-testid="cart-entry" data-entry-id="(\d+)"')
ORDER_LINK = re.compile(r"/(?:orders|cart/checkout/return)/(\d+)/")
REFERENCE = re.compile(r"<dt>Reference</dt><dd>[A-Z]+-(\d+)-\d+-[0-9a-f]+</dd>")
JSON = {"Accept": "application/json"}

# Idle connections are dropped well before hypercorn closes them (5 s): reusing one the
# server is closing at that moment loses the request (httpx.ReadError), which the
# report would count as a dropped answer of the app's (seen once, an admin refund).
KEEP_ALIVE = httpx.Limits(keepalive_expiry=2.0)


@dataclass(frozen=True)
class Product:
    id: int
    market_place_id: int


@dataclass
class World:
    """What every actor shares: the site, the sandbox, the catalogue, the clock."""

    site: Site
    traffic: Traffic
    sandbox_url: str
    control: SandboxControl
    products: list[Product]
    page_slugs: list[str]
    user_emails: list[str]
    internal_token: str
    deadline: float
    request_budget: int
    actions: Counter[str] = field(default_factory=Counter)

    def over(self) -> bool:
        """Whether the run is over (time or request budget spent)."""
        return (
            self.traffic.now() >= self.deadline or len(self.traffic.answers) >= self.request_budget
        )


class Shopper:
    """One browser on the site."""

    def __init__(self, world: World, number: int, *, signs_in: bool, seed: int) -> None:
        self.world = world
        self.name = f"shopper-{number}"
        self.home = number % 2
        self.rng = random.Random(seed)
        self.email = world.user_emails[number % len(world.user_emails)] if signs_in else None
        self.signed_in = False
        self.token: str | None = None
        self.lines: set[Product] = set()
        self.entries: set[int] = set()
        self.orders: set[int] = set()
        self.open_tabs: list[str] = []  # hosted checkouts left open, to pay later
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(20.0), limits=KEEP_ALIVE, follow_redirects=False
        )

    # --- plumbing ---------------------------------------------------------------------

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        response = await self.world.site.request(
            self.client, self.name, self.home, method, path, **kwargs
        )
        if response is not None and "text/html" in response.headers.get("content-type", ""):
            self._read_page(response.text)
        return response

    def _read_page(self, page: str) -> None:
        if match := CSRF.search(page):
            self.token = match.group(1)
        self.orders.update(int(found) for found in ORDER_LINK.findall(page))

    async def _form(
        self, path: str, data: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response | None:
        if self.token is None:
            await self._send("GET", "/dev/shop")
            if self.token is None:
                return None
        return await self._send(
            "POST", path, data={"csrf_token": self.token, **(data or {})}, **kwargs
        )

    async def _follow(self, response: httpx.Response | None) -> httpx.Response | None:
        """Follow a 303 within the site, as a browser does (one hop)."""
        if response is None or response.status_code not in (302, 303):
            return response
        location = response.headers.get("location", "")
        parts = urlsplit(location)
        if parts.netloc and location.startswith(self.world.sandbox_url):
            return response
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        return await self._send("GET", path)

    async def _pause(self) -> None:
        await asyncio.sleep(self.rng.uniform(0.02, 0.25))

    # --- the session -------------------------------------------------------------------

    async def run(self) -> None:
        """Shop until the run is over."""
        try:
            await self._send("GET", "/dev/shop")
            if self.email and self.rng.random() < 0.5:
                await self.sign_in()
            while not self.world.over():
                await self.step()
                await self._pause()
        finally:
            await self.client.aclose()

    async def step(self) -> None:
        """One thing a shopper does, chosen by weight."""
        choices: list[tuple[str, int]] = [
            ("add", 30),
            ("book", 6),
            ("update", 8 if self.lines else 0),
            ("remove", 3 if self.lines else 0),
            ("view cart", 6),
            ("remove booking", 3 if self.entries else 0),
            ("checkout", 14),
            ("order page", 10 if self.orders else 0),
            ("order list", 3),
            ("summary api", 4),
            ("old tab pays", 3 if self.open_tabs else 0),
            ("sign in", 4 if self.email and not self.signed_in else 0),
            ("sign out", 1 if self.signed_in else 0),
        ]
        names = [name for name, weight in choices if weight]
        weights = [weight for _, weight in choices if weight]
        action = self.rng.choices(names, weights)[0]
        self.world.actions[action] += 1
        await getattr(self, "do_" + action.replace(" ", "_"))()

    async def sign_in(self) -> None:
        assert self.email is not None
        await self._send("GET", "/dev/login")
        response = await self._follow(await self._form("/dev/login", {"email": self.email}))
        if response is not None and response.status_code == 200:
            self.signed_in = True

    async def do_sign_in(self) -> None:
        await self.sign_in()

    async def do_sign_out(self) -> None:
        response = await self._form("/dev/logout")
        if response is not None and response.status_code == 303:
            self.signed_in = False
            self.lines.clear()
            self.entries.clear()
            self.orders.clear()

    async def do_add(self) -> None:
        product = self.rng.choice(self.world.products)
        data = {
            "quantity": str(self.rng.randint(1, 3)),
            "market_place": str(product.market_place_id),
        }
        as_json = self.rng.random() < 0.5
        response = await self._form(
            f"/cart/add/{product.id}/", data, headers=JSON if as_json else None
        )
        if response is not None and response.status_code in (200, 303):
            self.lines.add(product)
            if not as_json:
                await self._follow(response)

    async def do_book(self) -> None:
        slot = self.rng.choice(DEMO_SLOTS)
        await self._follow(await self._form(f"/dev/shop/book/{slot.key}/"))

    async def do_update(self) -> None:
        product = self.rng.choice(sorted(self.lines, key=lambda p: p.id))
        quantity = self.rng.randint(0, 4)
        data = {"quantity": str(quantity), "market_place": str(product.market_place_id)}
        response = await self._form(f"/cart/update/{product.id}/", data, headers=JSON)
        if response is not None and response.status_code == 200 and quantity == 0:
            self.lines.discard(product)

    async def do_remove(self) -> None:
        product = self.rng.choice(sorted(self.lines, key=lambda p: p.id))
        data = {"market_place": str(product.market_place_id)}
        response = await self._form(f"/cart/remove/{product.id}/", data)
        if response is not None and response.status_code in (303, 404, 422):
            self.lines.discard(product)

    async def do_view_cart(self) -> None:
        response = await self._send("GET", "/cart/")
        if response is not None and response.status_code == 200:
            self.entries = {int(found) for found in ENTRY.findall(response.text)}

    async def do_remove_booking(self) -> None:
        entry = self.rng.choice(sorted(self.entries))
        self.entries.discard(entry)
        await self._follow(await self._form(f"/cart/entries/{entry}/remove/"))

    async def do_order_list(self) -> None:
        await self._send("GET", "/orders/")

    async def do_summary_api(self) -> None:
        headers = {"Authorization": f"Bearer {self.world.internal_token}"}
        if self.rng.random() < 0.3:
            page = self.rng.choice(self.world.page_slugs)
            await self._send("GET", f"/internal/cart/summary?page={page}", headers=headers)
        else:
            await self._send("GET", "/internal/cart/summary", headers=headers)

    # --- checkout and payment -----------------------------------------------------------

    async def do_checkout(self) -> None:
        """Read the cart's checkout forms, submit one (sometimes twice), then pay."""
        page = await self._send("GET", "/cart/")
        if page is None or page.status_code != 200:
            return
        self.entries = {int(found) for found in ENTRY.findall(page.text)}
        forms = CHECKOUT_FORM.findall(page.text)
        if not forms:
            return
        # The cart form's Checkout, or one of its pages' own buttons (the same form).
        choices = [(action, key, {"shown_total": shown}) for action, key, shown in forms]
        _, key, shown_total = choices[0]
        choices += [
            (action, key, {**shown_total, "page_total": subtotal})
            for action, subtotal in PAGE_BUTTON.findall(page.text)
        ]
        action, key, totals = self.rng.choice(choices)
        data = {"idempotency_key": key, **totals}
        if self.rng.random() < 0.1:
            # A double click: the same form twice at once.
            first, second = await asyncio.gather(self._form(action, data), self._form(action, data))
            response = first or second
        else:
            response = await self._form(action, data)
        await self._after_checkout(response)

    async def _after_checkout(self, response: httpx.Response | None) -> None:
        if response is None:
            return
        location = response.headers.get("location", "")
        if response.status_code == 303 and location.startswith(self.world.sandbox_url):
            await self._at_sumup(location)
        elif response.status_code in (302, 303):
            await self._follow(response)
        elif response.status_code >= 500 and self.rng.random() < 0.5:
            # "We could not start your payment … Try again".
            pay = re.search(r'action="/orders/(\d+)/pay/"', response.text)
            if pay:
                await self._pay_again(int(pay.group(1)))

    async def _at_sumup(self, hosted_url: str) -> None:
        """On SumUp's hosted page: pay, decline, or leave it open for later."""
        checkout_id = hosted_url.rstrip("/").rsplit("/", 1)[-1]
        page = await self._sandbox("GET", f"/pay/{checkout_id}")
        if page is None or page.status_code != 200:
            return
        reference = REFERENCE.search(page.text)
        order_id = int(reference.group(1)) if reference else None
        if order_id is not None:
            self.orders.add(order_id)
        choice = self.rng.choices(
            ["pay", "decline", "pay by api", "decline by api", "leave open"], [40, 12, 15, 5, 18]
        )[0]
        self.world.actions[f"at SumUp: {choice}"] += 1
        if choice == "leave open":
            self.open_tabs.append(checkout_id)
            return
        if choice in ("pay", "decline"):
            await self._sandbox("POST", f"/pay/{checkout_id}", data={"action": choice})
        else:
            await self._by_control(checkout_id, pay=choice == "pay by api")
        if order_id is not None and self.rng.random() < 0.85:
            await self._return_page(order_id)
        if order_id is not None and "decline" in choice and self.rng.random() < 0.5:
            await self._pay_again(order_id)

    async def _sandbox(self, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        self.world.traffic.sandbox_calls[f"{method} {path.split('/')[1]}"] += 1
        try:
            return await self.client.request(method, self.world.sandbox_url + path, **kwargs)
        except httpx.HTTPError:
            self.world.traffic.sandbox_calls["no answer"] += 1
            return None

    async def _by_control(self, checkout_id: str, *, pay: bool) -> None:
        what = "pay" if pay else "decline"
        self.world.traffic.sandbox_calls[f"control {what}"] += 1
        try:
            await (self.world.control.pay if pay else self.world.control.decline)(checkout_id)
        except httpx.HTTPStatusError as error:
            # 409: the checkout was retired or paid meanwhile, as SumUp would say.
            self.world.traffic.sandbox_calls[f"control {what} {error.response.status_code}"] += 1
        except httpx.HTTPError:
            self.world.traffic.sandbox_calls["no answer"] += 1

    async def _return_page(self, order_id: int) -> None:
        path = f"/cart/checkout/return/{order_id}/"
        response = await self._send("GET", path)
        for check in range(1, 3):
            if response is None or response.status_code != 200 or "check=" not in response.text:
                return
            await asyncio.sleep(0.5)
            response = await self._send("GET", f"{path}?check={check}")

    async def _pay_again(self, order_id: int) -> None:
        response = await self._form(f"/orders/{order_id}/pay/")
        self.world.actions["pay again"] += 1
        await self._after_checkout(response)

    async def do_old_tab_pays(self) -> None:
        """Pay a hosted page left open earlier (its order may be superseded by now)."""
        checkout_id = self.open_tabs.pop(self.rng.randrange(len(self.open_tabs)))
        page = await self._sandbox("GET", f"/pay/{checkout_id}")
        if page is not None and page.status_code == 200:
            await self._sandbox("POST", f"/pay/{checkout_id}", data={"action": "pay"})

    async def do_order_page(self) -> None:
        """Look at one order, then pay it again, cancel it or ask SumUp about it."""
        order_id = self.rng.choice(sorted(self.orders))
        page = await self._send("GET", f"/orders/{order_id}/")
        if page is None or page.status_code != 200:
            if page is not None and page.status_code == 404:
                self.orders.discard(order_id)
            return
        choice = self.rng.choices(["look", "pay again", "cancel", "recheck"], [3, 3, 2, 2])[0]
        if choice == "pay again" and f"/orders/{order_id}/pay/" in page.text:
            await self._pay_again(order_id)
        elif choice == "cancel" and f"/orders/{order_id}/cancel/" in page.text:
            self.world.actions["cancel"] += 1
            await self._follow(await self._form(f"/orders/{order_id}/cancel/"))
        elif choice == "recheck" and f"/orders/{order_id}/recheck/" in page.text:
            self.world.actions["recheck"] += 1
            await self._follow(await self._form(f"/orders/{order_id}/recheck/"))


class Admin:
    """The blog app's admin: refunds paid orders through the internal API."""

    def __init__(self, world: World, dsn: dict[str, object], *, seed: int) -> None:
        self.world = world
        self.dsn = dsn
        self.rng = random.Random(seed)
        self.unsettled: list[tuple[int, str]] = []  # (order id, key) answered 202 or lost
        self.outcomes: Counter[str] = Counter()
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(30.0), limits=KEEP_ALIVE)

    async def run(self, *, every: float) -> None:
        """A refund every `every` seconds or so until the run is over."""
        try:
            while not self.world.over():
                await asyncio.sleep(self.rng.uniform(0.5, 1.5) * every)
                try:
                    await self.refund_one()
                except (OSError, asyncpg.PostgresError):
                    self.outcomes["could not read orders"] += 1
        finally:
            await self.client.aclose()

    async def refund_one(self) -> None:
        if self.unsettled and self.rng.random() < 0.5:
            order_id, key = self.unsettled.pop(0)
            await self._ask(order_id, key, None, "same key again")
            return
        connection = await asyncpg.connect(**self.dsn)
        try:
            rows = await connection.fetch(
                "SELECT id, total_amount - refunded_amount AS left_over FROM orders "
                "WHERE status IN ('paid', 'partially_refunded') ORDER BY random() LIMIT 1"
            )
        finally:
            await connection.close()
        if not rows:
            return
        order_id, left = int(rows[0]["id"]), Decimal(rows[0]["left_over"])
        key = f"soak-{self.rng.getrandbits(64):016x}"
        kind = self.rng.choices(["part", "rest", "too much", "twice"], [4, 3, 1, 2])[0]
        if kind == "part" and left > Decimal("0.01"):
            amount: Decimal | None = (left * Decimal(self.rng.uniform(0.1, 0.6))).quantize(
                Decimal("0.01")
            ) or Decimal("0.01")
        elif kind == "too much":
            amount = left + Decimal("1.00")
        else:
            amount = None
        await self._ask(order_id, key, amount, kind)
        if kind == "twice":
            await self._ask(order_id, key, amount, "same key at once")

    async def _ask(self, order_id: int, key: str, amount: Decimal | None, kind: str) -> None:
        body = {"reason": f"soak: {kind}"}
        if amount is not None:
            body["amount"] = str(amount)
        headers = {"Authorization": f"Bearer {self.world.internal_token}", "Idempotency-Key": key}
        response = await self.world.site.request(
            self.client,
            "admin",
            self.rng.randrange(2),
            "POST",
            f"/internal/orders/{order_id}/refund",
            json=body,
            headers=headers,
        )
        status = response.status_code if response is not None else "no answer"
        self.outcomes[f"{kind}: {status}"] += 1
        if response is None or response.status_code == 202 or response.status_code >= 500:
            self.unsettled.append((order_id, key))
