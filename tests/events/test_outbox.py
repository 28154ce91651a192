"""The outbox: an event is written with its change, and only a valid one."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import DomainEvent
from services.events import emit_event, order_event_payload
from tests.events.factories import emit_order_created, make_order, outbox_rows


async def test_rolled_back_transaction_leaves_no_event(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        await session.begin()
        await emit_order_created(session)
        await session.rollback()
    assert await outbox_rows(sessions) == []


async def test_committed_transaction_leaves_exactly_one_event(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        event_id = await emit_order_created(session, entry_ids=[4, 5])

    (event,) = await outbox_rows(sessions)
    assert event.id == event_id
    assert (event.event_type, event.aggregate_type) == ("order.created", "order")
    assert event.aggregate_id == str(event.payload["order_id"])
    assert event.published_at is None
    assert event.attempts == 0


async def test_emit_event_flushes_but_never_commits(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        await emit_order_created(session)
        async with sessions() as other:
            seen = await other.scalar(select(func.count()).select_from(DomainEvent))
        assert seen == 0
        assert session.in_transaction()


async def test_order_payload_carries_identity_money_as_strings_and_timestamps(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        order = await make_order(session)
        order.status = "paid"
        order.paid_at = datetime(2026, 11, 24, 10, 30, tzinfo=UTC)
        order.sumup_transaction_code = "TX42"
        payload = order_event_payload(
            order, entry_ids=[9], reason="paid via webhook", sumup_checkout_id="chk_1"
        )

    assert payload == {
        "order_id": order.id,
        "number": f"RA-{order.id:06d}",
        "user_id": 7,
        "session_id": None,
        "page_post_id": 3,
        "status": "paid",
        "currency": "GBP",
        "total": "12.50",
        "items": [
            {
                "product_id": 11,
                "title": "Sourdough",
                "quantity": 2,
                "unit_price": "4.25",
                "line_total": "8.50",
            },
            {
                "product_id": 12,
                "title": "Eggs",
                "quantity": 1,
                "unit_price": "4.00",
                "line_total": "4.00",
            },
        ],
        "entry_ids": [9],
        "sumup_checkout_id": "chk_1",
        "sumup_transaction_code": "TX42",
        "created_at": order.created_at.isoformat(),
        "paid_at": "2026-11-24T10:30:00+00:00",
        "reason": "paid via webhook",
    }


@pytest.mark.parametrize(
    ("event_type", "message"),
    [("order.shipped", "unknown event type"), ("order.create", "unknown event type")],
)
async def test_unknown_event_type_is_refused(
    sessions: async_sessionmaker[AsyncSession], event_type: str, message: str
) -> None:
    async with sessions() as session, session.begin():
        order = await make_order(session)
        with pytest.raises(ValueError, match=message):
            await emit_event(
                session,
                event_type,
                order_event_payload(order, entry_ids=[]),
                aggregate=("order", order.id),
            )
    assert await outbox_rows(sessions) == []


async def test_payload_that_does_not_match_the_schema_is_refused(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        order = await make_order(session)
        payload = order_event_payload(order, entry_ids=[])
        payload["total"] = 12.5
        with pytest.raises(ValueError, match=r"payload\.total must be a string"):
            await emit_event(session, "order.created", payload, aggregate=("order", order.id))
    assert await outbox_rows(sessions) == []


async def test_payload_whose_status_contradicts_the_event_is_refused(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        order = await make_order(session)
        with pytest.raises(ValueError, match="status 'pending', expected paid"):
            await emit_event(
                session,
                "order.paid",
                order_event_payload(order, entry_ids=[]),
                aggregate=("order", order.id),
            )


async def test_event_without_an_aggregate_is_refused(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        order = await make_order(session)
        with pytest.raises(ValueError, match="aggregate"):
            await emit_event(
                session,
                "order.created",
                order_event_payload(order, entry_ids=[]),
                aggregate=("", order.id),
            )
