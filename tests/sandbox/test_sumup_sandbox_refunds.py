"""The sandbox's refund API, transaction lookup, refund faults and money stats, via the SDK.

The cart refunds through `client.transactions.refund` and reads the outcome with
`client.transactions.get`; every answer here must parse as the SDK's own models.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sumup import AsyncSumup
from sumup.errors import (
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
)
from sumup.types import Error, ErrorExtended, Problem, TransactionFull

from sandbox.sumup_sandbox import MoneyTotals, RunningSandbox, SandboxControl
from tests.sandbox.factories import (
    COOP,
    COOP_KEY,
    FARM,
    create_checkout_id,
    paid_transaction_id,
)


def problem_of(error: APIStatusError) -> Problem:
    """The RFC 9457 problem the SDK parsed from a refund error."""
    problem = error.problem
    assert problem is not None, f"not a problem body: {error.body!r}"
    assert error.response is not None
    assert error.response.headers["Content-Type"] == "application/problem+json"
    return problem


def error_code(error: APIStatusError) -> object:
    """SumUp's error_code, carried as an extra member of the problem."""
    return problem_of(error).additional_properties.get("error_code")


async def refunded_amount(web: httpx.AsyncClient, transaction_id: str) -> Any:
    """The lookup's refunded_amount, which the SDK's TransactionFull does not keep."""
    response = await web.get(
        f"/v2.1/merchants/{COOP}/transactions",
        params={"id": transaction_id},
        headers={"Authorization": f"Bearer {COOP_KEY}"},
    )
    response.raise_for_status()
    return response.json()["refunded_amount"]


def refund_events(transaction: TransactionFull) -> list[tuple[str | None, float | None]]:
    """(type, amount) of each of the transaction's events."""
    return [(event.type, event.amount) for event in transaction.events or []]


# --- Refund ---------------------------------------------------------------------------------


async def test_full_refund_answers_201_and_marks_the_transaction_refunded(
    coop: AsyncSumup, control: SandboxControl
) -> None:
    checkout_id = await create_checkout_id(coop, amount=12.50)
    paid = await control.pay(checkout_id)

    answer = await coop.transactions.refund(COOP, paid["transaction_id"])

    assert answer == {}
    checkout = await coop.checkouts.get(checkout_id)
    assert checkout.status == "PAID"
    [transaction] = checkout.transactions or []
    assert transaction.status == "REFUNDED"
    assert (checkout.transaction_id, checkout.transaction_code) == (
        paid["transaction_id"],
        paid["transaction_code"],
    )


async def test_refund_without_a_body_refunds_all_that_is_left(
    coop: AsyncSumup, control: SandboxControl, web: httpx.AsyncClient
) -> None:
    transaction_id = await paid_transaction_id(coop, control, amount=8)

    response = await web.post(
        f"/v1.0/merchants/{COOP}/payments/{transaction_id}/refunds",
        headers={"Authorization": f"Bearer {COOP_KEY}"},
    )

    assert (response.status_code, response.json()) == (201, {})
    assert await refunded_amount(web, transaction_id) == 8.0


async def test_partial_refunds_add_up_until_nothing_is_left(
    coop: AsyncSumup, control: SandboxControl, web: httpx.AsyncClient
) -> None:
    transaction_id = await paid_transaction_id(coop, control, amount=12.50)

    await coop.transactions.refund(COOP, transaction_id, amount=1.5)
    after_partial = await coop.transactions.get(COOP, id=transaction_id)
    await coop.transactions.refund(COOP, transaction_id)
    with pytest.raises(ConflictError) as raised:
        await coop.transactions.refund(COOP, transaction_id, amount=0.01)

    assert after_partial.status == "REFUNDED"
    assert refund_events(after_partial) == [("REFUND", 1.5)]
    assert refund_events(await coop.transactions.get(COOP, id=transaction_id)) == [
        ("REFUND", 1.5),
        ("REFUND", 11.0),
    ]
    assert await refunded_amount(web, transaction_id) == 12.5
    assert error_code(raised.value) == "ALREADY_REFUNDED"
    assert problem_of(raised.value).status == 409


