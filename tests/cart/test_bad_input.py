"""Bad input gets a clear answer, as a page or as JSON, and changes nothing."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import Post, Product
from tests.factories import make_calendar, make_entry, make_product, make_shop
from tests.shopper import add, csrf_token, page_text, post_form

TOO_BIG_FOR_POSTGRES_INTEGER = "1000000000000"


@dataclass(frozen=True)
class Cart:
    """A shopper's cart holding 2 × Eggs and one pending booking, plus things to misuse."""

    product_id: int
    honey_id: int
    deleted_id: int
    unpriced_id: int
    euro_id: int
    entry_id: int
    ordered_entry_id: int
    others_entry_id: int
    token: str


@pytest.fixture
async def cart(client: Client, db: AsyncSession) -> Cart:
    page, market = await make_shop(db, "farm")
    eggs = await make_product(db, market, price="3.00", title="Eggs")
    honey = await make_product(db, market, price="6.00", title="Honey")
    deleted = await make_product(db, market, title="Old stock")
    deleted.deleted_at = datetime.now(UTC)
    await db.commit()
    unpriced = await make_product(db, market, price=None, title="Mystery box")
    euro = await make_product(db, market, price="4.00", currency="EUR", title="Brie")
    token = await csrf_token(client)
    assert (await add(client, eggs.id, 2, csrf_token=token)).status_code == 303
    session_id = await db.scalar(text("SELECT session_id FROM cart_items"))
    calendar = await make_calendar(db, page)
    entry = await make_entry(db, calendar, session_id=session_id)
    ordered = await make_entry(db, calendar, session_id=session_id, state="ordered")
    others = await make_entry(db, calendar, session_id="someone-else")
    return Cart(
        eggs.id, honey.id, deleted.id, unpriced.id, euro.id, entry.id, ordered.id, others.id, token
    )


async def snapshot(db: AsyncSession) -> list[tuple[Any, ...]]:
    """Every cart line and calendar entry, as the database holds them now."""
    lines = await db.execute(
        text(
            "SELECT id, user_id, session_id, product_id, market_place_id, quantity, "
            "updated_at, deleted_at FROM cart_items ORDER BY id"
        )
    )
    entries = await db.execute(
        text(
            "SELECT id, user_id, session_id, state, updated_at, deleted_at "
            "FROM calendar_entries ORDER BY id"
        )
    )
    return [tuple(row) for row in lines] + [tuple(row) for row in entries]


@dataclass(frozen=True)
class BadPost:
    """A form post that must be refused with `status` and a message containing `says`."""

    path: Callable[[Cart], str]
    form: dict[str, str]
    status: int
    says: str
    token: bool = True

    @property
    def answered_beside_the_line(self) -> bool:
        """A change the shopper could have meant (a quantity out of range, a product no
        longer sold) comes back to the line (303) with the message; what no form of ours
        sends (words or fractions for numbers) and what is not there are error pages."""
        numbers = (v for k, v in self.form.items() if k in ("quantity", "market_place"))
        return self.status == 422 and all(re.fullmatch(r"-?[0-9]+", v) for v in numbers)


def _add(cart: Cart) -> str:
    return f"/cart/add/{cart.product_id}/"


def _update(cart: Cart) -> str:
    return f"/cart/update/{cart.product_id}/"


