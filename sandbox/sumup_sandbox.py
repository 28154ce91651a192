"""A fake of SumUp's checkout API and hosted payment page, for tests and `make run`.

It speaks what /work/shared/SUMUP.md describes, from memory:

- checkouts: create, get, list by reference, deactivate (`/v0.1/checkouts...`), the
  hosted page (`/pay/<id>`) and the CHECKOUT_STATUS_CHANGED webhook;
- refunds: `POST /v1.0/merchants/<code>/payments/<transaction id>/refunds` with an
  optional `{"amount": 1.5}` (major units; none = all that is left) → 201 `{}`. The
  transaction becomes REFUNDED (in full or in part); its checkout stays PAID and keeps
  naming it. Errors are RFC 9457 problems with an `error_code`: 400 INVALID (bad amount,
  more than is left), 403 FORBIDDEN, 404 NOT_FOUND, 409 NOT_REFUNDABLE / ALREADY_REFUNDED;
- transaction lookup: `GET /v2.1/merchants/<code>/transactions?id=…` (or
  `transaction_code=…`) → the SDK's TransactionFull with its REFUND events.

A control API under /_sandbox/ lets tests pay, decline, forge, misbehave (delays and
5xx, for every call or only one kind, before or after the call does its work) and read
stats (counters, every checkout's transactions, money taken and refunded per currency).
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
# A transaction that charged the payer: SUCCESSFUL, or REFUNDED once any of it went back.
TOOK_MONEY = frozenset({"SUCCESSFUL", "REFUNDED"})
MAX_ID_BYTES = 255
MAX_REFERENCE_LENGTH = 64
MAX_AMOUNT = Decimal("1000000")
CENT = Decimal("0.01")
PURPOSES = frozenset({"CHECKOUT", "SETUP_RECURRING_PAYMENT"})
WEBHOOK_EVENT = "CHECKOUT_STATUS_CHANGED"
WebhookMode = Literal["normal", "drop", "twice"]
WEBHOOK_MODES: frozenset[str] = frozenset({"normal", "drop", "twice"})
CallKind = Literal["create", "list", "get", "deactivate", "refund", "get_transaction"]
# The API's endpoints by the kind of call a behaviour's `only` can single out.
CALL_KINDS: dict[str, CallKind] = {
    "api.create_checkout": "create",
    "api.list_checkouts": "list",
    "api.get_checkout": "get",
    "api.deactivate_checkout": "deactivate",
    "api.refund_transaction": "refund",
    "api.get_transaction": "get_transaction",
}
CODE_ALPHABET = string.ascii_uppercase + string.digits


# --- Errors answered with SumUp's status codes and bodies ---------------------------------


class SandboxError(Exception):
    """An error the sandbox answers with SumUp's status code and JSON body."""

    status = 500
    mimetype = "application/json"

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


class TransactionNotFound(SandboxError):
    """404 from the transaction lookup: no such transaction for this merchant."""

    status = 404

    def body(self) -> object:
        """The same body as an unknown checkout (the SDK reads it as an Error)."""
        return {"error_code": "NOT_FOUND", "message": "Resource not found"}


class ProblemError(SandboxError):
    """An error of the refund and transaction APIs: an RFC 9457 problem plus an error_code."""

    mimetype = "application/problem+json"
    slug = "bad-request"
    title = "Bad Request"
    error_code = "INVALID"

    def body(self) -> object:
        """The problem document; `detail` says what was wrong."""
        return {
            "type": f"https://developer.sumup.com/problem/{self.slug}",
            "title": self.title,
            "status": self.status,
            "detail": str(self),
            "error_code": self.error_code,
        }


class RefundAmountInvalid(ProblemError):
    """400: the amount is not a positive number of cents, or more than is left."""

    status = 400

    def body(self) -> object:
        """The problem, naming the amount field as SumUp's bad-request problems do."""
        body = cast(dict[str, object], super().body())
        body["fields"] = [{"path": "$.amount", "name": "amount", "message": str(self)}]
        return body


class RefundBodyInvalid(ProblemError):
    """400: the refund body is not a JSON object."""

    status = 400


class MerchantForbidden(ProblemError):
    """403 from the /v1.0 and /v2.1 APIs: the merchant code does not belong to the API key."""

    status = 403
    slug = "forbidden"
    title = "Forbidden"
    error_code = "FORBIDDEN"

    def __init__(self) -> None:
        super().__init__("The merchant code does not belong to this API key")


class RefundTransactionNotFound(ProblemError):
    """404: no transaction with that id for this merchant."""

    status = 404
    slug = "not-found"
    title = "Not Found"
    error_code = "NOT_FOUND"

    def __init__(self) -> None:
        super().__init__("Transaction not found")


