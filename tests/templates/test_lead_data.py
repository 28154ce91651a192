"""The pages show the data the order services are adding (refunds, released bookings,
unpaid orders) as soon as it is passed, and render without it (see tests/orders)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from quart import Quart, g, render_template

from bp.cart.services.page_cart import CartView

PLACED = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
async def rendering(app: Quart) -> AsyncIterator[Any]:
    """Render a template as a request to `path` would."""
    sessions: list[Any] = []

    async def render(path: str, template: str, **context: Any) -> str:
        async with app.test_request_context(path):
            g.db = app.extensions["db_sessionmaker"]()
            sessions.append(g.db)
            return await render_template(template, **context)

    yield render
    for session in sessions:
        await session.close()


def _order(**overrides: Any) -> SimpleNamespace:
    values: dict[str, Any] = {
        "id": 7,
        "number": "RA-000007",
        "status": "partially_refunded",
        "currency": "GBP",
        "total_amount": Decimal("47.50"),
        "held_total": Decimal("47.50"),
        "refunded_total": Decimal("12.50"),
        "created_at": PLACED,
        "paid_at": PLACED,
        "sumup_transaction_code": "TX1",
        "current_attempt_id": 1,
        "is_unpaid": False,
        "items": [],
    }
    values.update(overrides)
    return SimpleNamespace(**values)


def _entry(name: str, *, released: bool) -> SimpleNamespace:
    return SimpleNamespace(
        name=name,
        start_at=datetime(2026, 7, 4, 17, 0, tzinfo=UTC),
        state="provisional",
        cost=Decimal("12.50"),
        currency="GBP",
        released=released,
    )


async def test_an_order_page_lists_refunds_and_says_when_money_went_back_by_itself(
    rendering: Any,
) -> None:
    refunds = [
        SimpleNamespace(
            amount=Decimal("12.50"),
            currency="GBP",
            reason="automatic: order was already paid",
            status="succeeded",
            created_at=datetime(2026, 3, 3, 9, 30, tzinfo=UTC),
            requested_by="auto",
        )
    ]
    html = await rendering(
        "/orders/7/", "order/detail.html", order=_order(), entries=[], history=[], refunds=refunds
    )
    assert "Partly refunded" in html
    assert 'data-testid="auto-refund"' in html and "We refunded £12.50 automatically." in html
    assert "could no longer take it (order was already paid)" in html
    assert 'data-testid="refunded-total">Refunded: £12.50' in html
    assert "3 Mar 2026, 09:30 GMT" in html and "(automatic)" in html


async def test_a_released_booking_is_shown_released_and_struck_from_the_total(
    rendering: Any,
) -> None:
    entries = [_entry("Barn dance", released=True), _entry("Folk night", released=False)]
    html = await rendering(
        "/orders/7/", "order/detail.html", order=_order(), entries=entries, history=[]
    )
    released, kept = html.split('data-testid="order-entry"')[1:3]
    assert "Released" in released and "<del>£12.50</del>" in released
    assert "Booking confirmed on payment" in kept and "<del>" not in kept
    assert "Sat 4 Jul 2026, 18:00 BST" in html


async def test_an_order_page_without_refund_data_shows_no_refund_parts(rendering: Any) -> None:
    order = _order(status="paid", refunded_total=None)
    html = await rendering("/orders/7/", "order/detail.html", order=order, entries=[], history=[])
    assert "Refunds" not in html and "refunded-total" not in html and "auto-refund" not in html


@pytest.mark.parametrize("template", ["cart/overview.html", "cart/page.html"])
async def test_the_cart_offers_to_pay_or_cancel_an_unpaid_order(
    rendering: Any, template: str
) -> None:
    unpaid = SimpleNamespace(
        id=12,
        number="RA-000012",
        total_amount=Decimal("35.00"),
        currency="GBP",
        holds="Bread-making workshop",
    )
    page = SimpleNamespace(id=1, slug="riverside-cafe", title="Riverside Café")
    view = CartView([], Decimal("0.00"), "GBP")
    html = await rendering("/cart/", template, view=view, page=page, unpaid_orders=[unpaid])
    notice = html[html.index('data-testid="unpaid-order"') :]
    assert "Unpaid order RA-000012: pay now or cancel." in notice
    assert "It holds Bread-making workshop, £35.00." in notice
    assert 'action="/orders/12/pay/"' in notice
    assert 'href="/orders/12/cancel/"' in notice