# Route ids are bounded to PostgreSQL integers when the URL is matched.
NO_SUCH_ROUTE_ID = "There is nothing here."
QUANTITY_1_TO_99 = "Quantity must be a whole number from 1 to 99."
BAD_POSTS = {
    "add quantity abc": BadPost(_add, {"quantity": "abc"}, 422, QUANTITY_1_TO_99),
    "add quantity -1": BadPost(_add, {"quantity": "-1"}, 422, QUANTITY_1_TO_99),
    "add quantity 0": BadPost(_add, {"quantity": "0"}, 422, QUANTITY_1_TO_99),
    "add quantity 1e9": BadPost(_add, {"quantity": "1e9"}, 422, QUANTITY_1_TO_99),
    "add quantity 2.5": BadPost(_add, {"quantity": "2.5"}, 422, QUANTITY_1_TO_99),
    "add quantity past the database's integers": BadPost(
        _add, {"quantity": TOO_BIG_FOR_POSTGRES_INTEGER}, 422, "at most 99"
    ),
    "add quantity past the maximum": BadPost(_add, {"quantity": "100"}, 422, "at most 99"),
    "add of a new line past the maximum": BadPost(
        lambda cart: f"/cart/add/{cart.honey_id}/",
        {"quantity": "100"},
        422,
        "You can have at most 99 of Honey in your cart.",
    ),
    "add of a new line past the database's integers": BadPost(
        lambda cart: f"/cart/add/{cart.honey_id}/",
        {"quantity": TOO_BIG_FOR_POSTGRES_INTEGER},
        422,
        "You can have at most 99 of Honey in your cart.",
    ),
    "add that takes the line past the maximum": BadPost(
        _add, {"quantity": "98"}, 422, "You can have at most 99 of Eggs in your cart."
    ),
    "add market place abc": BadPost(
        _add, {"market_place": "abc"}, 422, "The market must be given as a number."
    ),
    "add at another market": BadPost(
        _add, {"market_place": "999"}, 422, "Eggs is not sold at that market."
    ),
    "add of an unknown product": BadPost(
        lambda cart: "/cart/add/999999/", {}, 404, "That product is not available any more."
    ),
    "add of a product id past the database's integers": BadPost(
        lambda cart: f"/cart/add/{TOO_BIG_FOR_POSTGRES_INTEGER}/",
        {},
        404,
        NO_SUCH_ROUTE_ID,
    ),
    "add of a deleted product": BadPost(
        lambda cart: f"/cart/add/{cart.deleted_id}/",
        {},
        404,
        "That product is not available any more.",
    ),
    "add of an unpriced product": BadPost(
        lambda cart: f"/cart/add/{cart.unpriced_id}/",
        {},
        422,
        "Mystery box has no price yet, so it cannot be bought.",
    ),
    "add of a second currency": BadPost(
        lambda cart: f"/cart/add/{cart.euro_id}/",
        {},
        422,
        "Your cart holds items priced in GBP; this one is priced in EUR.",
    ),
    "update quantity abc": BadPost(
        _update, {"quantity": "abc"}, 422, "Quantity must be a whole number from 0 to 99."
    ),
    "update quantity -1": BadPost(
        _update, {"quantity": "-1"}, 422, "Quantity must be a whole number from 0 to 99."
    ),
    "update without a quantity": BadPost(
        _update, {}, 422, "Quantity must be a whole number from 0 to 99."
    ),
    "update quantity past the maximum": BadPost(_update, {"quantity": "100"}, 422, "at most 99"),
    "update quantity past the database's integers": BadPost(
        _update, {"quantity": TOO_BIG_FOR_POSTGRES_INTEGER}, 422, "at most 99"
    ),
    "update of a product not in the cart": BadPost(
        lambda cart: f"/cart/update/{cart.euro_id}/",
        {"quantity": "1"},
        404,
        "That product is not in your cart.",
    ),
    "update at a market id past the database's integers": BadPost(
        _update,
        {"quantity": "3", "market_place": TOO_BIG_FOR_POSTGRES_INTEGER},
        404,
        "That product is not in your cart.",
    ),
    "remove of a product not in the cart": BadPost(
        lambda cart: f"/cart/remove/{cart.euro_id}/", {}, 404, "That product is not in your cart."
    ),
    "remove of a product id past the database's integers": BadPost(
        lambda cart: f"/cart/remove/{TOO_BIG_FOR_POSTGRES_INTEGER}/",
        {},
        404,
        NO_SUCH_ROUTE_ID,
    ),
    "remove of someone else's booking": BadPost(
        lambda cart: f"/cart/entries/{cart.others_entry_id}/remove/",
        {},
        404,
        "That booking is not in your cart.",
    ),
    "remove of a booking already ordered": BadPost(
        lambda cart: f"/cart/entries/{cart.ordered_entry_id}/remove/",
        {},
        404,
        "That booking is not in your cart.",
    ),
    "remove of an unknown booking": BadPost(
        lambda cart: "/cart/entries/999999/remove/", {}, 404, "That booking is not in your cart."
    ),
    "remove of a booking id past the database's integers": BadPost(
        lambda cart: f"/cart/entries/{TOO_BIG_FOR_POSTGRES_INTEGER}/remove/",
        {},
        404,
        NO_SUCH_ROUTE_ID,
    ),
    "add without a CSRF token": BadPost(
        _add, {"quantity": "1"}, 400, "security token was missing or out of date", token=False
    ),
    "add with a wrong CSRF token": BadPost(
        _add,
        {"quantity": "1", "csrf_token": "forged##token"},
        400,
        "security token was missing or out of date",
    ),
    "update without a CSRF token": BadPost(
        _update, {"quantity": "5"}, 400, "security token was missing or out of date", token=False
    ),
    "remove without a CSRF token": BadPost(
        lambda cart: f"/cart/remove/{cart.product_id}/",
        {},
        400,
        "security token was missing or out of date",
        token=False,
    ),
    "booking removal without a CSRF token": BadPost(
        lambda cart: f"/cart/entries/{cart.entry_id}/remove/",
        {},
        400,
        "security token was missing or out of date",
        token=False,
    ),
}


@pytest.mark.parametrize("case", BAD_POSTS.values(), ids=BAD_POSTS.keys())
async def test_bad_post_is_refused_clearly_as_a_page_and_as_json_and_changes_nothing(
    case: BadPost, cart: Cart, client: Client, db: AsyncSession
) -> None:
    before = await snapshot(db)
    form = {"csrf_token": cart.token, **case.form} if case.token else case.form

    response = await post_form(client, case.path(cart), form, token=case.token)
    if case.answered_beside_the_line:
        assert response.status_code == 303, await page_text(response)
        path, _, anchor = response.headers["Location"].partition("#")
        assert anchor.startswith(("line-", "entry-"))
        response = await client.get(path)
        page = await page_text(response)
        assert f'id="{anchor}"' in page  # the message carries the anchor the redirect names
    else:
        page = await page_text(response)
        assert response.status_code == case.status, page
    assert response.mimetype == "text/html"
    assert case.says in page.replace("&#39;", "'")
    assert "Traceback" not in page and "Something went wrong" not in page

    response = await post_form(client, case.path(cart), form, token=case.token, json=True)
    assert response.status_code == case.status
    body = await response.get_json()
    assert body["status"] == case.status
    assert case.says in body["message"]
    assert body["error"]

    assert await snapshot(db) == before


