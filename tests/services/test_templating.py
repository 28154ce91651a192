"""Template globals: URLs built once per endpoint give what `url_for` gives for each id."""

from __future__ import annotations

from typing import Any

import pytest
from quart import Quart, url_for

from services.templating import url_for_each


@pytest.mark.parametrize(
    ("endpoint", "argument"),
    [
        ("cart_global.update", "product_id"),
        ("cart_global.remove", "product_id"),
        ("cart_global.add", "product_id"),
        ("cart_global.remove_entry", "entry_id"),
        ("order.detail", "order_id"),
    ],
)
async def test_url_for_each_equals_url_for_for_every_id(
    app: Quart, endpoint: str, argument: str
) -> None:
    async with app.test_request_context("/cart/", root_path="/shop"):
        each = url_for_each(url_for, endpoint, argument)
        for value in (1, 7, 12, 99, 1000, 2_147_483_647):
            built = each(value)
            values: dict[str, Any] = {argument: value}
            assert built == url_for(endpoint, **values)
            assert built.startswith("/shop/")


async def test_the_url_for_each_template_global_is_kept_per_mount_point(app: Quart) -> None:
    each_url: Any = app.jinja_env.globals["url_for_each"]
    async with app.test_request_context("/cart/"):
        assert each_url("cart_global.remove", "product_id")(3) == "/cart/remove/3/"
    async with app.test_request_context("/cart/", root_path="/shop"):
        assert each_url("cart_global.remove", "product_id")(3) == "/shop/cart/remove/3/"


async def test_url_for_each_refuses_an_endpoint_without_the_id(app: Quart) -> None:
    async with app.test_request_context("/cart/"):
        with pytest.raises(ValueError):
            url_for_each(lambda endpoint, **values: "/cart/", "cart_overview.overview", "x")
