"""What must hold after the run, checked over the database, SumUp's side and the stream.

Each check returns an `Invariant`: how many things it looked at, the violations it
found (each a line naming the rows), and so whether it passed. The checks read with
plain SQL on their own connection: they judge the app's data, not its code.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg
from redis.asyncio import Redis

from soak.faults import SANDBOX_KINDS, FaultWindow
from soak.traffic import DROPPED, REFUSED, TIMED_OUT, Answer

ZERO = Decimal("0.00")
# How long after a fault ends its effects may still be seen (a request that began
# during it, a pool that finds a dead connection on its next use).
GRACE_SECONDS = 5.0
# Routes that talk to SumUp: a gateway answer (502/504) there is the app's own
# message that SumUp failed, allowed while the sandbox is made to fail.
PAYMENT_ROUTES = ("/checkout/", "/pay/", "/recheck/", "/refund", "/checkout/return/")


@dataclass
class Invariant:
    name: str
    checked: int = 0
    violations: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def passed(self) -> bool:
        return not self.violations


@dataclass(frozen=True)
class SandboxPayment:
    """A transaction SumUp took money with."""

    checkout_id: str
    reference: str
    transaction_id: str
    amount: Decimal
    refunded: Decimal


def sandbox_payments(stats: dict[str, Any]) -> list[SandboxPayment]:
    """Every money-taking transaction in the sandbox's stats."""
    payments = []
    for checkout in stats["checkouts"]:
        for transaction in checkout["transactions"]:
            if transaction["status"] in ("SUCCESSFUL", "REFUNDED"):
                payments.append(
                    SandboxPayment(
                        checkout_id=checkout["id"],
                        reference=checkout["checkout_reference"],
                        transaction_id=transaction["id"],
                        amount=Decimal(transaction["amount"]),
                        refunded=Decimal(transaction["refunded_amount"]),
                    )
                )
    return payments


async def payments_recorded_once(
    db: asyncpg.Connection, payments: list[SandboxPayment]
) -> Invariant:
    """Every payment SumUp took is one PAID attempt here, and nothing else is PAID."""
    result = Invariant("every SumUp payment recorded here exactly once")
    attempts = await db.fetch(
        "SELECT id, sumup_checkout_id, transaction_id, amount FROM checkout_attempts "
        "WHERE sumup_status = 'PAID'"
    )
    by_checkout: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for row in attempts:
        by_checkout[row["sumup_checkout_id"]].append(row)
    taken = {payment.checkout_id: payment for payment in payments}
    result.checked = len(payments)
    for payment in payments:
        rows = by_checkout.get(payment.checkout_id, [])
        if len(rows) != 1:
            result.violations.append(
                f"SumUp took {payment.amount} on {payment.reference} "
                f"({payment.checkout_id}); PAID attempts here: {len(rows)}"
            )
        elif rows[0]["transaction_id"] != payment.transaction_id:
            result.violations.append(
                f"attempt {rows[0]['id']} names transaction {rows[0]['transaction_id']}, "
                f"SumUp's is {payment.transaction_id}"
            )
        elif Decimal(rows[0]["amount"]) != payment.amount:
            result.violations.append(
                f"attempt {rows[0]['id']} says {rows[0]['amount']}, SumUp took {payment.amount}"
            )
    for row in attempts:
        if row["sumup_checkout_id"] not in taken:
            result.violations.append(
                f"attempt {row['id']} is PAID here but SumUp took no money on it"
            )
    sum_here = sum((Decimal(row["amount"]) for row in attempts), ZERO)
    sum_there = sum((payment.amount for payment in payments), ZERO)
    result.note = f"SumUp took {sum_there}, PAID attempts here sum to {sum_here}"
    if sum_here != sum_there:
        result.violations.append(result.note)
    return result


