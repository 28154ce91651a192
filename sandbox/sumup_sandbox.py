"""A fake of SumUp's checkout API and hosted payment page, for tests and `make run`.

It speaks what /work/shared/SUMUP.md describes (create, get, list by reference,
deactivate, the hosted page and the CHECKOUT_STATUS_CHANGED webhook) from memory, plus a
control API under /_sandbox/ that lets tests pay, decline, forge and misbehave.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Self, cast
from urllib.parse import quote, urlsplit

import httpx
from babel.numbers import format_currency
from hypercorn.asyncio import serve
from hypercorn.config import Config
from hypercorn.typing import Framework
from quart import (
    Blueprint,
    Quart,
    Response,
    abort,
    current_app,
    g,
    jsonify,
    render_template,
    request,
)
from quart.typing import ResponseReturnValue

from sandbox.sumup_accounts import (
    SANDBOX_ACCOUNTS,
    SANDBOX_MERCHANT_CURRENCIES,
    SANDBOX_MERCHANT_NAMES,
)

logger = logging.getLogger("sandbox.sumup_sandbox")

SANDBOX_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = SANDBOX_DIR.parent
STORE_KEY = "sumup_sandbox.store"
WEBHOOKS_KEY = "sumup_sandbox.webhooks"
INSTANCE_ENV = "SUMUP_SANDBOX_INSTANCE"

# SumUp's sandbox convention: these amounts always fail, whatever the payer does.
FAILING_AMOUNTS = frozenset(Decimal(amount) for amount in ("11.00", "42.01", "42.76", "42.91"))
OPEN_STATUSES = frozenset({"PENDING", "FAILED"})
MAX_ID_BYTES = 255
MAX_REFERENCE_LENGTH = 64
MAX_AMOUNT = Decimal("1000000")
CENT = Decimal("0.01")
PURPOSES = frozenset({"CHECKOUT", "SETUP_RECURRING_PAYMENT"})
WEBHOOK_EVENT = "CHECKOUT_STATUS_CHANGED"
WebhookMode = Literal["normal", "drop", "twice"]
WEBHOOK_MODES: frozenset[str] = frozenset({"normal", "drop", "twice"})
CODE_ALPHABET = string.ascii_uppercase + string.digits


# --- Errors answered with SumUp's status codes and bodies ---------------------------------


class SandboxError(Exception):
    """An error the sandbox answers with SumUp's status code and JSON body."""

    status = 500

    def body(self) -> object:
        """The JSON body SumUp sends with this error."""
        return {"message": "Internal error"}


@dataclass(frozen=True)
class FieldError:
    """One entry of SumUp's 400 validation answer."""

    error_code: Literal["MISSING", "INVALID"]
    param: str

    def to_json(self) -> dict[str, str]:
        """SumUp's JSON for this entry."""
        return {"message": "Validation error", "error_code": self.error_code, "param": self.param}


class ValidationFailed(SandboxError):
    """400: one error as an object; several, or an unreadable body, as an array."""

    status = 400

    def __init__(self, errors: list[FieldError], *, as_array: bool = False) -> None:
        super().__init__(", ".join(error.param for error in errors))
        self.errors = errors
        self.as_array = as_array or len(errors) > 1

    def body(self) -> object:
        """SumUp's validation body, in the object or the array shape."""
        items = [error.to_json() for error in self.errors]
        return items if self.as_array else items[0]


class ForbiddenMerchant(SandboxError):
    """403: the merchant code does not belong to the API key."""

    status = 403

    def body(self) -> object:
        """SumUp's 403 body; its status_code is a string."""
        return {
            "error_code": "FORBIDDEN",
            "error_message": "The merchant code does not belong to this API key",
            "status_code": "403",
        }


class CheckoutNotFound(SandboxError):
    """404: no checkout with that id for this merchant."""

    status = 404

    def body(self) -> object:
        """SumUp's 404 body."""
        return {"error_code": "NOT_FOUND", "message": "Resource not found"}


class DuplicatedCheckout(SandboxError):
    """409: the merchant already has a checkout with that reference."""

    status = 409

    def body(self) -> object:
        """SumUp's 409 body for a reused checkout_reference."""
        return {
            "error_code": "DUPLICATED_CHECKOUT",
            "message": "Checkout with this checkout reference and pay to email already exists",
        }