class NotRefundable(ProblemError):
    """409: nothing is left to refund (never paid, or already refunded in full)."""

    status = 409
    slug = "conflict"
    title = "Conflict"

    def __init__(self, detail: str, *, error_code: str) -> None:
        super().__init__(detail)
        self.error_code = error_code


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


@dataclass(frozen=True)
class Refund:
    """Money sent back on a transaction: SumUp records it as a REFUND event."""

    event_id: int
    amount: Decimal
    timestamp: datetime

    def to_event_json(self, transaction_id: str) -> dict[str, object]:
        """The item of a transaction's `events` (the SDK's Event)."""
        return {
            "id": self.event_id,
            "transaction_id": transaction_id,
            "type": "REFUND",
            "status": "REFUNDED",
            "amount": float(self.amount),
            "timestamp": _iso(self.timestamp),
        }

    def to_transaction_event_json(self) -> dict[str, object]:
        """The item of a transaction's `transaction_events` (the SDK's TransactionEvent)."""
        return {
            "id": self.event_id,
            "event_type": "REFUND",
            "status": "REFUNDED",
            "amount": float(self.amount),
            "date": self.timestamp.date().isoformat(),
            "timestamp": _iso(self.timestamp),
        }


@dataclass
class Transaction:
    """One payment attempt on a checkout; a refund, whole or partial, makes it REFUNDED."""

    id: str
    transaction_code: str
    amount: Decimal
    currency: str
    merchant_code: str
    status: Literal["SUCCESSFUL", "FAILED", "REFUNDED"]
    timestamp: datetime
    auth_code: str | None
    refunds: list[Refund] = field(default_factory=list)

    @property
    def took_money(self) -> bool:
        """Whether the payer was charged (whatever was refunded since)."""
        return self.status in TOOK_MONEY

    @property
    def refunded_amount(self) -> Decimal:
        """The total sent back so far."""
        return sum((refund.amount for refund in self.refunds), Decimal("0.00"))

    @property
    def refundable_amount(self) -> Decimal:
        """What is left to refund; nothing for a failed attempt."""
        return self.amount - self.refunded_amount if self.took_money else Decimal("0.00")

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

    def to_full_json(self) -> dict[str, object]:
        """The transaction lookup's JSON (the SDK's TransactionFull) with its refund events.

        `refunded_amount` is the total as SumUp's transaction history reports it; the
        SDK's TransactionFull has no such field and drops it, so SDK users add up the
        REFUND events instead.
        """
        simple_status = "REFUNDED" if self.refunds else self.status
        return self.to_json() | {
            "simple_status": simple_status,
            "refunded_amount": float(self.refunded_amount),
            "events": [refund.to_event_json(self.id) for refund in self.refunds],
            "transaction_events": [refund.to_transaction_event_json() for refund in self.refunds],
        }


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
        # A refund leaves the checkout PAID and still naming the transaction it refunded.
        successful = (t for t in reversed(self.transactions) if t.took_money)
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

    fail_status answers API calls with that 5xx without doing them, or after doing them
    when fail_after_apply; delay_seconds slows the answer, after the call has done its
    work (so a client that times out missed an answer, not the change). `only` limits
    both to one kind of call (CALL_KINDS); delay_only_create limits only the delay to
    creates. fail_count limits both to the next N calls they touch (None: until reset).
    webhook is normal, drop (none) or twice (two at once).
    """

    delay_seconds: float = 0.0
    fail_status: int | None = None
    fail_count: int | None = None
    webhook: WebhookMode = "normal"
    delay_only_create: bool = False
    only: CallKind | None = None
    fail_after_apply: bool = False

    def touches(self, kind: CallKind) -> CallEffect:
        """What this behaviour does to a call of this kind, before fail_count."""
        if self.only not in (None, kind):
            return CallEffect()
        delays = kind == "create" or not self.delay_only_create
        return CallEffect(
            delay_seconds=self.delay_seconds if delays else 0.0,
            fail_status=self.fail_status,
            fail_after_apply=self.fail_after_apply and self.fail_status is not None,
        )


@dataclass(frozen=True)
class CallEffect:
    """What the behaviour does to one API call."""

    delay_seconds: float = 0.0
    fail_status: int | None = None
    fail_after_apply: bool = False

    @property
    def does_something(self) -> bool:
        """Whether the call is slowed or failed at all (only those count against fail_count)."""
        return self.delay_seconds > 0 or self.fail_status is not None


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
        # Transaction id → the checkout holding it, for the refund and lookup APIs.
        self.checkout_of_transaction: dict[str, str] = {}
        self.behaviour = Behaviour()
        self.faults_left: int | None = None
        self.created = 0
        self.create_attempts = 0
        self.refund_attempts = 0
        self.refunds_applied = 0
        # Never reset and seeded from the clock, so event ids stay unique across resets
        # and across sandbox processes, as a cart storing them may require.
        self.last_event_id = time.time_ns() // 1000

    def reset(self) -> None:
        """Forget every checkout and counter, and behave normally again."""
        self.checkouts.clear()
        self.checkout_of_transaction.clear()
        self.set_behaviour(Behaviour())
        self.created = 0
        self.create_attempts = 0
        self.refund_attempts = 0
        self.refunds_applied = 0

    def set_behaviour(self, behaviour: Behaviour) -> None:
        """Replace the behaviour and restart its fault counter."""
        self.behaviour = behaviour
        self.faults_left = behaviour.fail_count

    def take_call_effect(self, kind: CallKind) -> CallEffect:
        """The delay and failure for this API call; counts it against fail_count."""
        effect = self.behaviour.touches(kind)
        if not effect.does_something or self.faults_left == 0:
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
        transaction = _new_transaction(checkout, succeeded=succeeded)
        checkout.transactions.append(transaction)
        self.checkout_of_transaction[transaction.id] = checkout.id
        checkout.status = "PAID" if succeeded else "FAILED"
        return checkout

    def find_transaction(
        self, *, owner: str, transaction_id: str | None = None, code: str | None = None
    ) -> Transaction | None:
        """The merchant's transaction with this id and/or transaction code, if any."""
        if transaction_id is None and code is not None:
            # Lookups by code are rare (support, not the cart's hot path): a scan will do.
            transaction_id = next(
                (
                    transaction.id
                    for checkout in self.checkouts.values()
                    for transaction in checkout.transactions
                    if transaction.transaction_code == code
                ),
                None,
            )
        checkout = self.checkouts.get(self.checkout_of_transaction.get(transaction_id or "", ""))
        if checkout is None or checkout.owner != owner:
            return None
        transaction = next(t for t in checkout.transactions if t.id == transaction_id)
        if code not in (None, transaction.transaction_code):
            return None
        return transaction

    def refund(
        self, merchant_code: str, transaction_id: str, *, owner: str, amount: Decimal | None
    ) -> Refund:
        """Send back `amount` of the transaction (None: all that is left); it becomes REFUNDED."""
        if merchant_code != owner:
            raise MerchantForbidden()
        transaction = self.find_transaction(owner=owner, transaction_id=transaction_id)
        if transaction is None:
            raise RefundTransactionNotFound()
        if not transaction.took_money:
            raise NotRefundable(
                f"The transaction is {transaction.status}: nothing was paid",
                error_code="NOT_REFUNDABLE",
            )
        left = transaction.refundable_amount
        if left <= 0:
            raise NotRefundable(
                "The transaction is refunded in full", error_code="ALREADY_REFUNDED"
            )
        if amount is not None and amount > left:
            raise RefundAmountInvalid(f"The amount exceeds what is left to refund ({left})")
        self.last_event_id += 1
        refunded = left if amount is None else amount
        refund = Refund(event_id=self.last_event_id, amount=refunded, timestamp=_now())
        transaction.refunds.append(refund)
        transaction.status = "REFUNDED"
        self.refunds_applied += 1
        return refund

    def lookup_transaction(
        self, merchant_code: str, *, owner: str, transaction_id: str | None, code: str | None
    ) -> Transaction:
        """The merchant's transaction by id and/or transaction_code; 404 when unknown."""
        if merchant_code != owner:
            raise MerchantForbidden()
        if transaction_id is None and code is None:
            raise ValidationFailed([FieldError("MISSING", "id")])
        transaction = self.find_transaction(owner=owner, transaction_id=transaction_id, code=code)
        if transaction is None:
            raise TransactionNotFound()
        return transaction

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
            "refund_attempts": self.refund_attempts,
            "refunds_applied": self.refunds_applied,
            "money": _money_totals(checkouts),
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


