"""Paying an order again, re-checking it with SumUp, and cancelling it."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from quart.typing import TestClientProtocol as Client
from sqlalchemy.ext.asyncio import AsyncSession

from tests.orders.factories import (
    checkout_id,
    current_attempt,
    event_count,
    latest_order,
    place_order,
    reload,
    sandbox_status,
)
from tests.shopper import csrf_token, page_text, post_form


async def _then_detail(client: Client, response: Any, order_id: int) -> str:
    """Follow the 303 back to the order, where the flash message is shown."""
    assert response.status_code == 303
    assert response.headers["Location"] == f"/orders/{order_id}/"
    return await page_text(await client.get(response.headers["Location"]))


async def test_pay_now_starts_a_new_checkout_with_a_new_reference_and_retires_the_open_one(
    client: Client, db: AsyncSession, sandbox_control: Any, sumup_sandbox: Any
) -> None:
    order = (await place_order(client, db)).order
    first_checkout, first_reference = (
        await checkout_id(db, order),
        (await current_attempt(db, order)).reference,
    )

    response = await post_form(client, f"/orders/{order.id}/pay/")

    order = await latest_order(db)
    assert response.status_code == 303
    assert (
        response.headers["Location"]
        == f"{sumup_sandbox.base_url}/pay/{await checkout_id(db, order)}"
    )
    assert await checkout_id(db, order) != first_checkout
    reference = (await current_attempt(db, order)).reference
    assert (
        re.fullmatch(rf"RA-{order.id}-2-[0-9a-f]{{16}}", reference) and reference != first_reference
    )
    assert await sandbox_status(sandbox_control, first_checkout) == "EXPIRED"
    assert await sandbox_status(sandbox_control, await checkout_id(db, order)) == "PENDING"
    assert order.status == "pending"
    assert await event_count(db, "order.expired") == 0


async def test_pay_again_after_a_decline_ends_paid_with_exactly_one_paid_event(
    client: Client, db: AsyncSession, sandbox_control: Any
) -> None:
    placed = await place_order(client, db)
    declined = await checkout_id(db, placed.order)
    await sandbox_control.decline(declined)
    assert (await latest_order(db)).status == "failed"

    response = await post_form(client, f"/orders/{placed.order.id}/pay/")
    assert response.status_code == 303
    order = await latest_order(db)
    assert order.status == "pending" and await checkout_id(db, order) != declined
    assert await sandbox_status(sandbox_control, declined) == "EXPIRED"
    await sandbox_control.pay(await checkout_id(db, order))

    order = await latest_order(db)
    assert order.status == "paid" and re.fullmatch(
        rf"RA-{order.id}-2-[0-9a-f]{{16}}", (await current_attempt(db, order)).reference
    )
    assert await event_count(db, "order.paid") == 1
    assert (await reload(db, placed.entry)).state == "provisional"


async def test_pay_on_a_paid_order_says_so_and_starts_no_checkout(
    client: Client, db: AsyncSession, sandbox_control: Any
) -> None:
    placed = await place_order(client, db)
    await sandbox_control.pay(await checkout_id(db, placed.order))

    response = await post_form(client, f"/orders/{placed.order.id}/pay/")

    html = await _then_detail(client, response, placed.order.id)
    assert f"Order {placed.order.number} is paid; there is nothing to pay." in html
    assert (await sandbox_control.stats())["created"] == 1
    assert (await current_attempt(db, await latest_order(db))).number == 1
    assert await event_count(db, "order.paid") == 1


async def test_recheck_marks_the_order_paid_when_the_webhook_never_came(
    client: Client, db: AsyncSession, sandbox_control: Any
) -> None:
    placed = await place_order(client, db)
    await sandbox_control.behave(webhook="drop")
    await sandbox_control.pay(await checkout_id(db, placed.order))
    assert (await latest_order(db)).status == "pending"

    response = await post_form(client, f"/orders/{placed.order.id}/recheck/")

    html = await _then_detail(client, response, placed.order.id)
    assert f"Order {placed.order.number}: Paid." in html
    order = await latest_order(db)
    assert order.status == "paid" and order.sumup_transaction_code
    assert await event_count(db, "order.paid") == 1
    assert (await reload(db, placed.entry)).state == "provisional"


async def test_recheck_of_a_payment_not_yet_made_leaves_the_order_pending(
    client: Client, db: AsyncSession
) -> None:
    placed = await place_order(client, db)
    response = await post_form(client, f"/orders/{placed.order.id}/recheck/")
    html = await _then_detail(client, response, placed.order.id)
    assert f"Order {placed.order.number}: Awaiting payment." in html
    assert (await latest_order(db)).status == "pending"


async def test_cancel_retires_the_checkout_and_gives_the_bookings_back_to_the_cart(
    client: Client, db: AsyncSession, sandbox_control: Any
) -> None:
    placed = await place_order(client, db)

    response = await post_form(client, f"/orders/{placed.order.id}/cancel/")

    html = await _then_detail(client, response, placed.order.id)
    assert "is cancelled; its bookings are back in your cart." in html
    order = await latest_order(db)
    assert order.status == "cancelled" and order.cancelled_at is not None
    assert await sandbox_status(sandbox_control, await checkout_id(db, order)) == "EXPIRED"
    entry = await reload(db, placed.entry)
    assert (entry.state, entry.order_id) == ("pending", None)
    assert placed.entry.name in await page_text(await client.get("/cart/"))
    assert await event_count(db, "order.cancelled", order.id) == 1


async def test_cancelling_twice_writes_one_cancelled_event(
    client: Client, db: AsyncSession
) -> None:
    placed = await place_order(client, db)
    await post_form(client, f"/orders/{placed.order.id}/cancel/")
    response = await post_form(client, f"/orders/{placed.order.id}/cancel/")
    html = await _then_detail(client, response, placed.order.id)
    assert "was already cancelled" in html
    assert await event_count(db, "order.cancelled") == 1


async def test_cancel_after_a_payment_landed_unnoticed_keeps_the_order_paid(
    client: Client, db: AsyncSession, sandbox_control: Any
) -> None:
    placed = await place_order(client, db)
    await sandbox_control.behave(webhook="drop")
    await sandbox_control.pay(await checkout_id(db, placed.order))

    response = await post_form(client, f"/orders/{placed.order.id}/cancel/")

    html = await _then_detail(client, response, placed.order.id)
    assert "is paid, so it cannot be cancelled here" in html
    order = await latest_order(db)
    assert order.status == "paid" and order.cancelled_at is None
    assert await event_count(db, "order.paid") == 1
    assert await event_count(db, "order.cancelled") == 0
    assert (await reload(db, placed.entry)).state == "provisional"


async def test_cancel_of_a_declined_order_retires_its_checkout(
    client: Client, db: AsyncSession, sandbox_control: Any
) -> None:
    placed = await place_order(client, db)
    await sandbox_control.decline(await checkout_id(db, placed.order))
    await post_form(client, f"/orders/{placed.order.id}/cancel/")
    assert (await latest_order(db)).status == "cancelled"
    assert await sandbox_status(sandbox_control, await checkout_id(db, placed.order)) == "EXPIRED"
    assert (await reload(db, placed.entry)).state == "pending"


async def test_cancel_without_a_csrf_token_is_refused_and_changes_nothing(
    client: Client, db: AsyncSession, sandbox_control: Any
) -> None:
    placed = await place_order(client, db)
    response = await post_form(client, f"/orders/{placed.order.id}/cancel/", token=False)
    assert response.status_code == 400
    assert (await latest_order(db)).status == "pending"
    assert await sandbox_status(sandbox_control, await checkout_id(db, placed.order)) == "PENDING"
    assert (await reload(db, placed.entry)).state == "ordered"


async def test_a_cancelled_order_cannot_be_paid(
    client: Client, db: AsyncSession, sandbox_control: Any
) -> None:
    placed = await place_order(client, db)
    await post_form(client, f"/orders/{placed.order.id}/cancel/")
    response = await post_form(client, f"/orders/{placed.order.id}/pay/")
    html = await _then_detail(client, response, placed.order.id)
    assert "is cancelled; there is nothing to pay." in html
    assert (await sandbox_control.stats())["created"] == 1


async def test_pay_now_clicked_twice_at_once_makes_one_new_checkout(
    client: Client, db: AsyncSession, sandbox_control: Any
) -> None:
    placed = await place_order(client, db)
    token = await csrf_token(client)
    responses = await asyncio.gather(
        *(
            client.post(f"/orders/{placed.order.id}/pay/", form={"csrf_token": token})
            for _ in range(2)
        )
    )
    assert [r.status_code for r in responses] == [303, 303]
    assert len({r.headers["Location"] for r in responses}) == 1
    order = await latest_order(db)
    assert (
        order.status == "pending" and (await current_attempt(db, order)).sumup_status == "PENDING"
    )
    assert (await sandbox_control.stats())["created"] == 2
    assert await event_count(db, "order.expired") == 0


async def test_cancel_clicked_twice_at_once_cancels_once(client: Client, db: AsyncSession) -> None:
    placed = await place_order(client, db)
    token = await csrf_token(client)
    responses = await asyncio.gather(
        *(
            client.post(f"/orders/{placed.order.id}/cancel/", form={"csrf_token": token})
            for _ in range(2)
        )
    )
    assert [r.status_code for r in responses] == [303, 303]
    assert (await latest_order(db)).status == "cancelled"
    assert await event_count(db, "order.cancelled") == 1
    assert await event_count(db, "order.expired") == 0
    assert (await reload(db, placed.entry)).state == "pending"