class CheckoutProcessed(SandboxError):
    """409: the checkout is PAID or EXPIRED and can no longer change."""

    status = 409

    def __init__(self, checkout: Checkout) -> None:
        super().__init__(checkout.status)
        self.checkout = checkout

    def body(self) -> object:
        """SumUp's 409 body for a checkout that is already processed."""
        return {"error_code": "CHECKOUT_PROCESSED", "message": "Checkout is already processed"}


class ControlRequestInvalid(SandboxError):
    """400 from the control API: the test sent something the sandbox cannot do."""

    status = 400

    def body(self) -> object:
        """A plain message naming what was wrong."""
        return {"message": str(self)}


# --- The state ----------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def _random_code(length: int, alphabet: str = CODE_ALPHABET) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass
class Transaction:
    """One payment attempt on a checkout."""

    id: str
    transaction_code: str
    amount: Decimal
    currency: str
    merchant_code: str
    status: Literal["SUCCESSFUL", "FAILED"]
    timestamp: datetime
    auth_code: str | None

    def to_json(self) -> dict[str, object]:
        """SumUp's JSON for an item of `transactions`; failed attempts carry no auth_code."""
        body: dict[str, object] = {
            "id": self.id,
            "transaction_code": self.transaction_code,
            "amount": float(self.amount),
            "currency": self.currency,
            "timestamp": _iso(self.timestamp),
            "status": self.status,
            "payment_type": "ECOM",
            "merchant_code": self.merchant_code,
            "entry_mode": "CUSTOMER_ENTRY",
        }
        if self.auth_code is not None:
            body["auth_code"] = self.auth_code
        return body


@dataclass(frozen=True)
class CheckoutRequest:
    """A validated create-checkout body."""

    checkout_reference: str
    amount: Decimal
    currency: str
    merchant_code: str
    description: str | None = None
    return_url: str | None = None
    redirect_url: str | None = None
    hosted_checkout: bool = False
    valid_until: datetime | None = None
    customer_id: str | None = None


@dataclass
class Checkout:
    """A stored checkout; `owner` is the key's merchant, kept apart so tampering hides nothing."""

    id: str
    owner: str
    checkout_reference: str
    amount: Decimal
    currency: str
    merchant_code: str
    date: datetime
    expires_at: datetime
    description: str | None = None
    return_url: str | None = None
    redirect_url: str | None = None
    hosted_checkout_url: str | None = None
    valid_until: datetime | None = None
    customer_id: str | None = None
    status: str = "PENDING"
    transactions: list[Transaction] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        """Whether the payer can still pay (PENDING, or FAILED and retried)."""
        return self.status in OPEN_STATUSES

    def expire_if_due(self, now: datetime) -> None:
        """Move an open checkout to EXPIRED once its lifetime is over."""
        if self.is_open and now >= self.expires_at:
            self.status = "EXPIRED"

    def paid_by(self) -> Transaction | None:
        """The successful transaction of a PAID checkout."""
        if self.status != "PAID":
            return None
        successful = (t for t in reversed(self.transactions) if t.status == "SUCCESSFUL")
        return next(successful, None)

    def to_json(self) -> dict[str, object]:
        """SumUp's JSON for the checkout (parses as the SDK's Checkout and CheckoutSuccess)."""
        body: dict[str, object] = {
            "id": self.id,
            "checkout_reference": self.checkout_reference,
            "amount": float(self.amount),
            "currency": self.currency,
            "merchant_code": self.merchant_code,
            "status": self.status,
            "date": _iso(self.date),
            "transactions": [transaction.to_json() for transaction in self.transactions],
        }
        optional = {
            "description": self.description,
            "return_url": self.return_url,
            "redirect_url": self.redirect_url,
            "hosted_checkout_url": self.hosted_checkout_url,
            "customer_id": self.customer_id,
            "valid_until": _iso(self.valid_until) if self.valid_until else None,
        }
        body.update({name: value for name, value in optional.items() if value is not None})
        if paid := self.paid_by():
            body["transaction_code"] = paid.transaction_code
            body["transaction_id"] = paid.id
        return body


@dataclass(frozen=True)
class Behaviour:
    """How the API misbehaves; each POST /_sandbox/behaviour replaces it whole.

    fail_status answers every API call with that 5xx; delay_seconds slows every call, or
    only creates when delay_only_create; fail_count limits both to the next N calls they
    touch (None: until reset). webhook is normal, drop (none) or twice (two at once).
    """

    delay_seconds: float = 0.0
    fail_status: int | None = None
    fail_count: int | None = None
    webhook: WebhookMode = "normal"
    delay_only_create: bool = False