async def test_refund_beyond_what_is_left_is_a_bad_request_and_refunds_nothing(
    coop: AsyncSumup, control: SandboxControl, web: httpx.AsyncClient
) -> None:
    transaction_id = await paid_transaction_id(coop, control, amount=10)
    await coop.transactions.refund(COOP, transaction_id, amount=4)

    with pytest.raises(BadRequestError) as raised:
        await coop.transactions.refund(COOP, transaction_id, amount=6.01)

    assert error_code(raised.value) == "INVALID"
    assert "6.00" in (problem_of(raised.value).detail or "")
    assert await refunded_amount(web, transaction_id) == 4.0


@pytest.mark.parametrize("amount", ["0", "-1", "1.234", "0.001", '"1.50"', "true", "1e400"])
async def test_refund_amount_must_be_a_positive_number_of_cents(
    coop: AsyncSumup, control: SandboxControl, web: httpx.AsyncClient, amount: str
) -> None:
    transaction_id = await paid_transaction_id(coop, control)

    response = await web.post(
        f"/v1.0/merchants/{COOP}/payments/{transaction_id}/refunds",
        content=f'{{"amount": {amount}}}',
        headers={"Authorization": f"Bearer {COOP_KEY}", "Content-Type": "application/json"},
    )

    assert response.status_code == 400
    problem = Problem.model_validate(response.json())
    assert problem.type == "https://developer.sumup.com/problem/bad-request"
    assert problem.additional_properties["fields"] == [
        {"path": "$.amount", "name": "amount", "message": problem.detail}
    ]
    assert await refunded_amount(web, transaction_id) == 0.0


async def test_refund_body_that_is_not_a_json_object_is_a_bad_request(
    coop: AsyncSumup, control: SandboxControl, web: httpx.AsyncClient
) -> None:
    transaction_id = await paid_transaction_id(coop, control)

    response = await web.post(
        f"/v1.0/merchants/{COOP}/payments/{transaction_id}/refunds",
        content=b"[1.5]",
        headers={"Authorization": f"Bearer {COOP_KEY}"},
    )

    assert response.status_code == 400
    assert Problem.model_validate(response.json()).title == "Bad Request"


async def test_refund_of_a_declined_transaction_is_a_conflict(
    coop: AsyncSumup, control: SandboxControl
) -> None:
    checkout_id = await create_checkout_id(coop)
    await control.decline(checkout_id)
    [failed] = (await coop.checkouts.get(checkout_id)).transactions or []

    with pytest.raises(ConflictError) as raised:
        await coop.transactions.refund(COOP, failed.id or "")

    assert error_code(raised.value) == "NOT_REFUNDABLE"
    assert (await coop.transactions.get(COOP, id=failed.id or "")).status == "FAILED"


async def test_refund_of_an_unknown_transaction_is_not_found(coop: AsyncSumup) -> None:
    with pytest.raises(NotFoundError) as raised:
        await coop.transactions.refund(COOP, str(uuid.uuid4()))

    assert error_code(raised.value) == "NOT_FOUND"
    assert problem_of(raised.value).type == "https://developer.sumup.com/problem/not-found"


async def test_refund_under_another_merchants_code_is_forbidden(
    coop: AsyncSumup, control: SandboxControl
) -> None:
    transaction_id = await paid_transaction_id(coop, control)

    with pytest.raises(PermissionDeniedError) as raised:
        await coop.transactions.refund(FARM, transaction_id)

    assert error_code(raised.value) == "FORBIDDEN"
    assert (await coop.transactions.get(COOP, id=transaction_id)).status == "SUCCESSFUL"