def _money(amount: Decimal) -> str:
    # Exact, unlike a JSON float: tests compare these with Decimal(...) directly. A
    # format, not quantize(), so a forged huge amount cannot overflow the context.
    return f"{amount:.2f}"


def _transaction_summary(transaction: Transaction) -> dict[str, object]:
    return {
        "id": transaction.id,
        "transaction_code": transaction.transaction_code,
        "status": transaction.status,
        "amount": _money(transaction.amount),
        "refunded_amount": _money(transaction.refunded_amount),
        "refunds": [
            {
                "event_id": refund.event_id,
                "amount": _money(refund.amount),
                "timestamp": _iso(refund.timestamp),
            }
            for refund in transaction.refunds
        ],
    }


def _summary(checkout: Checkout) -> dict[str, object]:
    return {
        "id": checkout.id,
        "checkout_reference": checkout.checkout_reference,
        "status": checkout.status,
        "amount": float(checkout.amount),
        "currency": checkout.currency,
        "merchant_code": checkout.merchant_code,
        "transactions": [_transaction_summary(t) for t in checkout.transactions],
    }


def _money_totals(checkouts: list[Checkout]) -> dict[str, dict[str, str]]:
    """Per currency: what payers were charged (taken) and what went back (refunded)."""
    taken: dict[str, Decimal] = {}
    refunded: dict[str, Decimal] = {}
    for checkout in checkouts:
        for transaction in checkout.transactions:
            if transaction.took_money:
                currency = transaction.currency
                taken[currency] = taken.get(currency, Decimal(0)) + transaction.amount
                refunded[currency] = refunded.get(currency, Decimal(0)) + (
                    transaction.refunded_amount
                )
    return {
        currency: {"taken": _money(taken[currency]), "refunded": _money(refunded[currency])}
        for currency in sorted(taken)
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


def parse_refund_amount(raw: bytes) -> Decimal | None:
    """The amount a refund body asks for; None (all that is left) when it names none."""
    if not raw.strip():
        return None
    payload = read_json_object(raw)
    if payload is None:
        raise RefundBodyInvalid("The body must be a JSON object")
    amount = payload.get("amount")
    if amount is None:
        return None
    if not _is_amount(amount):
        raise RefundAmountInvalid(
            "The amount must be a number greater than zero with at most two decimals"
        )
    return Decimal(cast(int | Decimal, amount))


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
    only = _checked(payload, "only", lambda value: value in CALL_KINDS.values())
    after_apply = _checked(payload, "fail_after_apply", lambda value: isinstance(value, bool))
    if only_create is True and only not in (None, "create"):
        raise ControlRequestInvalid(f"delay_only_create contradicts only={only}")
    return Behaviour(
        delay_seconds=float(cast(int | Decimal, delay or 0)),
        fail_status=cast(int | None, _checked(payload, "fail_status", _is_server_error)),
        fail_count=cast(int | None, _checked(payload, "fail_count", _is_count)),
        webhook=cast(WebhookMode, webhook or "normal"),
        delay_only_create=only_create is True,
        only=cast(CallKind | None, only),
        fail_after_apply=after_apply is True,
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


# No prefix: SumUp's checkouts live under /v0.1, refunds under /v1.0, lookups under /v2.1.
api = Blueprint("api", __name__)


def _server_error(status: int) -> Response:
    logger.info("failing %s %s with %s", request.method, request.path, status)
    response = jsonify({"message": "Internal error"})
    response.status_code = status
    return response


@api.before_request
async def simulate_faults() -> ResponseReturnValue | None:
    """Count create and refund calls, then fail the call or mark it, as behaviour says."""
    store = _store()
    kind = CALL_KINDS[cast(str, request.endpoint)]
    if kind == "create":
        store.create_attempts += 1
    elif kind == "refund":
        store.refund_attempts += 1
    effect = store.take_call_effect(kind)
    g.sandbox_delay = effect.delay_seconds
    g.sandbox_late_failure = effect.fail_status if effect.fail_after_apply else None
    if effect.fail_status is None or effect.fail_after_apply:
        return None
    await _read_body()
    return _server_error(effect.fail_status)


async def _read_body() -> None:
    """Read a request's body before refusing it: the server closes a keep-alive
    connection whose request body was left unread, and a client that sends its next
    request on it at that moment gets a connection error instead of the answer (seen
    as a flaky 401 test: a refused refund, then a lookup on the same connection)."""
    await request.get_data()


@api.before_request
async def authenticate() -> ResponseReturnValue | None:
    """Answer 401 unless the bearer key is a sandbox account; remember its merchant."""
    merchant_code = SANDBOX_ACCOUNTS.get(_bearer_key(request.headers.get("Authorization", "")))
    if merchant_code is None:
        logger.info("refusing %s %s: no valid API key", request.method, request.path)
        await _read_body()
        return _unauthorized()
    g.merchant_code = merchant_code
    return None


@api.after_request
async def simulate_latency(response: Response) -> Response:
    """Delay the answer, or swap it for a 5xx once the call is done, as behaviour says."""
    # Sleeping after the change, not before, means a create or refund that times out
    # still happened, as when SumUp's answer is lost on the way back.
    if delay := g.get("sandbox_delay", 0.0):
        await asyncio.sleep(delay)
    if late_failure := g.get("sandbox_late_failure"):
        return _server_error(late_failure)
    return response


@api.post("/v0.1/checkouts")
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


@api.get("/v0.1/checkouts")
async def list_checkouts() -> ResponseReturnValue:
    """List the merchant's checkouts, by checkout_reference when given ([] when none)."""
    reference = request.args.get("checkout_reference")
    checkouts = _store().list_for(owner=g.merchant_code, reference=reference)
    return jsonify([checkout.to_json() for checkout in checkouts])


@api.get("/v0.1/checkouts/<checkout_id>")
async def get_checkout(checkout_id: str) -> ResponseReturnValue:
    """One of the merchant's checkouts with its transactions, or 404."""
    return _store().get(checkout_id, owner=g.merchant_code).to_json()


@api.delete("/v0.1/checkouts/<checkout_id>")
async def deactivate_checkout(checkout_id: str) -> ResponseReturnValue:
    """Expire an open checkout; 409 CHECKOUT_PROCESSED when it is PAID or EXPIRED."""
    checkout = _store().deactivate(checkout_id, owner=g.merchant_code)
    logger.info("deactivated checkout %s", checkout.id)
    return checkout.to_json()


@api.post("/v1.0/merchants/<merchant_code>/payments/<transaction_id>/refunds")
async def refund_transaction(merchant_code: str, transaction_id: str) -> ResponseReturnValue:
    """Refund the amount asked for, or all that is left: 201 with an empty object."""
    amount = parse_refund_amount(await _request_body())
    refund = _store().refund(merchant_code, transaction_id, owner=g.merchant_code, amount=amount)
    logger.info("refunded %s of transaction %s", refund.amount, transaction_id)
    return {}, 201


@api.get("/v2.1/merchants/<merchant_code>/transactions")
async def get_transaction(merchant_code: str) -> ResponseReturnValue:
    """One of the merchant's transactions by id or transaction_code, with its refunds."""
    transaction = _store().lookup_transaction(
        merchant_code,
        owner=g.merchant_code,
        transaction_id=request.args.get("id"),
        code=request.args.get("transaction_code"),
    )
    return transaction.to_full_json()


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
    """Replace how the API misbehaves (delay, 5xx, which calls, webhook mode)."""
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
    """Counters, money totals per currency and every checkout's summary."""
    return _store().stats()


@control.get("/healthz")
async def healthz() -> ResponseReturnValue:
    """Liveness, and the instance token it was started with (so its starter knows it is
    talking to its own sandbox, not another one on the same port)."""
    return {"status": "ok", "instance": os.environ.get(INSTANCE_ENV)}


async def answer_sandbox_error(error: SandboxError) -> ResponseReturnValue:
    """SumUp's JSON error body and status."""
    response = jsonify(error.body())
    response.status_code = error.status
    response.mimetype = error.mimetype
    return response


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


@dataclass(frozen=True)
class MoneyTotals:
    """Money in one currency: charged by SUCCESSFUL or REFUNDED transactions, and sent back."""

    taken: Decimal
    refunded: Decimal


class SandboxControl:
    """An async client for the /_sandbox control API; raises httpx errors on refusals."""

    def __init__(self, base_url: str) -> None:
        # Idle connections dropped before hypercorn closes them (5 s), so a control call
        # never goes out on a connection the sandbox is closing (its answer lost).
        self.client = httpx.AsyncClient(
            base_url=base_url, timeout=30.0, limits=httpx.Limits(keepalive_expiry=2.0)
        )

    async def reset(self) -> None:
        """Drop every checkout and behave normally again."""
        await self._post("/_sandbox/reset")

    async def behave(self, **behaviour: object) -> dict[str, Any]:
        """Replace the behaviour (delay_seconds, fail_status, only, ...: see Behaviour)."""
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
        """Counters, money totals and every checkout's summary with its transactions."""
        response = await self.client.get("/_sandbox/stats")
        response.raise_for_status()
        return cast(dict[str, Any], response.json())

    async def money(self) -> dict[str, MoneyTotals]:
        """Per currency, what payers were charged and what went back, as Decimals."""
        totals = (await self.stats())["money"]
        return {
            currency: MoneyTotals(Decimal(money["taken"]), Decimal(money["refunded"]))
            for currency, money in totals.items()
        }

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