async def test_a_line_at_the_maximum_can_still_be_set_to_the_maximum(
    cart: Cart, client: Client, db: AsyncSession
) -> None:
    await add(client, cart.product_id, 97)
    response = await post_form(client, f"/cart/update/{cart.product_id}/", {"quantity": "99"})
    assert response.status_code == 303
    quantity = await db.scalar(text("SELECT quantity FROM cart_items WHERE deleted_at IS NULL"))
    assert quantity == 99


async def test_adding_exactly_up_to_the_maximum_is_allowed(
    cart: Cart, client: Client, db: AsyncSession
) -> None:
    response = await add(client, cart.product_id, 97)
    assert response.status_code == 303
    quantity = await db.scalar(text("SELECT quantity FROM cart_items WHERE deleted_at IS NULL"))
    assert quantity == 99


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "//evil.example/cart/",
        "https://evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "http://127.0.0.1:8001@evil.example/",
        "/cart/\r\nSet-Cookie: x=1",
    ],
)
async def test_next_off_this_site_is_ignored_for_the_cart(
    target: str, cart: Cart, client: Client, db: AsyncSession
) -> None:
    response = await add(client, cart.product_id, 1, next=target)
    assert response.status_code == 303
    assert response.headers["Location"] == f"/cart/#line-{cart.product_id}"


async def test_unknown_page_cart_is_a_404_page(cart: Cart, client: Client) -> None:
    response = await client.get("/cart/no-such-page/", headers={"Accept": "text/html"})
    page = await page_text(response)
    assert response.status_code == 404
    assert "There is no such page." in page
    assert "Traceback" not in page


async def test_unknown_page_cart_is_a_404_json_error(cart: Cart, client: Client) -> None:
    response = await client.get("/cart/no-such-page/", headers={"Accept": "application/json"})
    assert response.status_code == 404
    assert await response.get_json() == {
        "error": "Not found",
        "message": "There is no such page.",
        "status": 404,
    }


async def test_a_post_that_is_not_a_page_has_no_page_cart(client: Client, db: AsyncSession) -> None:
    db.add(Post(slug="a-blog-post", title="A blog post", is_page=False))
    await db.commit()
    response = await client.get("/cart/a-blog-post/")
    assert response.status_code == 404


async def test_csrf_token_of_another_session_is_refused(
    cart: Cart, client: Client, app: Any, db: AsyncSession
) -> None:
    stranger = app.test_client()
    token = await csrf_token(stranger)
    before = await snapshot(db)
    response = await post_form(
        client, f"/cart/add/{cart.product_id}/", {"quantity": "1", "csrf_token": token}
    )
    assert response.status_code == 400
    assert "security token" in await page_text(response)
    assert await snapshot(db) == before


async def test_get_on_a_write_route_is_refused_without_a_change(
    cart: Cart, client: Client, db: AsyncSession
) -> None:
    before = await snapshot(db)
    response = await client.get(f"/cart/add/{cart.product_id}/", headers={"Accept": "text/html"})
    assert response.status_code == 405
    assert "does not accept that kind of request" in await page_text(response)
    assert await snapshot(db) == before


@pytest.mark.parametrize(
    ("withdraw", "status", "says"),
    [
        ({"deleted_at": datetime.now(UTC)}, 404, "That product is not available any more."),
        ({"regular_price": None}, 422, "Honey has no price yet, so it cannot be bought."),
    ],
    ids=["deleted", "unpriced"],
)
async def test_a_line_of_a_product_no_longer_sold_cannot_be_raised_but_can_be_removed(
    withdraw: dict[str, Any],
    status: int,
    says: str,
    cart: Cart,
    client: Client,
    db: AsyncSession,
) -> None:
    await add(client, cart.honey_id, 1)
    await db.execute(update(Product).where(Product.id == cart.honey_id).values(**withdraw))
    await db.commit()
    before = await snapshot(db)
    response = await post_form(client, f"/cart/update/{cart.honey_id}/", {"quantity": 5}, json=True)
    assert response.status_code == status
    assert says in (await response.get_json())["message"]
    response = await post_form(client, f"/cart/update/{cart.honey_id}/", {"quantity": 5})
    assert response.headers["Location"] == f"/cart/#line-{cart.honey_id}"
    assert says in (await page_text(await client.get("/cart/"))).replace("&#39;", "'")
    assert await snapshot(db) == before
    response = await post_form(client, f"/cart/update/{cart.honey_id}/", {"quantity": 0})
    assert response.status_code == 303
    assert await snapshot(db) != before