async def test_a_key_cannot_refund_another_merchants_transaction(
    coop: AsyncSumup, farm: AsyncSumup, control: SandboxControl
) -> None:
    transaction_id = await paid_transaction_id(coop, control)

    with pytest.raises(NotFoundError):
        await farm.transactions.refund(FARM, transaction_id)

    assert (await coop.transactions.get(COOP, id=transaction_id)).status == "SUCCESSFUL"


async def test_refund_without_a_valid_key_is_unauthorized(
    sandbox: RunningSandbox, coop: AsyncSumup, control: SandboxControl
) -> None:
    transaction_id = await paid_transaction_id(coop, control)

    async with AsyncSumup(api_key="sup_sk_not_a_key", base_url=sandbox.base_url) as stranger:
        with pytest.raises(AuthenticationError):
            await stranger.transactions.refund(COOP, transaction_id)
        with pytest.raises(AuthenticationError):
            await stranger.transactions.get(COOP, id=transaction_id)


async def test_six_racing_full_refunds_refund_once(
    coop: AsyncSumup, control: SandboxControl, web: httpx.AsyncClient
) -> None:
    transaction_id = await paid_transaction_id(coop, control, amount=9.99)

    outcomes = await asyncio.gather(
        *(coop.transactions.refund(COOP, transaction_id) for _ in range(6)),
        return_exceptions=True,
    )

    assert outcomes.count({}) == 1
    assert [type(outcome) for outcome in outcomes if outcome != {}] == [ConflictError] * 5
    assert await refunded_amount(web, transaction_id) == 9.99
    stats = await control.stats()
    assert (stats["refund_attempts"], stats["refunds_applied"]) == (6, 1)


async def test_racing_partial_refunds_never_exceed_the_transaction(
    coop: AsyncSumup, control: SandboxControl, web: httpx.AsyncClient
) -> None:
    transaction_id = await paid_transaction_id(coop, control, amount=12.50)

    outcomes = await asyncio.gather(
        *(coop.transactions.refund(COOP, transaction_id, amount=5) for _ in range(6)),
        return_exceptions=True,
    )

    assert outcomes.count({}) == 2
    assert all(isinstance(o, BadRequestError) for o in outcomes if o != {})
    assert await refunded_amount(web, transaction_id) == 10.0


# --- Transaction lookup ---------------------------------------------------------------------


async def test_lookup_by_id_answers_the_sdks_transaction_full(
    coop: AsyncSumup, control: SandboxControl
) -> None:
    checkout_id = await create_checkout_id(coop, amount=20)
    paid = await control.pay(checkout_id)

    transaction = await coop.transactions.get(COOP, id=paid["transaction_id"])

    assert isinstance(transaction, TransactionFull)
    assert (transaction.id, transaction.transaction_code) == (
        paid["transaction_id"],
        paid["transaction_code"],
    )
    assert (transaction.amount, transaction.currency) == (20.0, "GBP")
    assert (transaction.status, transaction.simple_status) == ("SUCCESSFUL", "SUCCESSFUL")
    assert (transaction.payment_type, transaction.merchant_code) == ("ECOM", COOP)
    assert transaction.timestamp is not None
    assert abs(transaction.timestamp - datetime.now(UTC)) < timedelta(minutes=1)
    assert transaction.events == [] and transaction.transaction_events == []


async def test_lookup_by_transaction_code_finds_the_same_transaction(
    coop: AsyncSumup, control: SandboxControl
) -> None:
    paid = await control.pay(await create_checkout_id(coop))

    by_code = await coop.transactions.get(COOP, transaction_code=paid["transaction_code"])
    both = await coop.transactions.get(
        COOP, id=paid["transaction_id"], transaction_code=paid["transaction_code"]
    )

    assert by_code.id == both.id == paid["transaction_id"]


