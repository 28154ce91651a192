"""The HMAC that SumUp's webhook URL carries, so a forged order id is refused cheaply."""

from __future__ import annotations

import hashlib
import hmac


def webhook_token(secret_key: str, order_id: int) -> str:
    """The HMAC of the order id that SumUp's webhook URL carries."""
    digest = hmac.new(secret_key.encode(), f"sumup-webhook:{order_id}".encode(), hashlib.sha256)
    return digest.hexdigest()[:40]


def webhook_token_is_valid(secret_key: str, order_id: int, token: str) -> bool:
    """Whether `token` is the order's webhook token (compared in constant time).

    `compare_digest` raises on non-ASCII text: such a token is simply wrong."""
    if not token or not token.isascii():
        return False
    return hmac.compare_digest(webhook_token(secret_key, order_id), token)
