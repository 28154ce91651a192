"""The payment lifecycle as a stateful property test (Hypothesis `RuleBasedStateMachine`).

One shopper drives the real app, served over HTTP so that the SumUp sandbox's webhooks
reach it, through its forms, in random sequences: add products, change quantities, get
bookings (the events app's side, written to the database) and prices changed (the
market app's), check out the whole cart or one page (maybe twice), pay or decline at
the sandbox, pay an old checkout in a tab the shopper kept open, lose or duplicate the
next webhook or have it sent again later, have SumUp fail during the next checkout,
cancel or "Pay now", re-check, cancel, pay again, let orders expire, let time pass
beyond SumUp's checkout lifetime, sweep, refund through the internal API (new, repeated
and racing Idempotency-Keys), and race two of these on one order. After every step it
checks what must always hold (`_violations`): money at SumUp equals money in our books,
transaction by transaction; no booking or cart line claimed by two live orders; one
event per transition and a history the state machine allows; totals that add up and
order pages that show them; no 5xx and no unexpected error logged. After a sweep, every
payment is known, every old attempt and every attempt of a final order is settled and
closed at SumUp, and no refund is pending.

The CI form is small (LIFECYCLE_MACHINE_EXAMPLES=15, LIFECYCLE_MACHINE_STEPS=12, about
10 s); the long form runs by hand, with shrinking:

    LIFECYCLE_MACHINE_EXAMPLES=200 LIFECYCLE_MACHINE_STEPS=25 \\
        .venv/bin/python -m pytest -q -s tests/lifecycle/test_lifecycle_machine.py

(-s prints what the examples did.) Hypothesis runs in a worker thread; every rule hands
its coroutine to the test's event loop, where the app and its HTTP server run, and waits
for it. Bugs the machine found that are not fixed yet are listed in `KNOWN_BUGS`: a
sequence that shows one is discarded rather than failed (LIFECYCLE_MACHINE_STRICT=1
fails on them too), and each has a strict-xfail regression test in
test_found_by_machine.py.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import secrets
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from itertools import combinations
from pathlib import Path
from typing import Any, ClassVar, Concatenate, ParamSpec, TypeVar

import httpx
from hypothesis import HealthCheck, Phase, reject
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from quart import Quart, request
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from bp.cart.services.checkout_attempts import CheckoutContext
from bp.cart.services.order_states import TRANSITIONS, Transition
from bp.cart.services.reconcile import ReconcileReport, reconcile_orders
from bp.cart.services.webhook_tokens import webhook_token
from config import Settings
from models import (
    Calendar,
    CalendarEntry,
    CartItem,
    CheckoutAttempt,
    DomainEvent,
    Order,
    OrderTransition,
    Product,
    Refund,
)
from tests.conftest import TABLES
from tests.factories import (
    make_calendar,
    make_entry,
    make_page_config,
    make_product,
    make_shop,
)
from tests.shopper import page_text, post_form

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("LIFECYCLE_MACHINE_EXAMPLES", "15"))
STEPS = int(os.environ.get("LIFECYCLE_MACHINE_STEPS", "12"))
STRICT = os.environ.get("LIFECYCLE_MACHINE_STRICT") == "1"

UNPAID = ("pending", "failed", "expired")
KEEPS_PAYMENT = ("paid", "partially_refunded")
PAID_LIKE = (*KEEPS_PAYMENT, "refunded")
# Orders that hold what they bought: they may still be paid, or they were.
LIVE = (*UNPAID, *KEEPS_PAYMENT)
OPEN_AT_SUMUP = ("PENDING", "FAILED")
HELD_ENTRY_STATES = ("ordered", "provisional", "confirmed")
EVENT_OF_STATUS = {
    "paid": "order.paid",
    "failed": "order.failed",
    "expired": "order.expired",
    "cancelled": "order.cancelled",
}
SCOPES = (None, "alpha", "beta")  # whole cart, or one page
REFUND_AMOUNTS = (None, "0.50", "1.00", "3.00", "500.00")  # None: the rest
PICK = st.integers(0, 5)
RACERS = ("pay", "cancel", "pay again", "checkout", "sweep", "recheck", "refund", "webhook")
CART_ADDITIONS = st.one_of(
    st.tuples(st.just("add"), PICK, st.integers(1, 3)),
    st.tuples(
        st.just("book"), st.sampled_from(("alpha", "beta")), st.sampled_from(("10.00", "7.50"))
    ),
)
CART_EDITS = st.one_of(
    st.tuples(st.just("set"), PICK, st.integers(0, 3)),
    st.tuples(st.just("unbook"), PICK, st.just(0)),
    st.tuples(st.just("reprice"), PICK, st.just(0)),
)
FORM = re.compile(r'<form method="post" action="([^"]+)"[^>]*>(.*?)</form>', re.S)
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
WEBHOOK_PATH = re.compile(r"/cart/checkout/webhook/(\d+)/")
RETURN_PAGE = re.compile(r"/cart/checkout/return/(\d+)/")
ORDER_STATUS = re.compile(r'data-testid="order-status" data-status="([a-z_]+)"')
ORDER_TOTAL = re.compile(r'data-testid="order-total">Total: £([0-9,.]+)<')
MAIN = re.compile(r"<main>(.*?)</main>", re.S)
TAG = re.compile(r"<[^>]+>")

# Bugs the machine found that the service still has: name → what shows it. A sequence
# that shows one is discarded (not failed) unless LIFECYCLE_MACHINE_STRICT=1, so the CI
# form keeps looking for other bugs; each has a strict xfail in test_found_by_machine.py.
KNOWN_BUGS: dict[str, str] = {
    # None now: the two it found (held bookings left out of the cart's shown total, a
    # resubmitted checkout form not recognised) are fixed and guarded by their tests.
}

P = ParamSpec("P")
T = TypeVar("T")


class ErrorRecorder(logging.Handler):
    """The error lines the app logs; each one is a failure unless the machine expects it."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("bp.", "services.")):
            self.records.append(record)

    def take(self) -> list[logging.LogRecord]:
        records, self.records = self.records, []
        return records


@dataclass
class World:
    """What every example shares: the served app, its loop, the sandbox."""

    app: Quart
    loop: asyncio.AbstractEventLoop
    control: Any
    sandbox_url: str
    token: str
    errors: ErrorRecorder
    # What the examples did (printed at the end, to see the machine explores it all).
    seen: Counter[str] = field(default_factory=Counter)
    # Webhooks that reached the app, by order id.
    webhooks: Counter[int] = field(default_factory=Counter)

    async def count_webhook(self) -> None:
        """A request hook of the app under test: counts the webhooks that reach it."""
        if match := WEBHOOK_PATH.match(request.path):
            self.webhooks[int(match.group(1))] += 1

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        sessions: async_sessionmaker[AsyncSession] = self.app.extensions["db_sessionmaker"]
        return sessions

    @property
    def settings(self) -> Settings:
        value: Settings = self.app.config["SETTINGS"]
        return value

    @property
    def context(self) -> CheckoutContext:
        return CheckoutContext(self.settings, self.app.extensions["sumup"])

    @property
    def expire_after(self) -> timedelta:
        return timedelta(minutes=self.settings.orders.unpaid_expiry_minutes)


@dataclass(frozen=True)
class ShopProduct:
    id: int
    page: str
    price: Decimal


@dataclass(frozen=True)
class KeyUse:
    """An Idempotency-Key the admin used, and the refund it made."""

    order_id: int
    refund_id: int


@dataclass(frozen=True)
class Landing:
    """Where a checkout or "Pay now" sent the shopper: SumUp's page, or the return page."""

    order_id: int
    checkout_id: str | None


