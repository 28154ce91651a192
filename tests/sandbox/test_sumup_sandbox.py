"""The SumUp sandbox over real HTTP, read through SumUp's own SDK.

If the SDK parses every answer here, the cart (which uses the same SDK) can trust the
sandbox to stand in for SumUp.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sumup import AsyncSumup
from sumup.errors import (
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
)
from sumup.types import CheckoutSuccess, Error, ErrorExtended, ErrorForbidden

from sandbox.sumup_sandbox import (
    RunningSandbox,
    SandboxControl,
    SandboxStartError,
    running_sandbox,
)
from tests.sandbox.factories import (
    COOP,
    COOP_KEY,
    WebhookReceiver,
    create_checkout,
    create_checkout_id,
    webhook_for,
)

TRANSACTION_CODE = re.compile(r"TX[A-Z0-9]{8}")


# --- Create ---------------------------------------------------------------------------------


async def test_create_answers_a_pending_checkout_the_sdk_parses(
    coop: AsyncSumup, sandbox: RunningSandbox
) -> None:
    valid_until = datetime.now(UTC) + timedelta(minutes=10)
    checkout = await create_checkout(
        coop,
        checkout_reference="order-1",
        description="Veg box",
        return_url="https://cart.example/sumup/webhook",
        redirect_url="https://cart.example/orders/1/return",
        hosted_checkout={"enabled": True},
        valid_until=valid_until,
    )

    assert uuid.UUID(checkout.id or "").version == 4
    assert checkout.status == "PENDING"
    assert checkout.checkout_reference == "order-1"
    assert (checkout.amount, checkout.currency, checkout.merchant_code) == (12.5, "GBP", COOP)
    assert checkout.description == "Veg box"
    assert checkout.return_url == "https://cart.example/sumup/webhook"
    assert checkout.transactions == []
    assert checkout.date is not None
    assert checkout.valid_until is not None
    assert abs(checkout.valid_until - valid_until) < timedelta(milliseconds=1)
    assert checkout.hosted_checkout_url == f"{sandbox.base_url}/pay/{checkout.id}"


async def test_create_answers_201_with_the_redirect_url(web: httpx.AsyncClient) -> None:
    body = {
        "checkout_reference": "order-2",
        "amount": 5,
        "currency": "GBP",
        "merchant_code": COOP,
        "redirect_url": "https://cart.example/back",
    }
    response = await web.post(
        "/v0.1/checkouts", json=body, headers={"Authorization": f"Bearer {COOP_KEY}"}
    )

    assert response.status_code == 201
    assert response.json()["redirect_url"] == "https://cart.example/back"
    assert "hosted_checkout_url" not in response.json()


async def test_reused_reference_is_a_duplicated_checkout_conflict(coop: AsyncSumup) -> None:
    await create_checkout(coop, checkout_reference="order-3")

    with pytest.raises(ConflictError) as raised:
        await create_checkout(coop, checkout_reference="order-3")

    assert raised.value.body == Error(
        error_code="DUPLICATED_CHECKOUT",
        message="Checkout with this checkout reference and pay to email already exists",
    )


async def test_one_invalid_field_answers_a_single_validation_object(coop: AsyncSumup) -> None:
    with pytest.raises(BadRequestError) as raised:
        await create_checkout(coop, amount=0)

    assert raised.value.body == ErrorExtended(
        message="Validation error", error_code="INVALID", param="amount"
    )


async def test_several_invalid_fields_answer_an_array(coop: AsyncSumup) -> None:
    with pytest.raises(BadRequestError) as raised:
        await create_checkout(coop, amount=-1, currency="EUR")

    assert raised.value.body == [
        {"message": "Validation error", "error_code": "INVALID", "param": "amount"},
        {"message": "Validation error", "error_code": "INVALID", "param": "currency"},
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("checkout_reference", "x" * 65),
        ("amount", 1.234),
        ("amount", -5),
        ("currency", "GB"),
        ("currency", "EUR"),
        ("return_url", "not a url"),
    ],
)
async def test_create_refuses_an_invalid_field(coop: AsyncSumup, field: str, value: Any) -> None:
    with pytest.raises(BadRequestError) as raised:
        await create_checkout(coop, **{field: value})

    assert raised.value.body == ErrorExtended(
        message="Validation error", error_code="INVALID", param=field
    )


async def test_missing_field_is_reported_as_missing(web: httpx.AsyncClient) -> None:
    body = {"checkout_reference": "order-4", "currency": "GBP", "merchant_code": COOP}
    response = await web.post(
        "/v0.1/checkouts", json=body, headers={"Authorization": f"Bearer {COOP_KEY}"}
    )

    assert response.status_code == 400
    assert response.json() == {
        "message": "Validation error",
        "error_code": "MISSING",
        "param": "amount",
    }


async def test_body_that_is_not_a_json_object_answers_an_array(web: httpx.AsyncClient) -> None:
    response = await web.post(
        "/v0.1/checkouts", content=b"[1, 2]", headers={"Authorization": f"Bearer {COOP_KEY}"}
    )

    assert response.status_code == 400
    assert isinstance(response.json(), list)
    assert response.json()[0]["error_code"] == "INVALID"


async def test_another_merchants_code_is_forbidden(coop: AsyncSumup) -> None:
    with pytest.raises(PermissionDeniedError) as raised:
        await create_checkout(coop, merchant_code="MFARM0001")

    body = raised.value.body
    assert isinstance(body, ErrorForbidden)
    assert (body.error_code, body.status_code) == ("FORBIDDEN", "403")


# --- Authentication -------------------------------------------------------------------------


async def test_unknown_key_is_unauthorized_with_a_problem_body(sandbox: RunningSandbox) -> None:
    async with AsyncSumup(api_key="sup_sk_not_a_key", base_url=sandbox.base_url) as stranger:
        with pytest.raises(AuthenticationError) as raised:
            await create_checkout(stranger)

    problem = raised.value.problem
    assert problem is not None
    assert (problem.status, problem.title) == (401, "Unauthorized")
    assert problem.type == "https://developer.sumup.com/problem/unauthorized"
    assert raised.value.response is not None
    assert raised.value.response.headers["Content-Type"] == "application/problem+json"


async def test_every_api_route_requires_a_key(web: httpx.AsyncClient) -> None:
    answers = [
        await web.get("/v0.1/checkouts", params={"checkout_reference": "x"}),
        await web.get(f"/v0.1/checkouts/{uuid.uuid4()}"),
        await web.delete(f"/v0.1/checkouts/{uuid.uuid4()}"),
        await web.post("/v0.1/checkouts", json={}),
    ]

    assert [answer.status_code for answer in answers] == [401] * 4


# --- Get and list ---------------------------------------------------------------------------


async def test_get_pending_checkout_has_no_transaction(coop: AsyncSumup) -> None:
    checkout_id = await create_checkout_id(coop)

    checkout = await coop.checkouts.get(checkout_id)

    assert isinstance(checkout, CheckoutSuccess)
    assert (checkout.id, checkout.status, checkout.transactions) == (checkout_id, "PENDING", [])
    assert checkout.transaction_code is None and checkout.transaction_id is None


async def test_paid_checkout_has_one_successful_transaction_named_by_transaction_id(
    coop: AsyncSumup, control: SandboxControl
) -> None:
    checkout_id = await create_checkout_id(coop, amount=20)
    await control.pay(checkout_id)

    checkout = await coop.checkouts.get(checkout_id)

    assert checkout.status == "PAID"
    [transaction] = checkout.transactions or []
    assert transaction.status == "SUCCESSFUL"
    assert checkout.transaction_id == transaction.id
    assert checkout.transaction_code == transaction.transaction_code
    assert TRANSACTION_CODE.fullmatch(transaction.transaction_code or "")
    assert uuid.UUID(transaction.id or "")
    assert (transaction.amount, transaction.currency) == (20.0, "GBP")
    assert (transaction.payment_type, transaction.entry_mode) == ("ECOM", "CUSTOMER_ENTRY")
    assert transaction.merchant_code == COOP
    assert transaction.auth_code and transaction.timestamp


async def test_declined_checkout_is_failed_with_a_failed_transaction(
    coop: AsyncSumup, control: SandboxControl
) -> None:
    checkout_id = await create_checkout_id(coop)
    await control.decline(checkout_id)

    checkout = await coop.checkouts.get(checkout_id)

    assert checkout.status == "FAILED"
    assert [t.status for t in checkout.transactions or []] == ["FAILED"]
    assert checkout.transaction_id is None


@pytest.mark.parametrize("amount", [11.00, 42.01, 42.76, 42.91])
async def test_sandbox_failing_amounts_fail_when_paid(
    coop: AsyncSumup, control: SandboxControl, amount: float
) -> None:
    checkout_id = await create_checkout_id(coop, amount=amount)

    await control.pay(checkout_id)

    checkout = await coop.checkouts.get(checkout_id)
    assert checkout.status == "FAILED"
    assert [t.status for t in checkout.transactions or []] == ["FAILED"]


async def test_failed_checkout_can_still_be_paid(coop: AsyncSumup, control: SandboxControl) -> None:
    checkout_id = await create_checkout_id(coop)
    await control.decline(checkout_id)

    await control.pay(checkout_id)

    checkout = await coop.checkouts.get(checkout_id)
    assert checkout.status == "PAID"
    assert [t.status for t in checkout.transactions or []] == ["FAILED", "SUCCESSFUL"]
    assert checkout.transaction_id == (checkout.transactions or [])[1].id


async def test_list_by_reference_finds_the_checkout(coop: AsyncSumup) -> None:
    checkout_id = await create_checkout_id(coop, checkout_reference="order-5")
    await create_checkout(coop, checkout_reference="order-6")

    found = await coop.checkouts.list(checkout_reference="order-5")

    assert [checkout.id for checkout in found] == [checkout_id]


async def test_list_by_unknown_reference_is_empty(coop: AsyncSumup) -> None:
    assert await coop.checkouts.list(checkout_reference="no-such-order") == []


async def test_unknown_checkout_is_not_found(coop: AsyncSumup) -> None:
    with pytest.raises(NotFoundError) as raised:
        await coop.checkouts.get(str(uuid.uuid4()))

    assert raised.value.body == Error(error_code="NOT_FOUND", message="Resource not found")


async def test_id_longer_than_255_bytes_is_not_found(coop: AsyncSumup) -> None:
    with pytest.raises(NotFoundError):
        await coop.checkouts.get("é" * 128)


async def test_a_key_never_sees_another_merchants_checkout(
    coop: AsyncSumup, farm: AsyncSumup
) -> None:
    checkout_id = await create_checkout_id(coop, checkout_reference="order-7")

    with pytest.raises(NotFoundError):
        await farm.checkouts.get(checkout_id)
    with pytest.raises(NotFoundError):
        await farm.checkouts.deactivate(checkout_id)
    assert await farm.checkouts.list(checkout_reference="order-7") == []


# --- Deactivate -----------------------------------------------------------------------------


async def test_deactivating_a_pending_checkout_expires_it(coop: AsyncSumup) -> None:
    checkout_id = await create_checkout_id(coop)

    checkout = await coop.checkouts.deactivate(checkout_id)

    assert (checkout.id, checkout.status) == (checkout_id, "EXPIRED")
    assert (await coop.checkouts.get(checkout_id)).status == "EXPIRED"


async def test_deactivating_a_paid_checkout_is_a_checkout_processed_conflict(
    coop: AsyncSumup, control: SandboxControl
) -> None:
    checkout_id = await create_checkout_id(coop)
    await control.pay(checkout_id)

    with pytest.raises(ConflictError) as raised:
        await coop.checkouts.deactivate(checkout_id)

    assert raised.value.body == Error(
        error_code="CHECKOUT_PROCESSED", message="Checkout is already processed"
    )
    assert (await coop.checkouts.get(checkout_id)).status == "PAID"


async def test_deactivating_an_expired_checkout_is_already_processed(coop: AsyncSumup) -> None:
    checkout_id = await create_checkout_id(coop)
    await coop.checkouts.deactivate(checkout_id)

    with pytest.raises(ConflictError):
        await coop.checkouts.deactivate(checkout_id)


async def test_deactivating_an_unknown_checkout_is_not_found(coop: AsyncSumup) -> None:
    with pytest.raises(NotFoundError):
        await coop.checkouts.deactivate(str(uuid.uuid4()))


# --- Misbehaviour ---------------------------------------------------------------------------


async def test_fail_status_answers_a_server_error_for_the_next_calls_only(
    coop: AsyncSumup, control: SandboxControl
) -> None:
    await control.behave(fail_status=503, fail_count=1)

    with pytest.raises(InternalServerError) as raised:
        await create_checkout(coop, checkout_reference="order-8")
    await create_checkout(coop, checkout_reference="order-8")

    assert raised.value.status == 503
    assert raised.value.body == {"message": "Internal error"}
    stats = await control.stats()
    assert (stats["created"], stats["create_attempts"]) == (1, 2)


async def test_fail_status_without_a_count_fails_every_call_until_reset(
    coop: AsyncSumup, control: SandboxControl
) -> None:
    await control.behave(fail_status=500)

    for _ in range(3):
        with pytest.raises(InternalServerError):
            await coop.checkouts.list(checkout_reference="order-9")
    await control.reset()

    assert await coop.checkouts.list(checkout_reference="order-9") == []


async def test_slow_create_times_out_yet_the_checkout_exists_and_lookups_stay_fast(
    sandbox: RunningSandbox, control: SandboxControl
) -> None:
    await control.behave(delay_seconds=4.0, delay_only_create=True)

    # A second is far below the delay and well above a busy machine's loopback round trip.
    async with AsyncSumup(api_key=COOP_KEY, base_url=sandbox.base_url, timeout=1.0) as hasty:
        with pytest.raises(APITimeoutError):
            await create_checkout(hasty, checkout_reference="order-10")
        found = await hasty.checkouts.list(checkout_reference="order-10")

    assert [checkout.status for checkout in found] == ["PENDING"]


async def test_delay_applies_to_every_call_unless_limited_to_create(
    sandbox: RunningSandbox, control: SandboxControl
) -> None:
    await control.behave(delay_seconds=4.0, fail_count=1)

    async with AsyncSumup(api_key=COOP_KEY, base_url=sandbox.base_url, timeout=1.0) as hasty:
        with pytest.raises(APITimeoutError):
            await hasty.checkouts.list(checkout_reference="order-11")
        assert await hasty.checkouts.list(checkout_reference="order-11") == []


async def test_behaviour_refuses_unknown_settings(control: SandboxControl) -> None:
    with pytest.raises(httpx.HTTPStatusError) as raised:
        await control.behave(explode=True)

    assert raised.value.response.status_code == 400


# --- Hosted page and webhook ----------------------------------------------------------------


async def test_hosted_page_shows_the_payment_and_pay_and_decline_buttons(
    coop: AsyncSumup, web: httpx.AsyncClient
) -> None:
    created = await create_checkout(coop, description="Veg box", hosted_checkout={"enabled": True})

    page = await web.get(created.hosted_checkout_url or "")

    assert page.status_code == 200
    assert re.search(r"<button[^>]*>Pay</button>", page.text)
    assert re.search(r"<button[^>]*>Decline</button>", page.text)
    assert "£12.50" in page.text and "Veg box" in page.text and COOP in page.text


async def test_paying_on_the_hosted_page_posts_the_webhook_and_shows_success(
    coop: AsyncSumup, web: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    checkout_id = await create_checkout_id(
        coop, return_url=receiver.url, redirect_url="https://cart.example/orders/1/return"
    )

    page = await web.post(f"/pay/{checkout_id}", data={"action": "pay"})

    assert page.status_code == 200
    assert "Payment successful" in page.text
    assert re.search(
        r'<a href="https://cart.example/orders/1/return">Back to merchant</a>', page.text
    )
    assert receiver.posts == [
        ("application/json", json.dumps(webhook_for(checkout_id), separators=(",", ":")).encode())
    ]
    assert (await coop.checkouts.get(checkout_id)).status == "PAID"


async def test_declining_on_the_hosted_page_shows_failure_and_a_way_to_retry(
    coop: AsyncSumup, web: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    checkout_id = await create_checkout_id(
        coop, return_url=receiver.url, redirect_url="https://a.b/c"
    )

    page = await web.post(f"/pay/{checkout_id}", data={"action": "decline"})

    assert "Payment failed" in page.text
    assert f'<a href="/pay/{checkout_id}">Try again</a>' in page.text
    assert ">Back to merchant</a>" in page.text
    assert receiver.bodies() == [webhook_for(checkout_id)]
    assert (await coop.checkouts.get(checkout_id)).status == "FAILED"


async def test_paying_a_paid_checkout_again_changes_nothing(
    coop: AsyncSumup, web: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    checkout_id = await create_checkout_id(coop, return_url=receiver.url)
    await web.post(f"/pay/{checkout_id}", data={"action": "pay"})

    page = await web.post(f"/pay/{checkout_id}", data={"action": "pay"})

    assert page.status_code == 409
    assert "already paid" in page.text
    assert len((await coop.checkouts.get(checkout_id)).transactions or []) == 1
    assert len(receiver.posts) == 1


async def test_hosted_page_of_an_unknown_checkout_is_not_found(web: httpx.AsyncClient) -> None:
    assert (await web.get(f"/pay/{uuid.uuid4()}")).status_code == 404


async def test_webhook_twice_delivers_two_posts(
    coop: AsyncSumup, control: SandboxControl, receiver: WebhookReceiver
) -> None:
    await control.behave(webhook="twice")
    checkout_id = await create_checkout_id(coop, return_url=receiver.url)

    await control.pay(checkout_id)

    assert receiver.bodies() == [webhook_for(checkout_id)] * 2


async def test_webhook_drop_delivers_nothing_though_the_checkout_is_paid(
    coop: AsyncSumup, control: SandboxControl, receiver: WebhookReceiver
) -> None:
    await control.behave(webhook="drop")
    checkout_id = await create_checkout_id(coop, return_url=receiver.url)

    paid = await control.pay(checkout_id)

    assert paid["status"] == "PAID"
    assert receiver.posts == []


async def test_unreachable_return_url_does_not_stop_the_payment(
    coop: AsyncSumup, control: SandboxControl
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    checkout_id = await create_checkout_id(coop, return_url=f"http://127.0.0.1:{closed_port}/hook")

    assert (await control.pay(checkout_id))["status"] == "PAID"


# --- Expiry, forgery, stats -----------------------------------------------------------------


async def test_checkout_expires_once_its_ttl_is_over() -> None:
    with running_sandbox(checkout_ttl_seconds=0.3) as short_lived:
        async with AsyncSumup(api_key=COOP_KEY, base_url=short_lived.base_url) as client:
            checkout_id = await create_checkout_id(client)
            assert (await client.checkouts.get(checkout_id)).status == "PENDING"
            await asyncio.sleep(0.4)
            checkout = await client.checkouts.get(checkout_id)

    assert checkout.status == "EXPIRED"


async def test_checkout_expires_at_its_valid_until(
    coop: AsyncSumup, control: SandboxControl
) -> None:
    checkout_id = await create_checkout_id(
        coop, valid_until=datetime.now(UTC) + timedelta(seconds=0.3)
    )
    await asyncio.sleep(0.4)

    assert (await coop.checkouts.get(checkout_id)).status == "EXPIRED"
    with pytest.raises(httpx.HTTPStatusError) as raised:
        await control.pay(checkout_id)
    assert raised.value.response.status_code == 409


async def test_tampered_fields_are_what_the_get_returns(
    coop: AsyncSumup, control: SandboxControl
) -> None:
    checkout_id = await create_checkout_id(coop, checkout_reference="order-12")

    await control.tamper(
        checkout_id,
        amount=Decimal("0.01"),
        currency="EUR",
        merchant_code="MFARM0001",
        checkout_reference="order-13",
    )

    checkout = await coop.checkouts.get(checkout_id)
    assert (checkout.amount, checkout.currency) == (0.01, "EUR")
    assert (checkout.merchant_code, checkout.checkout_reference) == ("MFARM0001", "order-13")


async def test_stats_count_create_attempts_and_summarise_checkouts(
    coop: AsyncSumup, control: SandboxControl
) -> None:
    checkout_id = await create_checkout_id(coop, checkout_reference="order-14", amount=3)
    with pytest.raises(BadRequestError):
        await create_checkout(coop, amount=0)

    stats = await control.stats()

    assert stats == {
        "created": 1,
        "create_attempts": 2,
        "refund_attempts": 0,
        "refunds_applied": 0,
        "money": {},
        "checkouts": [
            {
                "id": checkout_id,
                "checkout_reference": "order-14",
                "status": "PENDING",
                "amount": 3.0,
                "currency": "GBP",
                "merchant_code": COOP,
                "transactions": [],
            }
        ],
    }


# --- Running it -----------------------------------------------------------------------------


def test_running_sandbox_serves_for_the_block_then_exits_cleanly() -> None:
    with running_sandbox() as running:
        assert httpx.get(f"{running.base_url}/_sandbox/healthz").status_code == 200

    assert running.process is not None
    assert running.process.returncode == 0


def test_running_sandbox_reports_the_childs_stderr_when_it_cannot_start() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with (
            pytest.raises(SandboxStartError) as raised,
            running_sandbox(port=taken.getsockname()[1]),
        ):
            pass

    assert "exited during startup" in str(raised.value)
    assert "Address already in use" in str(raised.value)
