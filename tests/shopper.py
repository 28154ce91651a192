"""A shopper driving the app through its forms, as a browser without JavaScript would."""

from __future__ import annotations

import re
from typing import Any

from quart.typing import TestClientProtocol

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def csrf_token(client: TestClientProtocol, path: str = "/dev/login") -> str:
    """A CSRF token from a page with a form, bound to this client's session."""
    page = await (await client.get(path)).get_data(as_text=True)
    match = CSRF.search(page)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


async def post_form(
    client: TestClientProtocol,
    path: str,
    data: dict[str, Any] | None = None,
    *,
    json: bool = False,
    token: bool = True,
) -> Any:
    """POST a form the way the pages do (with a CSRF token unless told not to)."""
    form = {k: str(v) for k, v in (data or {}).items()}
    if token:
        form.setdefault("csrf_token", await csrf_token(client))
    headers = {"Accept": "application/json"} if json else {"Accept": "text/html"}
    return await client.post(path, form=form, headers=headers)


async def add(client: TestClientProtocol, product_id: int, quantity: Any = 1, **extra: Any) -> Any:
    return await post_form(client, f"/cart/add/{product_id}/", {"quantity": quantity, **extra})


async def login(client: TestClientProtocol, email: str) -> Any:
    response = await post_form(client, "/dev/login", {"email": email})
    assert response.status_code == 303, await response.get_data(as_text=True)
    return response


async def page_text(response: Any) -> str:
    text: str = await response.get_data(as_text=True)
    return text