@dataclass(frozen=True)
class CallEffect:
    """What the behaviour does to one API call."""

    delay_seconds: float = 0.0
    fail_status: int | None = None


@dataclass(frozen=True)
class Tamper:
    """Stored fields to overwrite, to show the cart forged data."""

    amount: Decimal | None = None
    currency: str | None = None
    merchant_code: str | None = None
    checkout_reference: str | None = None


class CheckoutStore:
    """The sandbox's memory: checkouts, counters and the current behaviour.

    Methods are synchronous and never await, so on the server's single event loop each
    runs whole before another request is served: no lock is needed, and none is taken.
    """

    def __init__(self, *, checkout_ttl_seconds: float) -> None:
        self.ttl = timedelta(seconds=checkout_ttl_seconds)
        self.checkouts: dict[str, Checkout] = {}
        self.behaviour = Behaviour()
        self.faults_left: int | None = None
        self.created = 0
        self.create_attempts = 0

    def reset(self) -> None:
        """Forget every checkout and counter, and behave normally again."""
        self.checkouts.clear()
        self.set_behaviour(Behaviour())
        self.created = 0
        self.create_attempts = 0

    def set_behaviour(self, behaviour: Behaviour) -> None:
        """Replace the behaviour and restart its fault counter."""
        self.behaviour = behaviour
        self.faults_left = behaviour.fail_count

    def take_call_effect(self, *, is_create: bool) -> CallEffect:
        """The delay and failure for this API call; counts it against fail_count."""
        behaviour = self.behaviour
        delays = is_create or not behaviour.delay_only_create
        effect = CallEffect(behaviour.delay_seconds if delays else 0.0, behaviour.fail_status)
        if effect == CallEffect() or self.faults_left == 0:
            return CallEffect()
        if self.faults_left is not None:
            self.faults_left -= 1
        return effect

    def create(self, wanted: CheckoutRequest, *, owner: str, hosted_base_url: str) -> Checkout:
        """Store a new PENDING checkout for the key's merchant."""
        if wanted.merchant_code != owner:
            raise ForbiddenMerchant()
        if self.list_for(owner=owner, reference=wanted.checkout_reference):
            raise DuplicatedCheckout()
        checkout = _new_checkout(wanted, owner=owner, ttl=self.ttl)
        if wanted.hosted_checkout:
            checkout.hosted_checkout_url = f"{hosted_base_url.rstrip('/')}/pay/{checkout.id}"
        self.checkouts[checkout.id] = checkout
        self.created += 1
        return checkout

    def get(self, checkout_id: str, *, owner: str | None = None) -> Checkout:
        """The checkout, as of now; `owner` limits it to one merchant's checkouts."""
        if len(checkout_id.encode()) > MAX_ID_BYTES:
            raise CheckoutNotFound()
        checkout = self.checkouts.get(checkout_id)
        if checkout is None or owner not in (None, checkout.owner):
            raise CheckoutNotFound()
        checkout.expire_if_due(_now())
        return checkout

    def list_for(self, *, owner: str, reference: str | None) -> list[Checkout]:
        """The merchant's checkouts, optionally only those with this reference."""
        found = [
            checkout
            for checkout in self.checkouts.values()
            if checkout.owner == owner and reference in (None, checkout.checkout_reference)
        ]
        for checkout in found:
            checkout.expire_if_due(_now())
        return found

    def deactivate(self, checkout_id: str, *, owner: str) -> Checkout:
        """Expire an open checkout; a PAID or EXPIRED one is already processed (409)."""
        checkout = self.get(checkout_id, owner=owner)
        if not checkout.is_open:
            raise CheckoutProcessed(checkout)
        checkout.status = "EXPIRED"
        return checkout

    def settle(self, checkout_id: str, *, approve: bool) -> Checkout:
        """Record one payment attempt: PAID, or FAILED when declined or a failing amount."""
        checkout = self.get(checkout_id)
        if not checkout.is_open:
            raise CheckoutProcessed(checkout)
        succeeded = approve and checkout.amount not in FAILING_AMOUNTS
        checkout.transactions.append(_new_transaction(checkout, succeeded=succeeded))
        checkout.status = "PAID" if succeeded else "FAILED"
        return checkout

    def tamper(self, checkout_id: str, tamper: Tamper) -> Checkout:
        """Overwrite stored fields, whatever the checkout's state."""
        checkout = self.get(checkout_id)
        for name, value in asdict(tamper).items():
            if value is not None:
                setattr(checkout, name, value)
        return checkout

    def stats(self) -> dict[str, object]:
        """Counters and a summary of every checkout, for assertions in tests."""
        checkouts = list(self.checkouts.values())
        for checkout in checkouts:
            checkout.expire_if_due(_now())
        return {
            "created": self.created,
            "create_attempts": self.create_attempts,
            "checkouts": [_summary(checkout) for checkout in checkouts],
        }