async def test_lookup_of_a_refunded_transaction_lists_its_refund_events(
    coop: AsyncSumup, control: SandboxControl, web: httpx.AsyncClient
) -> None:
    transaction_id = await paid_transaction_id(coop, control, amount=12.50)
    await coop.transactions.refund(COOP, transaction_id, amount=2.5)
    await coop.transactions.refund(COOP, transaction_id, amount=0.25)

    transaction = await coop.transactions.get(COOP, id=transaction_id)

    assert (transaction.status, transaction.simple_status) == ("REFUNDED", "REFUNDED")
    assert transaction.amount == 12.5
    first, second = transaction.events or []
    assert (first.type, first.status, first.amount) == ("REFUND", "REFUNDED", 2.5)
    assert first.transaction_id == transaction_id
    assert isinstance(first.id, int) and isinstance(second.id, int) and second.id > first.id
    assert first.timestamp is not None and second.timestamp is not None
    assert [(e.event_type, e.amount, e.id) for e in transaction.transaction_events or []] == [
        ("REFUND", 2.5, first.id),
        ("REFUND", 0.25, second.id),
    ]
    assert await refunded_amount(web, transaction_id) == 2.75


async def test_refund_event_ids_stay_unique_across_resets(
    coop: AsyncSumup, control: SandboxControl
) -> None:
    ids = []
    for _ in range(2):
        transaction_id = await paid_transaction_id(coop, control)
        await coop.transactions.refund(COOP, transaction_id)
        [event] = (await coop.transactions.get(COOP, id=transaction_id)).events or []
        ids.append(event.id)
        await control.reset()

    assert ids[0] != ids[1]


async def test_lookup_of_an_unknown_transaction_is_not_found(
    coop: AsyncSumup, control: SandboxControl
) -> None:
    paid = await control.pay(await create_checkout_id(coop))

    for query in (
        {"id": str(uuid.uuid4())},
        {"transaction_code": "TXNOTHING"},
        {"id": paid["transaction_id"], "transaction_code": "TXNOTHING"},
    ):
        with pytest.raises(NotFoundError) as raised:
            await coop.transactions.get(COOP, **query)
        assert raised.value.body == Error(error_code="NOT_FOUND", message="Resource not found")


async def test_lookup_without_an_id_or_code_is_a_bad_request(coop: AsyncSumup) -> None:
    with pytest.raises(BadRequestError) as raised:
        await coop.transactions.get(COOP)

    assert raised.value.response is not None
    assert ErrorExtended.model_validate(raised.value.response.json()) == ErrorExtended(
        message="Validation error", error_code="MISSING", param="id"
    )


async def test_lookup_never_shows_another_merchants_transaction(
    coop: AsyncSumup, farm: AsyncSumup, control: SandboxControl
) -> None:
    transaction_id = await paid_transaction_id(coop, control)

    with pytest.raises(NotFoundError):
        await farm.transactions.get(FARM, id=transaction_id)
    with pytest.raises(PermissionDeniedError) as raised:
        await farm.transactions.get(COOP, id=transaction_id)

    assert error_code(raised.value) == "FORBIDDEN"


# --- Refund faults --------------------------------------------------------------------------


async def test_refund_fault_answers_5xx_without_refunding(
    coop: AsyncSumup, control: SandboxControl
) -> None:
    transaction_id = await paid_transaction_id(coop, control)
    await control.behave(only="refund", fail_status=503, fail_count=1)

    with pytest.raises(InternalServerError) as raised:
        await coop.transactions.refund(COOP, transaction_id)
    untouched = await coop.transactions.get(COOP, id=transaction_id)
    await coop.transactions.refund(COOP, transaction_id)

    assert raised.value.status == 503
    assert (untouched.status, untouched.events) == ("SUCCESSFUL", [])
    assert (await coop.transactions.get(COOP, id=transaction_id)).status == "REFUNDED"
    stats = await control.stats()
    assert (stats["refund_attempts"], stats["refunds_applied"]) == (2, 1)