async def payments_kept_or_refunded(
    db: asyncpg.Connection, payments: list[SandboxPayment], money: dict[str, Any]
) -> Invariant:
    """Each payment is kept by exactly one order or refunded in full; money adds up."""
    result = Invariant("every payment kept by exactly one order or refunded")
    attempts = {
        row["sumup_checkout_id"]: row
        for row in await db.fetch(
            "SELECT a.id, a.sumup_checkout_id, a.amount, a.surplus_reason, a.order_id, "
            "  (SELECT count(*) FROM orders o WHERE o.paid_attempt_id = a.id) AS kept_by, "
            "  (SELECT coalesce(sum(r.amount), 0) FROM refunds r "
            "    WHERE r.attempt_id = a.id AND r.status = 'succeeded') AS refunded_here "
            "FROM checkout_attempts a WHERE a.sumup_status = 'PAID'"
        )
    }
    result.checked = len(payments)
    for payment in payments:
        row = attempts.get(payment.checkout_id)
        if row is None:
            continue  # reported by payments_recorded_once
        kept = int(row["kept_by"])
        refunded_here = Decimal(row["refunded_here"])
        if kept > 1:
            result.violations.append(f"attempt {row['id']} kept by {kept} orders")
        elif kept == 0 and payment.refunded != payment.amount:
            result.violations.append(
                f"attempt {row['id']} (order {row['order_id']}, {row['surplus_reason']}) is kept "
                f"by no order, yet SumUp refunded {payment.refunded} of {payment.amount}"
            )
        if refunded_here != payment.refunded:
            result.violations.append(
                f"attempt {row['id']}: refunds here {refunded_here}, at SumUp {payment.refunded}"
            )
    kept_total = Decimal(
        await db.fetchval(
            "SELECT coalesce(sum(total_amount - refunded_amount), 0) FROM orders "
            "WHERE paid_attempt_id IS NOT NULL"
        )
    )
    taken = sum((Decimal(m["taken"]) for m in money.values()), ZERO)
    refunded = sum((Decimal(m["refunded"]) for m in money.values()), ZERO)
    result.note = (
        f"taken {taken} - refunded {refunded} = {taken - refunded} at SumUp; "
        f"orders kept {kept_total}"
    )
    if taken - refunded != kept_total:
        result.violations.append(result.note)
    mismatched = await db.fetch(
        "SELECT o.id, o.refunded_amount, coalesce(sum(r.amount), 0) AS refunds "
        "FROM orders o LEFT JOIN refunds r ON r.order_id = o.id AND r.status = 'succeeded' "
        "  AND r.of_order_payment "
        "GROUP BY o.id HAVING o.refunded_amount <> coalesce(sum(r.amount), 0)"
    )
    for row in mismatched:
        result.violations.append(
            f"order {row['id']} says {row['refunded_amount']} refunded, its refunds sum "
            f"to {row['refunds']}"
        )
    return result


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def read_stream(redis: Redis, stream: str) -> list[dict[str, str]]:
    """Every entry of the stream (XRANGE in pages), as text fields."""
    entries: list[dict[str, str]] = []
    start = "-"
    while True:
        page: list[Any] = list(await redis.xrange(stream, min=start, max="+", count=1000) or [])
        if start != "-":
            page = page[1:]
        if not page:
            return entries
        for _entry_id, fields in page:
            entries.append({_text(k): _text(v) for k, v in (fields or {}).items()})
        start = _text(page[-1][0])