def _new_checkout(request: CheckoutRequest, *, owner: str, ttl: timedelta) -> Checkout:
    created_at = _now()
    expires_at = created_at + ttl
    if request.valid_until is not None:
        expires_at = min(expires_at, request.valid_until)
    return Checkout(
        id=str(uuid.uuid4()),
        owner=owner,
        checkout_reference=request.checkout_reference,
        amount=request.amount,
        currency=request.currency,
        merchant_code=request.merchant_code,
        date=created_at,
        expires_at=expires_at,
        description=request.description,
        return_url=request.return_url,
        redirect_url=request.redirect_url,
        valid_until=request.valid_until,
        customer_id=request.customer_id,
    )


def _new_transaction(checkout: Checkout, *, succeeded: bool) -> Transaction:
    return Transaction(
        id=str(uuid.uuid4()),
        transaction_code="TX" + _random_code(8),
        amount=checkout.amount,
        currency=checkout.currency,
        merchant_code=checkout.merchant_code,
        status="SUCCESSFUL" if succeeded else "FAILED",
        timestamp=_now(),
        auth_code=_random_code(6, string.digits) if succeeded else None,
    )


def _summary(checkout: Checkout) -> dict[str, object]:
    return {
        "id": checkout.id,
        "checkout_reference": checkout.checkout_reference,
        "status": checkout.status,
        "amount": float(checkout.amount),
        "merchant_code": checkout.merchant_code,
    }


# --- Reading request bodies ---------------------------------------------------------------


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number")