async def test_fault_limited_to_refunds_leaves_every_other_call_alone(
    coop: AsyncSumup, control: SandboxControl
) -> None:
    await control.behave(only="refund", fail_status=500)

    checkout_id = await create_checkout_id(coop)
    paid = await control.pay(checkout_id)
    assert (await coop.checkouts.get(checkout_id)).status == "PAID"
    assert await coop.checkouts.list(checkout_reference="none") == []
    assert (await coop.transactions.get(COOP, id=paid["transaction_id"])).status == "SUCCESSFUL"
    with pytest.raises(InternalServerError):
        await coop.transactions.refund(COOP, paid["transaction_id"])


async def test_fault_limited_to_creates_leaves_refunds_alone(
    coop: AsyncSumup, control: SandboxControl
) -> None:
    transaction_id = await paid_transaction_id(coop, control)
    await control.behave(only="create", fail_status=502)

    await coop.transactions.refund(COOP, transaction_id)
    with pytest.raises(InternalServerError):
        await create_checkout_id(coop)

    assert (await coop.transactions.get(COOP, id=transaction_id)).status == "REFUNDED"


async def test_slow_refund_times_out_though_the_money_went_back(
    sandbox: RunningSandbox, coop: AsyncSumup, control: SandboxControl
) -> None:
    transaction_id = await paid_transaction_id(coop, control, amount=12.50)
    await control.behave(only="refund", delay_seconds=4.0, fail_count=1)

    async with AsyncSumup(api_key=COOP_KEY, base_url=sandbox.base_url, timeout=1.0) as hasty:
        with pytest.raises(APITimeoutError):
            await hasty.transactions.refund(COOP, transaction_id, amount=2)
        transaction = await hasty.transactions.get(COOP, id=transaction_id)

    assert transaction.status == "REFUNDED"
    assert refund_events(transaction) == [("REFUND", 2.0)]
    assert (await control.money())["GBP"] == MoneyTotals(Decimal("12.50"), Decimal("2.00"))


async def test_fail_after_apply_refunds_then_answers_5xx(
    coop: AsyncSumup, control: SandboxControl
) -> None:
    transaction_id = await paid_transaction_id(coop, control)
    await control.behave(only="refund", fail_status=504, fail_after_apply=True, fail_count=1)

    with pytest.raises(InternalServerError) as raised:
        await coop.transactions.refund(COOP, transaction_id)
    with pytest.raises(ConflictError):
        await coop.transactions.refund(COOP, transaction_id)

    assert raised.value.status == 504
    assert (await coop.transactions.get(COOP, id=transaction_id)).status == "REFUNDED"
    assert (await control.stats())["refunds_applied"] == 1


async def test_fail_after_apply_on_create_leaves_the_checkout_behind(
    coop: AsyncSumup, control: SandboxControl
) -> None:
    await control.behave(only="create", fail_status=502, fail_after_apply=True, fail_count=1)

    with pytest.raises(InternalServerError):
        await create_checkout_id(coop, checkout_reference="order-lost-answer")

    [found] = await coop.checkouts.list(checkout_reference="order-lost-answer")
    assert found.status == "PENDING"


async def test_delay_only_create_still_limits_only_the_delay(
    sandbox: RunningSandbox, control: SandboxControl
) -> None:
    await control.behave(delay_seconds=4.0, delay_only_create=True, fail_status=503)

    async with AsyncSumup(api_key=COOP_KEY, base_url=sandbox.base_url, timeout=1.0) as hasty:
        with pytest.raises(InternalServerError):
            await hasty.transactions.get(COOP, id=str(uuid.uuid4()))
        with pytest.raises(APITimeoutError):
            await create_checkout_id(hasty)


@pytest.mark.parametrize(
    "behaviour",
    [
        {"only": "everything"},
        {"only": ["refund"]},
        {"fail_after_apply": "yes"},
        {"only": "refund", "delay_only_create": True},
    ],
)
async def test_behaviour_refuses_an_invalid_target(
    control: SandboxControl, behaviour: dict[str, object]
) -> None:
    with pytest.raises(httpx.HTTPStatusError) as raised:
        await control.behave(**behaviour)

    assert raised.value.response.status_code == 400


