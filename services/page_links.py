"""Links the pages offer: a product's page in the market app, the way back to where one was."""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import quote

from quart import Quart, request

from services.redirects import safe_next


@lru_cache(maxsize=4096)
def product_url(market_url: str, page_slug: str, product_slug: str) -> str:
    """The market app's page of a product: `<market>/<page>/product/<product>/`."""
    # Cached: a pure function of its arguments, asked for every line of every cart page.
    return f"{market_url.rstrip('/')}/{quote(page_slug)}/product/{quote(product_slug)}/"


def init_page_links(app: Quart) -> None:
    """`product_url(line)`, `back_url()` and `shops_url` for templates."""
    settings: Any = app.config.get("SETTINGS")
    app_urls = dict(getattr(settings, "app_urls", None) or {})
    market_url = app_urls.get("market")
    origins = [getattr(settings, "public_url", ""), *app_urls.values()]

    def line_product_url(line: Any) -> str | None:
        """The product's page, or None when the market app's address is unknown."""
        page = getattr(line, "page", None)
        slug = getattr(line, "product_slug", None)
        if not market_url or not slug or page is None:
            return None
        return product_url(market_url, page.slug, slug)

    def back_url() -> str | None:
        """The page the shopper came from, when it is on the coop's sites."""
        return safe_next(request.referrer, allowed_origins=origins)

    app.jinja_env.globals.update(
        product_url=line_product_url, back_url=back_url, shops_url=app_urls.get("blog")
    )