async def one_paid_event_per_paid_order(
    db: asyncpg.Connection, stream: list[dict[str, str]]
) -> Invariant:
    """One `order.paid` per paid order, in the outbox and (deduped by id) in the stream;
    every outbox row published; nothing in the stream the outbox does not hold."""
    result = Invariant("one order.paid per paid order (outbox and stream)")
    events = await db.fetch(
        "SELECT id, event_type, aggregate_id, published_at IS NOT NULL AS published "
        "FROM domain_events"
    )
    outbox = {int(row["id"]): row for row in events}
    paid_orders = {
        int(row["id"]) for row in await db.fetch("SELECT id FROM orders WHERE paid_at IS NOT NULL")
    }
    result.checked = len(paid_orders)
    paid_events: Counter[int] = Counter(
        int(row["aggregate_id"]) for row in events if row["event_type"] == "order.paid"
    )
    for order_id in sorted(paid_orders | set(paid_events)):
        count = paid_events.get(order_id, 0)
        if count != 1 or order_id not in paid_orders:
            state = "paid" if order_id in paid_orders else "not paid"
            result.violations.append(f"order {order_id} ({state}) has {count} order.paid rows")
    unpublished = [event_id for event_id, row in outbox.items() if not row["published"]]
    if unpublished:
        result.violations.append(
            f"{len(unpublished)} outbox rows never published: {unpublished[:10]}"
        )
    seen: dict[int, dict[str, str]] = {}
    copies = 0
    for entry in stream:
        event_id = int(entry["event_id"])
        if event_id in seen:
            copies += 1
            continue
        seen[event_id] = entry
    for event_id, entry in seen.items():
        row = outbox.get(event_id)
        if row is None:
            result.violations.append(f"stream has event {event_id}, the outbox does not")
        elif row["event_type"] != entry["type"] or row["aggregate_id"] != entry["aggregate_id"]:
            result.violations.append(f"stream event {event_id} differs from its outbox row")
    missing = [
        event_id for event_id, row in outbox.items() if row["published"] and event_id not in seen
    ]
    if missing:
        result.violations.append(
            f"{len(missing)} published outbox rows are not in the stream: {missing[:10]}"
        )
    stream_paid: Counter[int] = Counter(
        int(entry["aggregate_id"]) for entry in seen.values() if entry["type"] == "order.paid"
    )
    for order_id in paid_orders:
        if stream_paid.get(order_id, 0) != 1:
            result.violations.append(
                f"order {order_id}: {stream_paid.get(order_id, 0)} distinct order.paid "
                "in the stream"
            )
    by_type = Counter(entry["type"] for entry in seen.values())
    result.note = (
        f"{len(stream)} stream entries, {len(seen)} distinct event ids ({copies} re-published "
        f"copies); by type: " + ", ".join(f"{t} {n}" for t, n in sorted(by_type.items()))
    )
    created = await db.fetchval("SELECT count(*) FROM orders")
    if by_type.get("order.created", 0) != created:
        result.violations.append(
            f"{created} orders, {by_type.get('order.created', 0)} order.created in the stream"
        )
    refunds = await db.fetchval("SELECT count(*) FROM refunds WHERE status = 'succeeded'")
    if by_type.get("order.refunded", 0) != refunds:
        result.violations.append(
            f"{refunds} succeeded refunds, {by_type.get('order.refunded', 0)} order.refunded"
        )
    return result


# The cart each paid order's items were bought from, and how many the payment was to
# take out of it. An order a sign-in claimed (`claimed_by_user_at`) was bought from the
# anonymous cart it still names in `session_id`: in full when it was paid before the
# claim (its items have no `merged_quantity`); when claimed unpaid, the payment takes
# from the user's line what the merge moved in, the rest from the anonymous cart.
# `moved_at` is when the merge took that cart's lines away: such a line was still in
# the cart after the payment, so it counts as left behind if the payment missed it.
LEFT_IN_CART = """
WITH bought AS (
  SELECT o.id AS order_id, o.paid_at, o.user_id, o.session_id, o.claimed_by_user_at,
    i.product_id, i.market_place_id, i.quantity, i.merged_quantity
  FROM orders o JOIN order_items i ON i.order_id = o.id
  WHERE o.paid_attempt_id IS NOT NULL
), bought_from AS (
  SELECT order_id, paid_at, product_id, market_place_id, quantity AS bought,
    user_id, CASE WHEN user_id IS NULL THEN session_id END AS session_id,
    NULL::timestamptz AS moved_at
  FROM bought WHERE claimed_by_user_at IS NULL
  UNION ALL
  SELECT order_id, paid_at, product_id, market_place_id, quantity, NULL, session_id,
    claimed_by_user_at
  FROM bought WHERE claimed_by_user_at IS NOT NULL AND merged_quantity IS NULL
  UNION ALL
  SELECT order_id, paid_at, product_id, market_place_id, merged_quantity, user_id, NULL, NULL
  FROM bought WHERE merged_quantity > 0
  UNION ALL
  SELECT order_id, paid_at, product_id, market_place_id, quantity - merged_quantity, NULL,
    session_id, NULL
  FROM bought WHERE quantity > merged_quantity
)
SELECT b.order_id, b.product_id, b.bought, b.user_id, c.id AS line_id,
  c.quantity AS in_cart, c.deleted_at IS NOT NULL AS moved
FROM bought_from b JOIN cart_items c ON c.product_id = b.product_id
  AND c.market_place_id = b.market_place_id
  AND (c.deleted_at IS NULL OR c.deleted_at = b.moved_at)
  AND ((b.user_id IS NOT NULL AND c.user_id = b.user_id)
    OR (b.user_id IS NULL AND c.user_id IS NULL AND c.session_id = b.session_id))
WHERE c.updated_at < b.paid_at
ORDER BY b.order_id, c.id
"""