def read_json_object(raw: bytes) -> dict[str, object] | None:
    """The body as a JSON object with exact Decimal numbers, or None if it is not one."""
    try:
        value = json.loads(raw or b"null", parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    return cast(dict[str, object], value) if isinstance(value, dict) else None


def _is_number(value: object) -> bool:
    return isinstance(value, int | Decimal) and not isinstance(value, bool)


def _is_amount(value: object) -> bool:
    if not _is_number(value):
        return False
    amount = Decimal(cast(int | Decimal, value))
    return 0 < amount <= MAX_AMOUNT and amount == amount.quantize(CENT)


def _is_reference(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_REFERENCE_LENGTH


def _is_text(value: object) -> bool:
    return isinstance(value, str) and value != ""


def _is_http_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _is_hosted_checkout(value: object) -> bool:
    return isinstance(value, dict) and isinstance(value.get("enabled"), bool)


def _parse_timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _create_checks(merchant_currency: str) -> dict[str, tuple[bool, Callable[[object], bool]]]:
    """Field name → (required, validity check), in the order SumUp reports them."""
    return {
        "checkout_reference": (True, _is_reference),
        "amount": (True, _is_amount),
        # Equality with the merchant's currency also proves it is three letters.
        "currency": (True, lambda value: value == merchant_currency),
        "merchant_code": (True, _is_text),
        "description": (False, lambda value: isinstance(value, str)),
        "return_url": (False, _is_http_url),
        "redirect_url": (False, _is_http_url),
        "hosted_checkout": (False, _is_hosted_checkout),
        "valid_until": (False, lambda value: _parse_timestamp(value) is not None),
        "customer_id": (False, _is_text),
        "purpose": (False, lambda value: value in PURPOSES),
    }


def _field_errors(payload: dict[str, object], merchant_currency: str) -> list[FieldError]:
    errors: list[FieldError] = []
    for name, (required, is_valid) in _create_checks(merchant_currency).items():
        value = payload.get(name)
        if value is None and required:
            errors.append(FieldError("MISSING", name))
        elif value is not None and not is_valid(value):
            errors.append(FieldError("INVALID", name))
    return errors


def parse_checkout_request(raw: bytes, *, merchant_currency: str) -> CheckoutRequest:
    """Validate a create body the way SumUp answers it (400 naming each bad field)."""
    payload = read_json_object(raw)
    if payload is None:
        raise ValidationFailed([FieldError("INVALID", "body")], as_array=True)
    if errors := _field_errors(payload, merchant_currency):
        raise ValidationFailed(errors)
    hosted = cast(dict[str, object] | None, payload.get("hosted_checkout")) or {}
    return CheckoutRequest(
        checkout_reference=cast(str, payload["checkout_reference"]),
        amount=Decimal(cast(int | Decimal, payload["amount"])),
        currency=cast(str, payload["currency"]),
        merchant_code=cast(str, payload["merchant_code"]),
        description=cast(str | None, payload.get("description")),
        return_url=cast(str | None, payload.get("return_url")),
        redirect_url=cast(str | None, payload.get("redirect_url")),
        hosted_checkout=hosted.get("enabled") is True,
        valid_until=_parse_timestamp(payload.get("valid_until")),
        customer_id=cast(str | None, payload.get("customer_id")),
    )


def _control_payload(raw: bytes, allowed: frozenset[str]) -> dict[str, object]:
    payload = read_json_object(raw)
    if payload is None:
        raise ControlRequestInvalid("the body must be a JSON object")
    if unknown := sorted(set(payload) - allowed):
        raise ControlRequestInvalid(f"unknown fields: {', '.join(unknown)}")
    return payload


def _checked(payload: dict[str, object], name: str, is_valid: Callable[[object], bool]) -> object:
    value = payload.get(name)
    if value is not None and not is_valid(value):
        raise ControlRequestInvalid(f"invalid {name}: {value!r}")
    return value


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_server_error(value: object) -> bool:
    return _is_count(value) and 500 <= cast(int, value) <= 599


def _is_seconds(value: object) -> bool:
    return _is_number(value) and 0 <= cast(int | Decimal, value) <= 600


def parse_behaviour(raw: bytes) -> Behaviour:
    """A Behaviour from a control request; fields left out take their defaults."""
    payload = _control_payload(raw, frozenset(Behaviour.__dataclass_fields__))
    delay = _checked(payload, "delay_seconds", _is_seconds)
    webhook = _checked(payload, "webhook", lambda value: value in WEBHOOK_MODES)
    only_create = _checked(payload, "delay_only_create", lambda value: isinstance(value, bool))
    return Behaviour(
        delay_seconds=float(cast(int | Decimal, delay or 0)),
        fail_status=cast(int | None, _checked(payload, "fail_status", _is_server_error)),
        fail_count=cast(int | None, _checked(payload, "fail_count", _is_count)),
        webhook=cast(WebhookMode, webhook or "normal"),
        delay_only_create=only_create is True,
    )


def parse_tamper(raw: bytes) -> Tamper:
    """The fields a control request wants forged on a stored checkout."""
    payload = _control_payload(raw, frozenset(Tamper.__dataclass_fields__))
    amount = _checked(payload, "amount", _is_number)
    texts = {
        name: cast(str | None, _checked(payload, name, lambda value: isinstance(value, str)))
        for name in ("currency", "merchant_code", "checkout_reference")
    }
    return Tamper(
        amount=None if amount is None else Decimal(cast(int | Decimal, amount)),
        currency=texts["currency"],
        merchant_code=texts["merchant_code"],
        checkout_reference=texts["checkout_reference"],
    )


# --- Webhooks -----------------------------------------------------------------------------


class WebhookSender:
    """Posts CHECKOUT_STATUS_CHANGED to a checkout's return_url, as SumUp does."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def notify(self, checkout: Checkout, *, mode: WebhookMode) -> None:
        """Deliver the webhook zero, one or two times (at once) as the mode says."""
        if checkout.return_url is None:
            return
        if mode == "drop":
            logger.info("dropping the webhook for checkout %s", checkout.id)
            return
        copies = 2 if mode == "twice" else 1
        deliveries = (self._deliver(checkout.return_url, checkout.id) for _ in range(copies))
        await asyncio.gather(*deliveries)

    async def _deliver(self, url: str, checkout_id: str) -> None:
        body = {"event_type": WEBHOOK_EVENT, "id": checkout_id}
        try:
            response = await self.client.post(url, json=body)
        except httpx.HTTPError as error:
            logger.warning("webhook for checkout %s to %s failed: %r", checkout_id, url, error)
            return
        logger.info("webhook for checkout %s answered %s", checkout_id, response.status_code)


# --- The web app --------------------------------------------------------------------------


def _store() -> CheckoutStore:
    return cast(CheckoutStore, current_app.extensions[STORE_KEY])


def _webhooks() -> WebhookSender:
    return cast(WebhookSender, current_app.extensions[WEBHOOKS_KEY])


async def _settle(checkout_id: str, *, approve: bool) -> Checkout:
    """Pay or decline, then notify the merchant before answering, so tests can assert."""
    store = _store()
    checkout = store.settle(checkout_id, approve=approve)
    logger.info("checkout %s is now %s", checkout.id, checkout.status)
    await _webhooks().notify(checkout, mode=store.behaviour.webhook)
    return checkout


async def _request_body() -> bytes:
    return await request.get_data(cache=True, as_text=False, parse_form_data=False)


def _bearer_key(authorization: str) -> str:
    scheme, _, key = authorization.partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


def _unauthorized() -> Response:
    response = jsonify(
        {
            "type": "https://developer.sumup.com/problem/unauthorized",
            "title": "Unauthorized",
            "status": 401,
            "detail": "The request lacks a valid API key.",
        }
    )
    response.status_code = 401
    response.mimetype = "application/problem+json"
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


api = Blueprint("api", __name__, url_prefix="/v0.1")


@api.before_request
async def simulate_faults() -> ResponseReturnValue | None:
    """Count create calls, then fail the call or mark it for delay, as behaviour says."""
    store = _store()
    is_create = request.endpoint == "api.create_checkout"
    if is_create:
        store.create_attempts += 1
    effect = store.take_call_effect(is_create=is_create)
    g.sandbox_delay = effect.delay_seconds
    if effect.fail_status is None:
        return None
    logger.info("failing %s %s with %s", request.method, request.path, effect.fail_status)
    return {"message": "Internal error"}, effect.fail_status


@api.before_request
async def authenticate() -> ResponseReturnValue | None:
    """Answer 401 unless the bearer key is a sandbox account; remember its merchant."""
    merchant_code = SANDBOX_ACCOUNTS.get(_bearer_key(request.headers.get("Authorization", "")))
    if merchant_code is None:
        logger.info("refusing %s %s: no valid API key", request.method, request.path)
        return _unauthorized()
    g.merchant_code = merchant_code
    return None


@api.after_request
async def simulate_latency(response: Response) -> Response:
    """Delay the answer as behaviour says."""
    # Sleeping after the change, not before, means a create that times out still
    # exists, as when SumUp's answer is lost on the way back.
    if delay := g.get("sandbox_delay", 0.0):
        await asyncio.sleep(delay)
    return response


@api.post("/checkouts")
async def create_checkout() -> ResponseReturnValue:
    """Create a checkout: 201 with SumUp's Checkout body."""
    merchant_code: str = g.merchant_code
    checkout_request = parse_checkout_request(
        await _request_body(), merchant_currency=SANDBOX_MERCHANT_CURRENCIES[merchant_code]
    )
    checkout = _store().create(
        checkout_request, owner=merchant_code, hosted_base_url=request.host_url
    )
    logger.info("created checkout %s (%s)", checkout.id, checkout.checkout_reference)
    return checkout.to_json(), 201


@api.get("/checkouts")
async def list_checkouts() -> ResponseReturnValue:
    """List the merchant's checkouts, by checkout_reference when given ([] when none)."""
    reference = request.args.get("checkout_reference")
    checkouts = _store().list_for(owner=g.merchant_code, reference=reference)
    return jsonify([checkout.to_json() for checkout in checkouts])


@api.get("/checkouts/<checkout_id>")
async def get_checkout(checkout_id: str) -> ResponseReturnValue:
    """One of the merchant's checkouts with its transactions, or 404."""
    return _store().get(checkout_id, owner=g.merchant_code).to_json()


@api.delete("/checkouts/<checkout_id>")
async def deactivate_checkout(checkout_id: str) -> ResponseReturnValue:
    """Expire an open checkout; 409 CHECKOUT_PROCESSED when it is PAID or EXPIRED."""
    checkout = _store().deactivate(checkout_id, owner=g.merchant_code)
    logger.info("deactivated checkout %s", checkout.id)
    return checkout.to_json()


hosted = Blueprint("hosted", __name__, url_prefix="/pay")


@hosted.get("/<checkout_id>")
async def pay_page(checkout_id: str) -> ResponseReturnValue:
    """The hosted payment page, with its Pay and Decline buttons while payable."""
    checkout = _store().get(checkout_id)
    template = "pay.html" if checkout.is_open else "closed.html"
    return await render_template(template, checkout=checkout)


@hosted.post("/<checkout_id>")
async def submit_payment(checkout_id: str) -> ResponseReturnValue:
    """Pay or decline from the hosted page, notify the merchant, show the outcome."""
    action = (await request.form).get("action")
    if action not in ("pay", "decline"):
        abort(400)
    checkout = await _settle(checkout_id, approve=action == "pay")
    return await render_template("result.html", checkout=checkout)


@hosted.errorhandler(CheckoutNotFound)
async def hosted_not_found(error: CheckoutNotFound) -> ResponseReturnValue:
    """A page, not JSON, for an unknown checkout."""
    return await render_template("not_found.html"), 404


@hosted.errorhandler(CheckoutProcessed)
async def hosted_processed(error: CheckoutProcessed) -> ResponseReturnValue:
    """A page saying the checkout is already paid or expired; nothing changed."""
    return await render_template("closed.html", checkout=error.checkout), 409


control = Blueprint("control", __name__, url_prefix="/_sandbox")


@control.post("/reset")
async def reset() -> ResponseReturnValue:
    """Drop every checkout and behave normally again."""
    _store().reset()
    logger.info("reset")
    return {"status": "reset"}


@control.post("/behaviour")
async def set_behaviour() -> ResponseReturnValue:
    """Replace how the API misbehaves (delay, 5xx, webhook mode)."""
    behaviour = parse_behaviour(await _request_body())
    _store().set_behaviour(behaviour)
    logger.info("behaviour is now %s", behaviour)
    return asdict(behaviour)


@control.post("/checkouts/<checkout_id>/pay")
async def pay(checkout_id: str) -> ResponseReturnValue:
    """Press Pay on the hosted page; answers the checkout after the move."""
    return (await _settle(checkout_id, approve=True)).to_json()


@control.post("/checkouts/<checkout_id>/decline")
async def decline(checkout_id: str) -> ResponseReturnValue:
    """Press Decline on the hosted page; answers the checkout after the move."""
    return (await _settle(checkout_id, approve=False)).to_json()


@control.post("/checkouts/<checkout_id>/tamper")
async def tamper(checkout_id: str) -> ResponseReturnValue:
    """Forge stored fields, so tests can show the cart refuses them."""
    checkout = _store().tamper(checkout_id, parse_tamper(await _request_body()))
    logger.info("tampered with checkout %s", checkout.id)
    return checkout.to_json()


@control.get("/stats")
async def stats() -> ResponseReturnValue:
    """Create counters and every checkout's summary."""
    return _store().stats()


@control.get("/healthz")
async def healthz() -> ResponseReturnValue:
    """Liveness, and the instance token it was started with (so its starter knows it is
    talking to its own sandbox, not another one on the same port)."""
    return {"status": "ok", "instance": os.environ.get(INSTANCE_ENV)}


async def answer_sandbox_error(error: SandboxError) -> ResponseReturnValue:
    """SumUp's JSON error body and status."""
    return jsonify(error.body()), error.status


async def open_webhook_client() -> None:
    """Create the HTTP client that delivers webhooks."""
    current_app.extensions[WEBHOOKS_KEY] = WebhookSender(httpx.AsyncClient(timeout=5.0))


async def close_webhook_client() -> None:
    """Close the webhook client."""
    await _webhooks().client.aclose()


def format_money(amount: Decimal, currency: str) -> str:
    """An amount as the payer reads it, e.g. £12.50."""
    return format_currency(amount, currency, locale="en_GB")


def merchant_name(merchant_code: str) -> str:
    """The merchant's display name, or its code when the sandbox does not know it."""
    return SANDBOX_MERCHANT_NAMES.get(merchant_code, merchant_code)


def create_sandbox_app(*, checkout_ttl_seconds: float = 1800) -> Quart:
    """Build the SumUp sandbox; its state lives in memory, in this app only.

    Serve it (or use `app.test_app()`) so before_serving opens the webhook client.
    """
    app = Quart(
        "sandbox.sumup_sandbox", root_path=str(SANDBOX_DIR), template_folder="templates_sumup"
    )
    app.extensions[STORE_KEY] = CheckoutStore(checkout_ttl_seconds=checkout_ttl_seconds)
    app.jinja_env.filters["money"] = format_money
    app.jinja_env.globals["merchant_name"] = merchant_name
    for blueprint in (api, hosted, control):
        app.register_blueprint(blueprint)
    app.register_error_handler(SandboxError, answer_sandbox_error)
    app.before_serving(open_webhook_client)
    app.after_serving(close_webhook_client)
    return app


# --- Running it ---------------------------------------------------------------------------


async def serve_sandbox(*, host: str, port: int, checkout_ttl_seconds: float) -> None:
    """Serve the sandbox with hypercorn until SIGINT or SIGTERM."""
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 2.0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    app = create_sandbox_app(checkout_ttl_seconds=checkout_ttl_seconds)
    await serve(cast(Framework, app), config, shutdown_trigger=stop.wait)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="SumUp checkout API sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8009)
    parser.add_argument("--checkout-ttl", type=float, default=1800.0, help="seconds")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line entry: python -m sandbox.sumup_sandbox --host H --port P."""
    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(
        serve_sandbox(host=args.host, port=args.port, checkout_ttl_seconds=args.checkout_ttl)
    )


class SandboxStartError(RuntimeError):
    """The sandbox subprocess died or never became healthy."""


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class RunningSandbox:
    """The sandbox served by a child process, for tests and `make run`."""

    def __init__(
        self, *, port: int = 0, checkout_ttl_seconds: float = 1800, host: str = "127.0.0.1"
    ) -> None:
        self.host = host
        self.port = port or _free_port(host)
        self.checkout_ttl_seconds = checkout_ttl_seconds
        self.base_url = f"http://{host}:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    def start(self, *, timeout: float = 20.0) -> None:
        """Start the child process and wait until its health check answers."""
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        command = [
            sys.executable,
            "-m",
            "sandbox.sumup_sandbox",
            *("--host", self.host, "--port", str(self.port)),
            *("--checkout-ttl", str(self.checkout_ttl_seconds)),
        ]
        self.process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=_child_env(), stderr=self._stderr
        )
        try:
            self._wait_until_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        logger.info("SumUp sandbox running at %s", self.base_url)

    def _wait_until_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise self._start_error("exited during startup")
            if self._answers_health_check():
                return
            time.sleep(0.05)
        raise self._start_error(f"did not answer {self.base_url} within {timeout:g}s")

    def _answers_health_check(self) -> bool:
        try:
            response = httpx.get(f"{self.base_url}/_sandbox/healthz", timeout=0.5)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def _start_error(self, what: str) -> SandboxStartError:
        return SandboxStartError(f"SumUp sandbox {what}; its stderr:\n{self.stderr_text()}")

    def stderr_text(self) -> str:
        """What the child process wrote to stderr so far (its last 8 kB)."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-8000:]

    def stop(self) -> None:
        """Terminate the child process (SIGTERM, then SIGKILL after 5 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@contextmanager
def running_sandbox(port: int = 0, checkout_ttl_seconds: float = 1800) -> Iterator[RunningSandbox]:
    """Run the sandbox in a subprocess for the block; port 0 picks a free one."""
    with RunningSandbox(port=port, checkout_ttl_seconds=checkout_ttl_seconds) as sandbox:
        yield sandbox


class SandboxControl:
    """An async client for the /_sandbox control API; raises httpx errors on refusals."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.AsyncClient(base_url=base_url, timeout=30.0)

    async def reset(self) -> None:
        """Drop every checkout and behave normally again."""
        await self._post("/_sandbox/reset")

    async def behave(self, **behaviour: object) -> dict[str, Any]:
        """Replace the behaviour (delay_seconds, fail_status, fail_count, webhook, ...)."""
        return await self._post("/_sandbox/behaviour", behaviour)

    async def pay(self, checkout_id: str) -> dict[str, Any]:
        """Pay the checkout as the hosted page's Pay button does."""
        return await self._post(f"/_sandbox/checkouts/{quote(checkout_id, safe='')}/pay")

    async def decline(self, checkout_id: str) -> dict[str, Any]:
        """Decline the checkout as the hosted page's Decline button does."""
        return await self._post(f"/_sandbox/checkouts/{quote(checkout_id, safe='')}/decline")

    async def tamper(self, checkout_id: str, **fields: object) -> dict[str, Any]:
        """Overwrite amount, currency, merchant_code or checkout_reference."""
        body = {name: _json_number(value) for name, value in fields.items()}
        return await self._post(f"/_sandbox/checkouts/{quote(checkout_id, safe='')}/tamper", body)

    async def stats(self) -> dict[str, Any]:
        """Create counters and every checkout's summary."""
        response = await self.client.get("/_sandbox/stats")
        response.raise_for_status()
        return cast(dict[str, Any], response.json())

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _post(self, path: str, body: dict[str, object] | None = None) -> dict[str, Any]:
        response = await self.client.post(path, json=body)
        response.raise_for_status()
        return cast(dict[str, Any], response.json())


def _json_number(value: object) -> object:
    # httpx cannot encode Decimal; a string would change the field's type on the wire.
    return float(value) if isinstance(value, Decimal) else value


if __name__ == "__main__":
    main()