async def test_behaviour_answers_its_settings(control: SandboxControl) -> None:
    answer = await control.behave(only="refund", fail_status=500, fail_after_apply=True)

    assert answer == {
        "delay_seconds": 0.0,
        "fail_status": 500,
        "fail_count": None,
        "webhook": "normal",
        "delay_only_create": False,
        "only": "refund",
        "fail_after_apply": True,
    }


# --- Stats ----------------------------------------------------------------------------------


async def test_stats_show_each_transaction_and_money_taken_and_refunded(
    coop: AsyncSumup, control: SandboxControl
) -> None:
    refunded_id = await create_checkout_id(coop, amount=12.50)
    refunded = await control.pay(refunded_id)
    await coop.transactions.refund(COOP, refunded["transaction_id"], amount=0.1)
    await coop.transactions.refund(COOP, refunded["transaction_id"], amount=0.2)
    declined_then_paid = await create_checkout_id(coop, amount=3)
    await control.decline(declined_then_paid)
    await control.pay(declined_then_paid)
    await create_checkout_id(coop, amount=99)
    with pytest.raises(BadRequestError):
        await coop.transactions.refund(COOP, refunded["transaction_id"], amount=50)

    stats = await control.stats()

    assert (stats["refund_attempts"], stats["refunds_applied"]) == (3, 2)
    assert stats["money"] == {"GBP": {"taken": "15.50", "refunded": "0.30"}}
    assert await control.money() == {"GBP": MoneyTotals(Decimal("15.50"), Decimal("0.30"))}
    by_id = {checkout["id"]: checkout for checkout in stats["checkouts"]}
    [transaction] = by_id[refunded_id]["transactions"]
    assert transaction == {
        "id": refunded["transaction_id"],
        "transaction_code": refunded["transaction_code"],
        "status": "REFUNDED",
        "amount": "12.50",
        "refunded_amount": "0.30",
        "refunds": [
            {"event_id": refund["event_id"], "amount": amount, "timestamp": refund["timestamp"]}
            for refund, amount in zip(transaction["refunds"], ["0.10", "0.20"], strict=True)
        ],
    }
    assert by_id[refunded_id]["status"] == "PAID"
    assert [
        (t["status"], t["amount"], t["refunded_amount"])
        for t in by_id[declined_then_paid]["transactions"]
    ] == [("FAILED", "3.00", "0.00"), ("SUCCESSFUL", "3.00", "0.00")]


async def test_reset_forgets_refunds_and_their_counters(
    coop: AsyncSumup, control: SandboxControl
) -> None:
    transaction_id = await paid_transaction_id(coop, control)
    await coop.transactions.refund(COOP, transaction_id)

    await control.reset()

    stats = await control.stats()
    assert (stats["refund_attempts"], stats["refunds_applied"], stats["money"]) == (0, 0, {})
    with pytest.raises(NotFoundError):
        await coop.transactions.get(COOP, id=transaction_id)


# --- Hosted page ----------------------------------------------------------------------------


async def test_hosted_page_of_a_refunded_checkout_still_shows_it_paid(
    coop: AsyncSumup, control: SandboxControl, web: httpx.AsyncClient
) -> None:
    checkout_id = await create_checkout_id(coop, hosted_checkout={"enabled": True})
    paid = await control.pay(checkout_id)
    await coop.transactions.refund(COOP, paid["transaction_id"])

    page = await web.get(f"/pay/{checkout_id}")
    again = await web.post(f"/pay/{checkout_id}", data={"action": "pay"})

    assert page.status_code == 200
    assert "This checkout is already paid" in page.text
    assert not re.search(r"<button[^>]*>Pay</button>", page.text)
    assert again.status_code == 409
    assert len((await coop.checkouts.get(checkout_id)).transactions or []) == 1