async def no_line_bought_and_still_in_cart(db: asyncpg.Connection) -> Invariant:
    """A paid order took its lines out of the cart it was bought from: no line of the same
    product there, untouched since the payment, is still in that cart (or stayed in it
    until a sign-in moved it). One touched since is a new choice."""
    result = Invariant("no cart line both bought and still in the cart")
    result.checked = await db.fetchval(
        "SELECT count(*) FROM order_items i JOIN orders o ON o.id = i.order_id "
        "WHERE o.paid_attempt_id IS NOT NULL"
    )
    rows = await db.fetch(LEFT_IN_CART)
    for row in rows:
        cart = "the user's cart" if row["user_id"] is not None else "the anonymous cart"
        where = "until a sign-in moved it" if row["moved"] else "untouched since"
        result.violations.append(
            f"order {row['order_id']} bought {row['bought']} × product {row['product_id']} "
            f"from {cart}, cart line {row['line_id']} still holds {row['in_cart']} {where}"
        )
    return result


async def no_booking_in_two_live_orders(db: asyncpg.Connection) -> Invariant:
    """No calendar entry held by two live orders, and every held booking is the entry's."""
    result = Invariant("no calendar entry claimed by two live orders")
    live = ["pending", "failed", "expired", "paid", "partially_refunded"]
    result.checked = await db.fetchval("SELECT count(DISTINCT entry_id) FROM order_bookings")
    for row in await db.fetch(
        "SELECT b.entry_id, array_agg(b.order_id ORDER BY b.order_id) AS orders "
        "FROM order_bookings b JOIN orders o ON o.id = b.order_id "
        "WHERE b.released_at IS NULL AND o.status = ANY($1::text[]) "
        "GROUP BY b.entry_id HAVING count(*) > 1",
        live,
    ):
        result.violations.append(f"entry {row['entry_id']} held by orders {list(row['orders'])}")
    for row in await db.fetch(
        "SELECT b.entry_id, b.order_id, o.status, e.order_id AS entry_order, e.state "
        "FROM order_bookings b JOIN orders o ON o.id = b.order_id "
        "JOIN calendar_entries e ON e.id = b.entry_id "
        "WHERE b.released_at IS NULL AND o.status = ANY($1::text[]) "
        "  AND (e.order_id IS DISTINCT FROM b.order_id "
        "    OR e.state NOT IN ('ordered', 'provisional', 'confirmed'))",
        live,
    ):
        result.violations.append(
            f"order {row['order_id']} ({row['status']}) holds entry {row['entry_id']}, "
            f"which is {row['state']} for order {row['entry_order']}"
        )
    for row in await db.fetch(
        "SELECT e.id, e.order_id, e.state, o.status FROM calendar_entries e "
        "JOIN orders o ON o.id = e.order_id "
        "WHERE e.state IN ('ordered', 'provisional') AND o.status IN ('cancelled', 'refunded')"
    ):
        result.violations.append(
            f"entry {row['id']} is {row['state']} for order {row['order_id']}, "
            f"which is {row['status']}"
        )
    return result