@dataclass
class Snapshot:
    """Everything the invariants look at, read at one moment."""

    orders: list[Order]
    attempts: list[CheckoutAttempt]
    refunds: list[Refund]
    transitions: list[OrderTransition]
    events: list[tuple[str, int]]
    entries: list[CalendarEntry]
    lines: list[CartItem]
    sumup: dict[str, Any]
    sumup_checkouts: dict[str, dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.sumup_checkouts = {c["id"]: c for c in self.sumup["checkouts"]}

    def attempts_of(self, order_id: int) -> list[CheckoutAttempt]:
        return [a for a in self.attempts if a.order_id == order_id]

    def sumup_status(self, attempt: CheckoutAttempt) -> str | None:
        checkout = self.sumup_checkouts.get(attempt.sumup_checkout_id or "")
        return str(checkout["status"]) if checkout else None


def on_loop(
    method: Callable[Concatenate[LifecycleMachine, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[LifecycleMachine, P], T]:
    """A rule written as a coroutine, run on the app's event loop."""

    @functools.wraps(method)
    def run(self: LifecycleMachine, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.run(method(self, *args, **kwargs))

    return run


async def _page_says(response: Any) -> str:
    """The text of a page's main part (its heading, flash and message), for failures."""
    page = await page_text(response)
    match = MAIN.search(page)
    return " ".join(TAG.sub(" ", match.group(1) if match else page).split())[:500]


def _money(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


class LifecycleMachine(RuleBasedStateMachine):
    """One shopper, one shop of two pages, SumUp's sandbox; see the module docstring."""

    world: ClassVar[World]

    def __init__(self) -> None:
        super().__init__()
        self.client = self.world.app.test_client()
        self.session_id: str | None = None
        self.products: list[ShopProduct] = []
        self.calendars: dict[str, int] = {}
        # The next webhook SumUp sends: delivered, dropped or sent twice at once.
        self.webhook = "normal"
        # SumUp fails during the shopper's next action: every call, or only retiring.
        self.fault: str | None = None
        self.in_fault = False
        # Checkouts paid at SumUp whose webhook was lost: the cart may not know yet.
        self.unseen: set[str] = set()
        self.keys: dict[str, KeyUse] = {}
        self.used_keys: list[str] = []
        self.broken = False
        # The state after the last step, for the preconditions.
        self.snapshot: Snapshot | None = None

    def saw(self, what: str) -> None:
        self.world.seen[what] += 1

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.world.loop)
        try:
            return future.result(timeout=180)
        except AssertionError as error:
            self.broken = True
            self._discard_known([str(error)])
            if logged := self._unexpected_errors():  # what the app said meanwhile
                raise AssertionError("\n".join([str(error), *logged])) from error
            raise
        except BaseException:
            self.broken = True
            raise

    # --- the shop -------------------------------------------------------------------

    @initialize()
    @on_loop
    async def open_shop(self) -> None:
        """Empty tables and sandbox; two pages (beta with its own SumUp merchant)."""
        async with self.world.sessions() as db:
            await db.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
            await db.commit()
            await self.world.control.reset()
            await self._forget_abuse_counters()
            for slug, prices in (("alpha", ("4.50", "2.00")), ("beta", ("3.25",))):
                page, market = await make_shop(db, slug)
                if slug == "beta":
                    await make_page_config(db, page)
                self.calendars[slug] = (await make_calendar(db, page)).id
                for price in prices:
                    product = await make_product(db, market, price=price)
                    self.products.append(ShopProduct(product.id, slug, Decimal(price)))
        self.world.errors.take()
        self.saw("examples")
        await self._add(self.products[0], 1)  # the shopper's first line gives them a cart
        await self._snapshot()

    async def _forget_abuse_counters(self) -> None:
        """Each example is a new shop whose ids start again at 1: the rate limits and the
        status throttle counted per order in earlier examples must not carry over (order
        1's webhooks of fifteen examples would pass its per-order limit)."""
        redis = self.world.app.extensions["redis"]
        prefix = self.world.settings.rate_limits.redis_prefix
        for pattern in (f"{prefix}limits*", f"{prefix}status-check:*"):
            async for key in redis.scan_iter(match=pattern):
                await redis.delete(key)

    def _product(self, pick: int) -> ShopProduct:
        return self.products[pick % len(self.products)]

    # --- the cart (and the market and events apps' side of it) ------------------------

    # Hypothesis favours the first valid rule in its order (fewest arguments, then name),
    # so the rule that only looks comes first, and the cart only grows while it is small.

    @precondition(lambda self: self.has_orders())
    @rule()
    @on_loop
    async def look_at_orders(self) -> None:
        """The shopper's order pages show each order's status and the total it holds."""
        self.saw("look at orders")
        snapshot = await self._snapshot()
        listing = await self._get("/orders/")
        assert listing.status_code == 200, await _page_says(listing)
        for order in snapshot.orders:
            page = await self._get(f"/orders/{order.id}/")
            assert page.status_code == 200, await _page_says(page)
            text = await page_text(page)
            status = ORDER_STATUS.search(text)
            assert status and status.group(1) == order.status, f"order {order.id} page status"
            total = ORDER_TOTAL.search(text)
            assert total and _money(total.group(1).replace(",", "")) == order.held_total, (
                f"order {order.id} page says {total and total.group(1)}, it holds "
                f"{order.held_total}"
            )

    def cart_is_small(self) -> bool:
        now = self.snapshot
        return now is not None and len(now.lines) + len(self._cart_entries(now)) < 4

    @precondition(cart_is_small)
    @rule(change=CART_ADDITIONS)
    @on_loop
    async def put_in_cart(self, change: tuple[str, Any, Any]) -> None:
        """Add a product, or get a booking from the events app."""
        what, which, how = change
        self.saw(f"cart: {what}")
        if what == "add":
            await self._add(self._product(which), how)
        else:
            await self._book(which, how)

    @precondition(lambda self: self.cart_has_something())
    @rule(change=CART_EDITS)
    @on_loop
    async def edit_cart(self, change: tuple[str, int, int]) -> None:
        """Set a quantity (0 takes the line out), take a booking out, or have the market
        app change a price."""
        what, which, how = change
        self.saw(f"cart: {what}")
        if what == "set":
            await self._set_quantity(self._product(which), how)
        elif what == "unbook":
            await self._unbook(which)
        else:
            await self._reprice(self._product(which))

    async def _add(self, product: ShopProduct, quantity: int) -> None:
        response = await self._post(f"/cart/add/{product.id}/", {"quantity": quantity})
        assert response.status_code == 303, await _page_says(response)
        if self.session_id is None:
            async with self.world.sessions() as db:
                self.session_id = await db.scalar(select(CartItem.session_id).limit(1))
            assert self.session_id

    async def _set_quantity(self, product: ShopProduct, quantity: int) -> None:
        async with self.world.sessions() as db:
            in_cart = await db.scalar(
                select(func.count()).where(
                    CartItem.session_id == self.session_id,
                    CartItem.product_id == product.id,
                    CartItem.deleted_at.is_(None),
                )
            )
        response = await self._post(f"/cart/update/{product.id}/", {"quantity": quantity})
        assert response.status_code == (303 if in_cart else 404), await _page_says(response)

    async def _book(self, page: str, cost: str) -> None:
        async with self.world.sessions() as db:
            calendar = await db.get(Calendar, self.calendars[page])
            assert calendar is not None
            await make_entry(db, calendar, session_id=self.session_id, cost=cost)

    async def _unbook(self, pick: int) -> None:
        async with self.world.sessions() as db:
            pending = list(
                await db.scalars(
                    select(CalendarEntry.id)
                    .where(
                        CalendarEntry.session_id == self.session_id,
                        CalendarEntry.state == "pending",
                        CalendarEntry.deleted_at.is_(None),
                    )
                    .order_by(CalendarEntry.id)
                )
            )
        if pending:
            response = await self._post(f"/cart/entries/{pending[pick % len(pending)]}/remove/")
            assert response.status_code == 303, await _page_says(response)

    async def _reprice(self, product: ShopProduct) -> None:
        """A new price, or the old one back."""
        async with self.world.sessions() as db:
            now = await db.scalar(select(Product.regular_price).where(Product.id == product.id))
            price = product.price + 1 if now == product.price else product.price
            await db.execute(
                update(Product).where(Product.id == product.id).values(regular_price=price)
            )
            await db.commit()

    # --- preconditions, on the state after the last step ---------------------------------

    def cart_has_something(self) -> bool:
        now = self.snapshot
        return now is not None and bool(now.lines or self._cart_entries(now))

    def _cart_entries(self, snapshot: Snapshot) -> list[CalendarEntry]:
        return [e for e in snapshot.entries if e.state == "pending" and e.deleted_at is None]

    def has_current_checkout(self) -> bool:
        return self.snapshot is not None and bool(self._candidates(self.snapshot, current=True))

    def has_old_checkout(self) -> bool:
        return self.snapshot is not None and bool(self._candidates(self.snapshot, current=False))

    def has_orders(self) -> bool:
        return self.snapshot is not None and bool(self.snapshot.orders)

    def has_order_to_expire(self) -> bool:
        now = self.snapshot
        return now is not None and any(o.status in ("pending", "failed") for o in now.orders)

    # --- checkout and SumUp -----------------------------------------------------------

    @precondition(cart_has_something)
    @rule(scope=st.sampled_from(SCOPES), resubmit=st.booleans(), pay=st.booleans())
    @on_loop
    async def checkout(self, scope: str | None, resubmit: bool, pay: bool) -> None:
        """Press the cart page's checkout button (whole cart or one page), maybe twice,
        and maybe pay at once on SumUp's page."""
        # A page's own checkout is on its page cart (the overview offers it only beside
        # other pages' parts).
        page = await self._get("/cart/" if scope is None else f"/cart/{scope}/")
        assert page.status_code == 200
        action = "/cart/checkout/" if scope is None else f"/cart/{scope}/checkout/"
        forms = {
            path: dict(HIDDEN.findall(body)) for path, body in FORM.findall(await page_text(page))
        }
        form = forms.get(action)
        if form is None:
            assert await self._scope_is_empty(scope), f"no {action} form for a cart to pay"
            self.saw("checkout: nothing to pay")
            return
        shown = Decimal(form["shown_total"])
        response, faulty = await self._shopper_action(lambda: self._post(action, form))
        self.saw(f"checkout {scope or 'whole cart'}: {response.status_code}{' (fault)' * faulty}")
        first = None if faulty else await self._expect_payment_page(response, shown_total=shown)
        if resubmit:  # a double click, or "try again" after SumUp failed
            again = await self._expect_payment_page(
                await self._post(action, form), shown_total=shown
            )
            if first is not None and first.checkout_id is not None:
                assert again == first, "a resubmitted checkout form went to another page"
            first = again
        if pay and first is not None and first.checkout_id is not None:
            [attempt] = [
                a
                for a in (await self._snapshot()).attempts
                if a.sumup_checkout_id == first.checkout_id
            ]
            await self._pay_at_sumup(attempt, approve=True)

    def _candidates(self, snapshot: Snapshot, *, current: bool) -> list[CheckoutAttempt]:
        """Checkouts SumUp would still take money on: the current ones of unpaid orders, or
        the others (an old tab of a superseded, cancelled or paid-again order)."""
        orders = {o.id: o for o in snapshot.orders}
        found = []
        for attempt in snapshot.attempts:
            if snapshot.sumup_status(attempt) not in OPEN_AT_SUMUP:
                continue
            order = orders[attempt.order_id]
            is_current = order.status in UNPAID and order.current_attempt_id == attempt.id
            if is_current == current:
                found.append(attempt)
        return found

    @precondition(has_current_checkout)
    @rule(pick=PICK, come_back=st.booleans())
    @on_loop
    async def pay_current_checkout(self, pick: int, come_back: bool) -> None:
        """The shopper pays on SumUp's page, maybe followed back to us."""
        await self._on_current_checkout(pick, approve=True, come_back=come_back)

    @precondition(has_current_checkout)
    @rule(pick=PICK, come_back=st.booleans())
    @on_loop
    async def decline_current_checkout(self, pick: int, come_back: bool) -> None:
        """The shopper's card is declined on SumUp's page."""
        await self._on_current_checkout(pick, approve=False, come_back=come_back)

    async def _on_current_checkout(self, pick: int, *, approve: bool, come_back: bool) -> None:
        candidates = self._candidates(await self._snapshot(), current=True)
        if not candidates:
            self.saw("pay: nothing payable")
            return
        attempt = candidates[pick % len(candidates)]
        await self._pay_at_sumup(attempt, approve=approve)
        if come_back:
            response = await self._get(f"/cart/checkout/return/{attempt.order_id}/")
            assert response.status_code == 200, await _page_says(response)

    @precondition(has_old_checkout)
    @rule(pick=st.integers(0, 5))
    @on_loop
    async def pay_old_checkout(self, pick: int) -> None:
        """The shopper pays in a tab still open on a checkout the order no longer uses."""
        candidates = self._candidates(await self._snapshot(), current=False)
        if not candidates:
            self.saw("pay old tab: none open")
            return
        self.saw("pay old tab")
        await self._pay_at_sumup(candidates[pick % len(candidates)], approve=True)

    def has_checkouts(self) -> bool:
        now = self.snapshot
        return now is not None and any(a.sumup_checkout_id for a in now.attempts)

    @precondition(has_checkouts)
    @rule(pick=st.integers(0, 7))
    @on_loop
    async def late_webhook(self, pick: int) -> None:
        """SumUp (re)sends the webhook of one of the checkouts, at any later time."""
        attempts = [a for a in (await self._snapshot()).attempts if a.sumup_checkout_id]
        attempt = attempts[pick % len(attempts)]
        token = webhook_token(self.world.settings.secret_key.reveal(), attempt.order_id)
        response = await self.client.post(
            f"/cart/checkout/webhook/{attempt.order_id}/?token={token}",
            json={"event_type": "CHECKOUT_STATUS_CHANGED", "id": attempt.sumup_checkout_id},
        )
        await self._no_server_error(response, "webhook")
        self.saw(f"late webhook: {response.status_code}")
        assert response.status_code == 204

    def sumup_behaves(self) -> bool:
        return self.webhook == "normal" and self.fault is None

    # SumUp's trouble, one rule each (Hypothesis spreads its choices over rules better
    # than over the values of one argument). A fault lasts for the shopper's next
    # checkout, cancel or "Pay now": the actions that retire checkouts.

    @precondition(sumup_behaves)
    @rule()
    def sumup_loses_next_webhook(self) -> None:
        self.saw("sumup: lose webhook")
        self.webhook = "drop"

    @precondition(sumup_behaves)
    @rule()
    def sumup_sends_next_webhook_twice(self) -> None:
        self.saw("sumup: webhook twice")
        self.webhook = "twice"

    @precondition(sumup_behaves)
    @rule()
    def sumup_cannot_retire_next(self) -> None:
        """SumUp answers 503 to DELETE (only) during the next action: a tab stays open."""
        self.saw("sumup: fail retiring")
        self.fault = "deactivate"

    @precondition(sumup_behaves)
    @rule()
    def sumup_down_next(self) -> None:
        """SumUp answers 503 to every call during the next action."""
        self.saw("sumup: fail everything")
        self.fault = "everything"

    # --- the order page ---------------------------------------------------------------

    @precondition(has_orders)
    @rule(pick=st.integers(0, 7))
    @on_loop
    async def recheck(self, pick: int) -> None:
        order = await self._pick_order(pick)
        if order is None:
            return
        response = await self._post(f"/orders/{order.id}/recheck/")
        self.saw("recheck")
        assert response.status_code == 303, await _page_says(response)
        snapshot = await self._snapshot()
        unknown = self._unknown_payments(snapshot) & self._checkouts_of(snapshot, order.id)
        assert not unknown, f"recheck of order {order.id} missed payments {unknown}"

    @precondition(has_orders)
    @rule(pick=st.integers(0, 7), unpaid=st.booleans())
    @on_loop
    async def cancel(self, pick: int, unpaid: bool) -> None:
        """ "Cancel order" on an order's page (mostly of an unpaid one)."""
        order = await self._pick_order(pick, prefer=UNPAID if unpaid else None)
        if order is None:
            return
        had_unseen = bool(self.unseen & self._checkouts_of(await self._snapshot(), order.id))
        response, faulty = await self._shopper_action(
            lambda: self._post(f"/orders/{order.id}/cancel/")
        )
        assert response.status_code == 303, await _page_says(response)
        after = await self._order(order.id)
        self.saw(f"cancel {order.status} -> {after.status}{' (fault)' * faulty}")
        if order.status in UNPAID:
            allowed = {"cancelled", *(PAID_LIKE if had_unseen or faulty else ())}
            assert after.status in allowed, f"cancel left order {order.id} {after.status}"
        else:
            assert after.status == order.status, f"cancel moved a {order.status} order"
        if not faulty and order.status in UNPAID and after.status == "cancelled":
            snapshot = await self._snapshot()
            still_open = [
                a.id
                for a in snapshot.attempts_of(order.id)
                if snapshot.sumup_status(a) in OPEN_AT_SUMUP
            ]
            assert not still_open, f"cancelled order {order.id} left payable checkouts {still_open}"

    @precondition(has_orders)
    @rule(pick=st.integers(0, 7), unpaid=st.booleans())
    @on_loop
    async def pay_again(self, pick: int, unpaid: bool) -> None:
        """ "Pay now" on an order's page (mostly of an unpaid one)."""
        order = await self._pick_order(pick, prefer=UNPAID if unpaid else None)
        if order is None:
            return
        snapshot = await self._snapshot()
        had_unseen = bool(self.unseen & self._checkouts_of(snapshot, order.id))
        stale = await self._is_stale(order)
        response, faulty = await self._shopper_action(
            lambda: self._post(f"/orders/{order.id}/pay/")
        )
        self.saw(
            f"pay again {order.status}: {response.status_code}"
            f"{' stale' * bool(stale)}{' (fault)' * faulty}"
        )
        if faulty and response.status_code >= 500:
            return
        after = await self._order(order.id)
        if order.status not in UNPAID:
            assert response.status_code == 303, await _page_says(response)
            assert response.headers["Location"] == f"/orders/{order.id}/"
            assert after.status == order.status
        elif stale and not had_unseen:
            assert response.status_code == 409, (
                f"order {order.id} ({order.status}) paid again though {stale}: "
                f"{response.status_code} {response.headers.get('Location')}"
            )
            assert after.status == order.status
        elif response.status_code == 409 and stale:
            assert after.status == order.status
        else:
            landed = await self._expect_payment_page(response)
            assert landed.order_id == order.id

    @precondition(has_order_to_expire)
    @rule(pick=st.integers(0, 7))
    @on_loop
    async def expire(self, pick: int) -> None:
        """Time passes for one unpaid order past the unpaid expiry, then the sweep runs."""
        order = await self._pick_order(pick, prefer=("pending", "failed"))
        if order is None or order.status not in ("pending", "failed"):
            return
        had_unseen = bool(self.unseen & self._checkouts_of(await self._snapshot(), order.id))
        async with self.world.sessions() as db:
            ago = func.now() - self.world.expire_after - timedelta(minutes=1)
            await db.execute(
                update(Order)
                .where(Order.id == order.id)
                .values(created_at=ago, checkout_started_at=ago)
            )
            await db.commit()
        await self._reconcile()
        after = await self._order(order.id)
        self.saw(f"expire {order.status} -> {after.status}")
        allowed = {"expired", *(PAID_LIKE if had_unseen else ())}
        assert after.status in allowed, f"expiry left order {order.id} {after.status}"

    def has_open_work(self) -> bool:
        """Whether a sweep would find anything to do."""
        now = self.snapshot
        return now is not None and (
            any(a.settled_at is None for a in now.attempts)
            or any(r.status == "pending" for r in now.refunds)
            or any(o.status in ("pending", "failed") for o in now.orders)
            or bool(self.unseen)
        )

    @precondition(has_open_work)
    @rule(later=st.booleans())
    @on_loop
    async def sweep(self, later: bool) -> None:
        """The reconcile sweep, with every open attempt due; when `later`, time first
        passes beyond SumUp's checkout lifetime (not yet the unpaid expiry)."""
        self.saw(f"sweep{' past the checkout lifetime' * later}")
        if later:
            await self._time_passes(self.world.context.lifetime + timedelta(minutes=1))
        await self._settle_everything()

    async def _time_passes(self, by: timedelta) -> None:
        """Every timestamp the lifecycle reads moves `by` into the past (SumUp's clock
        does not move: its checkouts stay open until we retire them)."""
        async with self.world.sessions() as db:
            await db.execute(
                update(Order).values(
                    created_at=Order.created_at - by,
                    updated_at=Order.updated_at - by,
                    paid_at=Order.paid_at - by,
                    cancelled_at=Order.cancelled_at - by,
                    checkout_started_at=Order.checkout_started_at - by,
                )
            )
            await db.execute(
                update(CheckoutAttempt).values(
                    created_at=CheckoutAttempt.created_at - by,
                    checked_at=CheckoutAttempt.checked_at - by,
                    retired_at=CheckoutAttempt.retired_at - by,
                    settled_at=CheckoutAttempt.settled_at - by,
                )
            )
            await db.commit()

    # --- two things at once ---------------------------------------------------------------

    @precondition(has_orders)
    @rule(first=st.sampled_from(RACERS), second=st.sampled_from(RACERS))
    @on_loop
    async def race(self, first: str, second: str) -> None:
        """Two of the shopper's, SumUp's, the sweep's or the admin's actions at once, on the
        newest order. Their outcome depends on who wins, so only the invariants judge."""
        self.saw(f"race: {' & '.join(sorted((first, second)))}")
        snapshot = await self._snapshot()
        order = snapshot.orders[-1]
        results = await asyncio.gather(
            *(self._racer(name, order, snapshot) for name in (first, second)),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _racer(self, name: str, order: Order, snapshot: Snapshot) -> None:
        """One side of a race: the action without its own oracle, but never a 5xx."""
        if name == "pay":
            attempts = self._candidates(snapshot, current=True)
            if attempts:
                attempt = attempts[-1]
                delivered = self.world.webhooks[attempt.order_id]
                try:
                    checkout = await self.world.control.pay(attempt.sumup_checkout_id)
                except httpx.HTTPStatusError as error:  # closed meanwhile: the page says so
                    assert error.response.status_code == 409, error
                    return
                lost = self.world.webhooks[attempt.order_id] == delivered
                if lost and checkout["status"] == "PAID":  # see _pay_at_sumup
                    self.unseen.add(str(attempt.sumup_checkout_id))
        elif name == "cancel":
            response = await self._post(f"/orders/{order.id}/cancel/")
            assert response.status_code == 303, await _page_says(response)
        elif name == "pay again":
            response = await self._post(f"/orders/{order.id}/pay/")
            assert response.status_code in (303, 409), await _page_says(response)
        elif name == "checkout":
            page = await page_text(await self._get("/cart/"))
            forms = {path: dict(HIDDEN.findall(body)) for path, body in FORM.findall(page)}
            if "/cart/checkout/" in forms:
                response = await self._post("/cart/checkout/", forms["/cart/checkout/"])
                # The other side may change the cart (a payment clears it) meanwhile.
                assert response.status_code in (303, 409), await _page_says(response)
        elif name == "sweep":
            await self._make_attempts_due(nothing_under_way=False)
            await self._reconcile()
        elif name == "recheck":
            response = await self._post(f"/orders/{order.id}/recheck/")
            assert response.status_code == 303, await _page_says(response)
        elif name == "refund":
            status, body = await self._ask_refund(order.id, secrets.token_hex(8), None)
            assert status in (200, 409), body
        else:  # SumUp's webhook for the order's current checkout
            current = [a for a in snapshot.attempts if a.id == order.current_attempt_id]
            if current and current[0].sumup_checkout_id:
                token = webhook_token(self.world.settings.secret_key.reveal(), order.id)
                response = await self.client.post(
                    f"/cart/checkout/webhook/{order.id}/?token={token}",
                    json={
                        "event_type": "CHECKOUT_STATUS_CHANGED",
                        "id": current[0].sumup_checkout_id,
                    },
                )
                await self._no_server_error(response, "webhook")

    # --- refunds (the blog app's admin) -------------------------------------------------

    @precondition(has_orders)
    @rule(
        pick=st.integers(0, 7),
        paid_only=st.booleans(),
        amount=st.sampled_from(REFUND_AMOUNTS),
        reuse=st.one_of(st.none(), st.integers(0, 3)),
        racing=st.sampled_from(("alone", "same key twice", "two keys")),
    )
    @on_loop
    async def refund(
        self, pick: int, paid_only: bool, amount: str | None, reuse: int | None, racing: str
    ) -> None:
        """POST /internal/orders/<id>/refund (of a paid order, or of any) with a new or an
        earlier Idempotency-Key; or two at once, with the same key or two new ones."""
        order = await self._pick_order(pick, prefer=PAID_LIKE if paid_only else None)
        if order is None:
            return
        if reuse is not None and self.used_keys and racing != "two keys":
            keys = [self.used_keys[reuse % len(self.used_keys)]] * (1 + (racing != "alone"))
        else:
            keys = [secrets.token_hex(8) for _ in range(1 + (racing == "two keys"))]
            keys = keys * (1 + (racing == "same key twice"))
            self.used_keys.extend(dict.fromkeys(keys))
        refunded_before = await self._sumup_refunded()
        earlier = self.keys.get(keys[0])
        answers = await asyncio.gather(*(self._ask_refund(order.id, k, amount) for k in keys))
        after = await self._order(order.id)
        refunded_now = await self._sumup_refunded()
        self.saw(
            f"refund {order.status} {'replayed key' if earlier else 'new key'} {racing}: "
            f"{sorted(status for status, _ in answers)}"
        )
        if earlier is not None:
            for status, body in answers:
                if earlier.order_id == order.id:
                    assert status == 200, f"replayed key answered {status}: {body}"
                    assert body["refund"]["id"] == earlier.refund_id
                else:
                    assert status == 422, f"key of order {earlier.order_id} answered {status}"
            assert refunded_now == refunded_before, "a replayed key refunded again"
            assert (after.status, after.refunded_amount) == (order.status, order.refunded_amount)
            return
        # Racing requests are served one after the other (under the order's lock): what
        # each would get in turn is what they get, in some order.
        left, expected, given = order.total_amount - order.refunded_amount, [], Decimal("0.00")
        for key in dict.fromkeys(keys):
            wanted = _money(amount) if amount is not None else left
            ok = order.status in KEEPS_PAYMENT and 0 < wanted <= left
            expected += [200 if ok else 409] * keys.count(key)
            if ok:
                left, given = left - wanted, given + wanted
        statuses = sorted(status for status, _ in answers)
        assert statuses == sorted(expected), (
            f"refunds of {amount or 'the rest'} of a {order.status} order ({racing}) answered "
            f"{statuses}, not {sorted(expected)}: {[body for _, body in answers]}"
        )
        for (status, body), key in zip(answers, keys, strict=True):
            if status == 200:
                assert body["refund"]["status"] == "succeeded", body
                self.keys[key] = KeyUse(order.id, body["refund"]["id"])
        if racing == "same key twice" and 200 in statuses:
            assert len({body["refund"]["id"] for _, body in answers}) == 1
        assert after.refunded_amount == order.refunded_amount + given
        assert refunded_now == refunded_before + given
        if given:
            assert after.status == ("refunded" if left == 0 else "partially_refunded")
        else:
            assert (after.status, after.refunded_amount) == (order.status, order.refunded_amount)

    async def _ask_refund(
        self, order_id: int, key: str, amount: str | None
    ) -> tuple[int, dict[str, Any]]:
        body: dict[str, Any] = {"reason": "machine"}
        if amount is not None:
            body["amount"] = amount
        response = await self.client.post(
            f"/internal/orders/{order_id}/refund",
            json=body,
            headers={"Authorization": f"Bearer {self.world.token}", "Idempotency-Key": key},
        )
        await self._no_server_error(response, "refund")
        return response.status_code, await response.get_json()

    async def _sumup_refunded(self) -> Decimal:
        money = (await self.world.control.stats())["money"]
        return sum((Decimal(m["refunded"]) for m in money.values()), Decimal("0.00"))

    # --- invariants -------------------------------------------------------------------

    @invariant()
    def books_balance(self) -> None:
        """Everything in `_violations`, after every step."""
        self.saw("steps")
        self.run(self._check())

    async def _check(self, *, settled: bool = False) -> None:
        snapshot = await self._snapshot()
        found = self._violations(snapshot, settled=settled)
        found += self._unexpected_errors()
        assert not found, "\n".join(found)

    def teardown(self) -> None:
        """A last sweep settles everything; then the settled invariants must hold too."""
        if self.broken or not self.products:
            return
        self.run(self._settle_everything())

    def _discard_known(self, found: list[str]) -> None:
        if STRICT:
            return
        for name, symptom in KNOWN_BUGS.items():
            if any(symptom in line for line in found):
                self.saw(f"discarded: known bug {name}")
                reject()

    def _unexpected_errors(self) -> list[str]:
        lines = []
        for record in self.world.errors.take():
            if getattr(record, "event", None) == "payment.surplus":
                continue  # money an order could not take: logged loudly, refunded
            lines.append(f"error logged by {record.name}: {record.getMessage()}")
        return lines

    def _unknown_payments(self, snapshot: Snapshot) -> set[str]:
        """Checkouts SumUp says are PAID that the cart has not recorded as PAID."""
        recorded = {a.sumup_checkout_id for a in snapshot.attempts if a.sumup_status == "PAID"}
        return {
            checkout_id
            for checkout_id, checkout in snapshot.sumup_checkouts.items()
            if checkout["status"] == "PAID" and checkout_id not in recorded
        }

    def _checkouts_of(self, snapshot: Snapshot, order_id: int) -> set[str]:
        return {a.sumup_checkout_id for a in snapshot.attempts_of(order_id) if a.sumup_checkout_id}

    def _violations(self, snapshot: Snapshot, *, settled: bool) -> list[str]:
        found: list[str] = []
        found += self._money_violations(snapshot)
        found += self._order_money_violations(snapshot)
        found += self._booking_violations(snapshot)
        found += self._cart_line_violations(snapshot)
        found += self._history_violations(snapshot)
        found += self._total_violations(snapshot)
        if settled:
            found += self._settled_violations(snapshot)
        return found

    def _money_violations(self, snapshot: Snapshot) -> list[str]:
        """Money taken at SumUp minus refunded equals what we record as paid minus
        refunded, transaction by transaction; only a lost webhook may hide a payment."""
        found = []
        paid = [a for a in snapshot.attempts if a.sumup_status == "PAID"]
        for attempt in paid:
            checkout = snapshot.sumup_checkouts.get(attempt.sumup_checkout_id or "")
            if checkout is None or checkout["status"] != "PAID":
                found.append(f"attempt {attempt.id} is PAID here but not at SumUp")
            elif _money(checkout["amount"]) != attempt.amount:
                found.append(f"attempt {attempt.id} amount differs from SumUp's")
        unknown = self._unknown_payments(snapshot)
        if not unknown <= self.unseen:
            found.append(f"SumUp took money on {sorted(unknown - self.unseen)} we never heard of")
        self.unseen = unknown & self.unseen
        succeeded: defaultdict[str, Decimal] = defaultdict(lambda: Decimal("0.00"))
        for refund in snapshot.refunds:
            if refund.status == "succeeded":
                succeeded[refund.sumup_transaction_id] += refund.amount
        for checkout in snapshot.sumup_checkouts.values():
            for transaction in checkout["transactions"]:
                if transaction["status"] not in ("SUCCESSFUL", "REFUNDED"):
                    continue
                sumup_refunded = Decimal(transaction["refunded_amount"])
                if sumup_refunded != succeeded.get(transaction["id"], Decimal("0.00")):
                    found.append(
                        f"transaction {transaction['id']}: SumUp refunded {sumup_refunded}, "
                        f"we recorded {succeeded.get(transaction['id'], 0)}"
                    )
        money = snapshot.sumup["money"].get("GBP", {"taken": "0", "refunded": "0"})
        at_sumup = Decimal(money["taken"]) - Decimal(money["refunded"])
        hidden = sum(
            (_money(snapshot.sumup_checkouts[c]["amount"]) for c in unknown), Decimal("0.00")
        )
        ours = sum((a.amount for a in paid), Decimal("0.00")) - sum(succeeded.values(), Decimal(0))
        if at_sumup != ours + hidden:
            found.append(f"SumUp holds {at_sumup} net, our books {ours} (+{hidden} unseen)")
        return found

    def _order_money_violations(self, snapshot: Snapshot) -> list[str]:
        """What an order keeps is what its status says: its total less its refunds when
        paid, nothing otherwise (money it could not take is being refunded)."""
        found = []
        for order in snapshot.orders:
            refunds = [r for r in snapshot.refunds if r.order_id == order.id]
            taken = sum(
                (a.amount for a in snapshot.attempts_of(order.id) if a.sumup_status == "PAID"),
                Decimal("0.00"),
            )
            given_back = sum(
                (
                    r.amount
                    for r in refunds
                    if r.status == "succeeded" or (r.status == "pending" and not r.of_order_payment)
                ),
                Decimal("0.00"),
            )
            keeps = order.total_amount - order.refunded_amount if order.status in PAID_LIKE else 0
            if taken - given_back != keeps:
                found.append(
                    f"order {order.id} ({order.status}) keeps {taken - given_back}, should {keeps}"
                )
            admin = sum(
                (r.amount for r in refunds if r.status == "succeeded" and r.of_order_payment),
                Decimal("0.00"),
            )
            if admin != order.refunded_amount:
                found.append(f"order {order.id} refunded_amount {order.refunded_amount} != {admin}")
            if any(r.status == "pending" and r.of_order_payment for r in refunds):
                found.append(f"order {order.id} has an admin refund still pending")
            if (order.status in PAID_LIKE) != (order.paid_attempt_id is not None):
                found.append(
                    f"order {order.id} is {order.status} with paid attempt {order.paid_attempt_id}"
                )
        return found

    def _booking_violations(self, snapshot: Snapshot) -> list[str]:
        """No calendar entry is held by two live orders, and the entry agrees with its holder."""
        found = []
        holders: dict[int, list[Order]] = defaultdict(list)
        for order in snapshot.orders:
            for booking in order.bookings:
                if booking.released_at is None:
                    holders[booking.entry_id].append(order)
        entries = {entry.id: entry for entry in snapshot.entries}
        for entry_id, orders in holders.items():
            live = [o for o in orders if o.status in LIVE]
            if len(live) > 1:
                found.append(f"entry {entry_id} is held by live orders {[o.id for o in live]}")
            entry = entries[entry_id]
            for order in live:
                if entry.order_id != order.id or entry.state not in HELD_ENTRY_STATES:
                    found.append(
                        f"order {order.id} holds entry {entry_id}, which is {entry.state} "
                        f"for order {entry.order_id}"
                    )
        for entry in snapshot.entries:
            if entry.state in HELD_ENTRY_STATES:
                holder = [o.id for o in holders.get(entry.id, []) if o.status in LIVE]
                if holder != [entry.order_id]:
                    found.append(
                        f"entry {entry.id} is {entry.state} for order {entry.order_id}, "
                        f"held by {holder}"
                    )
            elif entry.state == "pending" and entry.order_id is not None:
                found.append(f"pending entry {entry.id} points at order {entry.order_id}")
        return found

    def _cart_line_violations(self, snapshot: Snapshot) -> list[str]:
        """Two live orders never buy the same cart line: of two orders with a product in
        common, the older was paid (and so cleared from the cart) before the newer was
        made; and two unpaid orders never cover the same part of the cart."""
        found = []
        created: dict[int, int] = {}
        paid: dict[int, int] = {}
        for transition in snapshot.transitions:
            if transition.from_status is None:
                created[transition.order_id] = transition.id
            if transition.to_status == "paid":
                paid[transition.order_id] = transition.id
        live = [o for o in snapshot.orders if o.status in LIVE]
        for first, second in combinations(live, 2):
            older, newer = sorted((first, second), key=lambda o: created[o.id])
            shared = {i.product_id for i in older.items} & {i.product_id for i in newer.items}
            if shared and not paid.get(older.id, created[newer.id] + 1) < created[newer.id]:
                found.append(
                    f"orders {older.id} ({older.status}) and {newer.id} ({newer.status}) "
                    f"both claim products {sorted(shared)}"
                )
            both_unpaid = older.status in UNPAID and newer.status in UNPAID
            overlap = None in (older.page_post_id, newer.page_post_id) or (
                older.page_post_id == newer.page_post_id
            )
            if both_unpaid and overlap:
                found.append(f"unpaid orders {older.id} and {newer.id} cover the same cart")
        return found

    def _history_violations(self, snapshot: Snapshot) -> list[str]:
        """One event per transition, and a history the state machine allows."""
        found = []
        events = Counter(snapshot.events)
        for order in snapshot.orders:
            history = [t for t in snapshot.transitions if t.order_id == order.id]
            status = None
            for step in history:
                if step.from_status != status:
                    found.append(f"order {order.id}: history jumps {status} -> {step.from_status}")
                if Transition(step.from_status, step.to_status, step.cause) not in TRANSITIONS:
                    found.append(
                        f"order {order.id}: {step.from_status} -> {step.to_status} "
                        f"({step.cause}) is not a transition"
                    )
                status = step.to_status
            if status != order.status:
                found.append(f"order {order.id} is {order.status}, its history says {status}")
            if events["order.created", order.id] != 1:
                found.append(f"order {order.id} has {events['order.created', order.id]} created")
            for target, event in EVENT_OF_STATUS.items():
                moves = sum(1 for t in history if t.to_status == target)
                if events[event, order.id] != moves:
                    found.append(
                        f"order {order.id}: {events[event, order.id]} {event} events "
                        f"for {moves} transitions to {target}"
                    )
            refunds = [r for r in snapshot.refunds if r.order_id == order.id]
            succeeded = sum(1 for r in refunds if r.status == "succeeded")
            if events["order.refunded", order.id] != succeeded:
                found.append(
                    f"order {order.id}: {events['order.refunded', order.id]} "
                    f"order.refunded events for {succeeded} refunds"
                )
            admin = sum(1 for r in refunds if r.status == "succeeded" and r.of_order_payment)
            moves = sum(1 for t in history if t.to_status in ("partially_refunded", "refunded"))
            if moves != admin:
                found.append(f"order {order.id}: {moves} refund transitions, {admin} refunds")
        return found

    def _total_violations(self, snapshot: Snapshot) -> list[str]:
        """Totals equal items plus bookings; live orders hold every booking they were made
        with, orders that let go of them hold none."""
        found = []
        for order in snapshot.orders:
            items = sum((item.line_total for item in order.items), Decimal("0.00"))
            bookings = sum((b.cost for b in order.bookings), Decimal("0.00"))
            if order.total_amount != items + bookings:
                found.append(
                    f"order {order.id} total {order.total_amount} != "
                    f"{items} items + {bookings} bookings"
                )
            released = [b.entry_id for b in order.bookings if b.released_at is not None]
            held = [b.entry_id for b in order.bookings if b.released_at is None]
            if order.status in ("pending", "failed", *KEEPS_PAYMENT) and released:
                found.append(f"{order.status} order {order.id} let go of bookings {released}")
            if order.status in ("expired", "cancelled", "refunded") and held:
                found.append(f"{order.status} order {order.id} still holds bookings {held}")
            for attempt in snapshot.attempts_of(order.id):
                if attempt.amount != order.total_amount:
                    found.append(
                        f"attempt {attempt.id} of {attempt.amount} for a {order.total_amount} order"
                    )
        return found

    def _settled_violations(self, snapshot: Snapshot) -> list[str]:
        """After a sweep: every payment known, every attempt of a final order (and every
        old attempt) settled and closed at SumUp, no refund pending."""
        found = []
        if unknown := self._unknown_payments(snapshot):
            found.append(f"after a sweep SumUp still has payments we missed: {sorted(unknown)}")
        orders = {o.id: o for o in snapshot.orders}
        for attempt in snapshot.attempts:
            order = orders[attempt.order_id]
            old = order.is_final or order.current_attempt_id != attempt.id
            if old and attempt.settled_at is None:
                found.append(
                    f"after a sweep attempt {attempt.id} of {order.status} order "
                    f"{order.id} is not settled"
                )
            if old and snapshot.sumup_status(attempt) in OPEN_AT_SUMUP:
                found.append(
                    f"after a sweep SumUp can still take money on attempt {attempt.id} "
                    f"of {order.status} order {order.id}"
                )
        pending = [r.id for r in snapshot.refunds if r.status == "pending"]
        if pending:
            found.append(f"after a sweep refunds {pending} are still pending")
        return found

    # --- helpers ----------------------------------------------------------------------

    async def _snapshot(self) -> Snapshot:
        async with self.world.sessions() as db:
            orders = list(
                await db.scalars(
                    select(Order)
                    .options(selectinload(Order.items), selectinload(Order.bookings))
                    .order_by(Order.id)
                )
            )
            attempts = list(await db.scalars(select(CheckoutAttempt).order_by(CheckoutAttempt.id)))
            refunds = list(await db.scalars(select(Refund).order_by(Refund.id)))
            transitions = list(
                await db.scalars(select(OrderTransition).order_by(OrderTransition.id))
            )
            events = [
                (event_type, int(aggregate_id))
                for event_type, aggregate_id in await db.execute(
                    select(DomainEvent.event_type, DomainEvent.aggregate_id).where(
                        DomainEvent.aggregate_type == "order"
                    )
                )
            ]
            entries = list(await db.scalars(select(CalendarEntry).order_by(CalendarEntry.id)))
            lines = list(await db.scalars(select(CartItem).where(CartItem.deleted_at.is_(None))))
        sumup = await self.world.control.stats()
        snapshot = Snapshot(orders, attempts, refunds, transitions, events, entries, lines, sumup)
        self.snapshot = snapshot
        return snapshot

    async def _order(self, order_id: int) -> Order:
        async with self.world.sessions() as db:
            order = await db.scalar(
                select(Order)
                .options(selectinload(Order.items), selectinload(Order.bookings))
                .where(Order.id == order_id)
            )
        assert order is not None
        return order

    async def _pick_order(self, pick: int, prefer: Iterable[str] | None = None) -> Order | None:
        """One of the orders, of the `prefer`red statuses when there are such."""
        async with self.world.sessions() as db:
            rows = (await db.execute(select(Order.id, Order.status).order_by(Order.id))).all()
        ids = [row.id for row in rows if prefer is None or row.status in prefer]
        ids = ids or [row.id for row in rows]
        return await self._order(ids[pick % len(ids)]) if ids else None

    async def _scope_is_empty(self, scope: str | None) -> bool:
        snapshot_lines = 0
        async with self.world.sessions() as db:
            for product in self.products:
                if scope not in (None, product.page):
                    continue
                snapshot_lines += int(
                    await db.scalar(
                        select(func.count()).where(
                            CartItem.session_id == self.session_id,
                            CartItem.product_id == product.id,
                            CartItem.deleted_at.is_(None),
                        )
                    )
                    or 0
                )
            calendars = [c for page, c in self.calendars.items() if scope in (None, page)]
            entries = await db.scalar(
                select(func.count()).where(
                    CalendarEntry.session_id == self.session_id,
                    CalendarEntry.state == "pending",
                    CalendarEntry.deleted_at.is_(None),
                    CalendarEntry.calendar_id.in_(calendars),
                )
            )
        return snapshot_lines == 0 and not entries

    async def _is_stale(self, order: Order) -> str | None:
        """Why paying this order again must be refused (it is no longer what it was)."""
        if order.status not in ("failed", "expired"):
            return None
        async with self.world.sessions() as db:
            for item in order.items:
                price = await db.scalar(
                    select(Product.regular_price).where(Product.id == item.product_id)
                )
                if price != item.unit_price:
                    return f"{item.product_title} now costs {price}"
            for booking in order.bookings:
                if booking.released_at is None:
                    continue
                entry = await db.get(CalendarEntry, booking.entry_id)
                free = (
                    entry is not None
                    and entry.state == "pending"
                    and entry.order_id is None
                    and entry.deleted_at is None
                    and entry.cost == booking.cost
                )
                if not free:
                    return f"booking {booking.entry_id} is gone"
        return None

    async def _shopper_action(self, action: Callable[[], Coroutine[Any, Any, T]]) -> tuple[T, bool]:
        """Run a shopper's request, with SumUp failing throughout when a fault is due."""
        fault, self.fault = self.fault, None
        if fault is not None:
            only = {"only": "deactivate"} if fault == "deactivate" else {}
            await self.world.control.behave(fail_status=503, **only)
        self.in_fault = fault is not None
        try:
            return await action(), fault is not None
        finally:
            self.in_fault = False
            if fault is not None:
                await self.world.control.behave()

    async def _pay_at_sumup(self, attempt: CheckoutAttempt, *, approve: bool) -> None:
        """Press Pay (or Decline) at SumUp; the webhook goes out as `next_webhook` said."""
        mode, self.webhook = self.webhook, "normal"
        assert attempt.sumup_checkout_id is not None
        if mode != "normal":
            await self.world.control.behave(webhook=mode)
        delivered = self.world.webhooks[attempt.order_id]
        try:
            settle = self.world.control.pay if approve else self.world.control.decline
            checkout = await settle(attempt.sumup_checkout_id)
        finally:
            if mode != "normal":
                await self.world.control.behave()
        self.saw(f"{'pay' if approve else 'decline'} -> {checkout['status']}, webhook {mode}")
        if mode != "drop" and self.world.webhooks[attempt.order_id] == delivered:
            # The sandbox posts on a pooled connection that the app's server may close as
            # idle at that moment; SumUp would retry, the sandbox does not: a lost webhook.
            self.saw("webhook lost on its way to the app")
            mode = "drop"
        if mode == "drop":
            if checkout["status"] == "PAID":
                self.unseen.add(attempt.sumup_checkout_id)
            return
        snapshot = await self._snapshot()
        [recorded] = [a for a in snapshot.attempts if a.id == attempt.id]
        assert recorded.sumup_status == checkout["status"], (
            f"after the webhook SumUp says {checkout['status']}, attempt {attempt.id} says "
            f"{recorded.sumup_status} (settled {recorded.settled_at}, retired "
            f"{recorded.retired_at}, checked {recorded.checked_at}, origin {recorded.origin})"
        )
        if checkout["status"] == "PAID":
            [order] = [o for o in snapshot.orders if o.id == attempt.order_id]
            refunded = [
                r for r in snapshot.refunds if r.attempt_id == attempt.id and not r.of_order_payment
            ]
            kept = order.paid_attempt_id == attempt.id
            self.saw(f"payment {'kept' if kept else 'refunded'} by a {order.status} order")
            assert kept or (recorded.surplus_reason and refunded), (
                f"payment on attempt {attempt.id} neither paid order {order.id} "
                f"({order.status}) nor was refunded"
            )
            assert kept or refunded[0].status == "succeeded", "a surplus was not refunded at once"

    async def _expect_payment_page(
        self, response: Any, *, shown_total: Decimal | None = None
    ) -> Landing:
        """The shopper was sent to SumUp's page of the order's current attempt (for the
        total the cart showed), or to the return page of an order that turned out paid."""
        assert response.status_code == 303, (
            f"{response.status_code} instead of a payment page: {await _page_says(response)}"
        )
        location = response.headers["Location"]
        pay_prefix = f"{self.world.sandbox_url}/pay/"
        if location.startswith(pay_prefix):
            checkout_id = location.removeprefix(pay_prefix)
            snapshot = await self._snapshot()
            [attempt] = [a for a in snapshot.attempts if a.sumup_checkout_id == checkout_id]
            [order] = [o for o in snapshot.orders if o.id == attempt.order_id]
            assert order.status == "pending" and order.current_attempt_id == attempt.id, (
                f"sent to attempt {attempt.id} of {order.status} order {order.id} "
                f"(current {order.current_attempt_id})"
            )
            assert snapshot.sumup_status(attempt) == "PENDING"
            if shown_total is not None:
                assert order.total_amount == shown_total, (
                    f"the cart showed {shown_total}, order {order.id} charges {order.total_amount}"
                )
            return Landing(order.id, checkout_id)
        match = RETURN_PAGE.fullmatch(location)
        assert match, f"checkout sent the shopper to {location}"
        order = await self._order(int(match.group(1)))
        assert order.status in PAID_LIKE, f"return page of a {order.status} order"
        return Landing(order.id, None)

    async def _reconcile(self) -> ReconcileReport:
        report = await reconcile_orders(
            self.world.sessions,
            self.world.context,
            batch_size=200,
            expire_after=self.world.expire_after,
        )
        for what in ("paid", "failed", "expired", "retired", "refunds"):
            if count := getattr(report, what):
                self.saw(f"sweep {what}")
                del count
        return report

    async def _settle_everything(self) -> None:
        """A sweep that re-checks every open attempt now, then the settled invariants."""
        await self._make_attempts_due(nothing_under_way=True)
        await self._reconcile()
        await self._check(settled=True)

    async def _make_attempts_due(self, *, nothing_under_way: bool) -> None:
        """Test arrangement: the sweep leaves an attempt checked in the last 30 s alone,
        and one whose create may still be under way; make every open attempt due now
        (between the machine's steps no create is under way)."""
        async with self.world.sessions() as db:
            await db.execute(
                update(CheckoutAttempt)
                .where(CheckoutAttempt.settled_at.is_(None))
                .values(checked_at=None)
            )
            if nothing_under_way:
                await db.execute(
                    update(CheckoutAttempt)
                    .where(
                        CheckoutAttempt.settled_at.is_(None),
                        CheckoutAttempt.sumup_checkout_id.is_(None),
                    )
                    .values(created_at=CheckoutAttempt.created_at - timedelta(minutes=1))
                )
            await db.commit()

    async def _get(self, path: str) -> Any:
        response = await self.client.get(path, headers={"Accept": "text/html"})
        await self._no_server_error(response, path)
        return response

    async def _post(self, path: str, data: dict[str, Any] | None = None) -> Any:
        response = await post_form(self.client, path, data)
        await self._no_server_error(response, path)
        return response

    async def _no_server_error(self, response: Any, path: str) -> None:
        """No 5xx, except SumUp's trouble shown as such while SumUp is failing."""
        if response.status_code < 500:
            return
        body = await _page_says(response)
        assert self.in_fault and response.status_code != 500, (
            f"{response.status_code} from {path}: {body[:600]}"
        )


def _machine_settings() -> hypothesis_settings:
    long_form = "LIFECYCLE_MACHINE_EXAMPLES" in os.environ
    phases: tuple[Phase, ...] = (
        tuple(Phase) if long_form else (Phase.explicit, Phase.reuse, Phase.generate)
    )
    return hypothesis_settings(
        max_examples=EXAMPLES,
        stateful_step_count=STEPS,
        deadline=None,
        phases=phases,
        database=DirectoryBasedExampleDatabase(ROOT / ".data" / "hypothesis-lifecycle"),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        print_blob=True,
    )


async def test_payment_lifecycle_keeps_money_bookings_and_events_consistent(
    app: Quart, sandbox_control: Any, sumup_sandbox: Any, settings: Settings
) -> None:
    recorder = ErrorRecorder()
    logging.getLogger().addHandler(recorder)
    world = World(
        app=app,
        loop=asyncio.get_running_loop(),
        control=sandbox_control,
        sandbox_url=sumup_sandbox.base_url,
        token=settings.internal_api_token.reveal(),
        errors=recorder,
    )
    machine = type("LifecycleMachineRun", (LifecycleMachine,), {"world": world})
    # Test instrumentation, added to the running app and removed after: which webhooks
    # reached it (a hook list, as the app has served requests and is set up).
    hooks = app.before_request_funcs.setdefault(None, [])
    hooks.append(world.count_webhook)
    try:
        await asyncio.to_thread(run_state_machine_as_test, machine, settings=_machine_settings())
    finally:
        hooks.remove(world.count_webhook)
        logging.getLogger().removeHandler(recorder)
        await sandbox_control.reset()  # leave SumUp's side as the next test expects it
        print("what the machine did:", *sorted(world.seen.items()), sep="\n  ")
