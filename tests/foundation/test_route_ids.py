"""Ids in URLs that cannot exist are a plain 404, never a database error."""

from __future__ import annotations

import pytest
from quart.typing import TestClientProtocol as Client

from tests.shopper import post_form


@pytest.mark.parametrize(
    "path",
    [
        "/orders/99999999999999999999/",
        "/orders/0/",
        "/cart/checkout/return/99999999999999999999/",
    ],
)
async def test_absurd_order_ids_are_not_found(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/cart/add/2147483648/",
        "/cart/update/99999999999/",
        "/cart/entries/99999999999/remove/",
        "/orders/99999999999999999999/pay/",
    ],
)
async def test_absurd_ids_in_forms_are_not_found(client: Client, path: str) -> None:
    response = await post_form(client, path, {"quantity": 1})
    assert response.status_code == 404