async def totals_add_up(db: asyncpg.Connection) -> Invariant:
    """Every order's total is its items plus its bookings; every attempt asked for it."""
    result = Invariant("every order's total = its items + its bookings")
    result.checked = await db.fetchval("SELECT count(*) FROM orders")
    for row in await db.fetch(
        "SELECT o.id, o.total_amount, "
        "  (SELECT coalesce(sum(line_total), 0) FROM order_items WHERE order_id = o.id) AS items, "
        "  (SELECT coalesce(sum(cost), 0) FROM order_bookings WHERE order_id = o.id) AS bookings "
        "FROM orders o"
    ):
        if Decimal(row["total_amount"]) != Decimal(row["items"]) + Decimal(row["bookings"]):
            result.violations.append(
                f"order {row['id']}: total {row['total_amount']} ≠ items {row['items']} "
                f"+ bookings {row['bookings']}"
            )
    for row in await db.fetch(
        "SELECT a.id, a.order_id, a.amount, o.total_amount FROM checkout_attempts a "
        "JOIN orders o ON o.id = a.order_id WHERE a.amount <> o.total_amount"
    ):
        result.violations.append(
            f"attempt {row['id']} of order {row['order_id']} asked {row['amount']}, "
            f"the order's total is {row['total_amount']}"
        )
    return result


@dataclass
class FiveHundreds:
    """5xx and missing answers, sorted by whether a fault explains them."""

    during_outages: Counter[str] = field(default_factory=Counter)
    unexplained: list[Answer] = field(default_factory=list)
    # The faults under way (or just over) when each unexplained one was answered.
    faults_at: list[list[str]] = field(default_factory=list)

    def as_json(self) -> list[dict[str, Any]]:
        return [
            {
                "status": answer.status,
                "method": answer.method,
                "route": answer.route,
                "instance": answer.instance,
                "at": round(answer.started, 2),
                "faults": faults,
            }
            for answer, faults in zip(self.unexplained, self.faults_at, strict=True)
        ]


def _windows_at(answer: Answer, windows: list[FaultWindow]) -> list[FaultWindow]:
    return [
        window
        for window in windows
        if answer.started <= window.end + GRACE_SECONDS and answer.ended >= window.start
    ]


def _explained(answer: Answer, windows: list[FaultWindow]) -> bool:
    kinds = {window.kind for window in windows}
    if answer.status in (REFUSED, DROPPED):
        return any(
            window.kind == "app instance SIGKILLed and restarted"
            and f"instance {answer.instance}," in window.detail
            for window in windows
        )
    if answer.status == 503:
        return bool(kinds)
    if answer.status in (502, 504):
        return bool(kinds & SANDBOX_KINDS) and any(
            route in answer.route for route in PAYMENT_ROUTES
        )
    return False


def sort_failures(answers: list[Answer], windows: list[FaultWindow]) -> FiveHundreds:
    """Each 5xx (and refused or dropped request) explained by a fault, or not."""
    sorted_out = FiveHundreds()
    for answer in answers:
        if answer.status == TIMED_OUT or 0 < answer.status < 500 or answer.status >= 600:
            continue  # a slow answer is not a wrong one: timeouts are counted on their own
        at = _windows_at(answer, windows)
        if _explained(answer, at):
            label = "refused/dropped" if answer.status <= 0 else str(answer.status)
            sorted_out.during_outages[label] += 1
        else:
            sorted_out.unexplained.append(answer)
            sorted_out.faults_at.append(sorted({window.kind for window in at}))
    return sorted_out


def no_unexplained_5xx(
    answers: list[Answer], windows: list[FaultWindow]
) -> tuple[Invariant, FiveHundreds]:
    """No 5xx except 503 (and SumUp's 502/504 on payment routes) during a fault."""
    result = Invariant("no 5xx but 503 during outages (502/504: SumUp failing, payment routes)")
    result.checked = len(answers)
    failures = sort_failures(answers, windows)
    for answer, kinds in zip(failures.unexplained, failures.faults_at, strict=True):
        at = ", ".join(kinds) or "no fault"
        label = {REFUSED: "refused", DROPPED: "dropped"}.get(answer.status, str(answer.status))
        body = " ".join(answer.detail.split())[:160]
        result.violations.append(
            f"{label} {answer.method} {answer.route} on {answer.instance} at "
            f"{answer.started:.1f}s ({at}) {body}"
        )
    return result, failures


def as_json(invariants: list[Invariant]) -> list[dict[str, Any]]:
    return [
        {
            "name": i.name,
            "checked": i.checked,
            "violations": len(i.violations),
            "passed": i.passed,
            "note": i.note,
            "examples": i.violations[:20],
        }
        for i in invariants
    ]


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)
