"""URL converters: route ids bounded to what PostgreSQL can hold."""

from __future__ import annotations

from typing import Any

from quart import Quart
from werkzeug.routing import IntegerConverter, Map


class RowIdConverter(IntegerConverter):
    """A positive id that fits PostgreSQL's `integer`; anything else is a plain 404."""

    def __init__(self, url_map: Map, *args: Any, **kwargs: Any) -> None:
        super().__init__(url_map, min=1, max=2**31 - 1)


class BigRowIdConverter(IntegerConverter):
    """A positive id that fits PostgreSQL's `bigint` (orders)."""

    def __init__(self, url_map: Map, *args: Any, **kwargs: Any) -> None:
        super().__init__(url_map, min=1, max=2**63 - 1)


def init_url_converters(app: Quart) -> None:
    """`<id:…>` and `<bigid:…>` route ids, so an absurd id never reaches the database."""
    app.url_map.converters["id"] = RowIdConverter
    app.url_map.converters["bigid"] = BigRowIdConverter
