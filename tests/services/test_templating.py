"""Template globals: URLs built once per endpoint give what `url_for` gives for each id."""

from __future__ import annotations

from typing import Any

import pytest
from markupsafe import Markup
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
            assert isinstance(built, Markup)  # escaped once, written as is


async def test_url_for_each_escapes_the_url_for_html(app: Quart) -> None:
    def build(endpoint: str, **values: object) -> str:
        return f"/a&b/{values['product_id']}/?x=<1>"

    assert url_for_each(build, "any", "product_id")(5) == "/a&amp;b/5/?x=&lt;1&gt;"


async def test_url_for_each_refuses_an_endpoint_without_the_id(app: Quart) -> None:
    async with app.test_request_context("/cart/"):
        with pytest.raises(ValueError):
            url_for_each(lambda endpoint, **values: "/cart/", "cart_overview.overview", "x")
