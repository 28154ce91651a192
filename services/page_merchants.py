"""Who a page checkout pays: the page's own SumUp account, or the coop's.

Shoppers are told before they pay when the money goes to a page's own merchant.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg
from sqlalchemy import ARRAY, ColumnElement, Integer, and_, any_, bindparam, select

from models import PageConfig
from services.direct_reads import DirectQuery, fetch_all


def has_own_merchant() -> ColumnElement[bool]:
    """A `PageConfig` row whose page takes payment with its own SumUp account."""
    return and_(
        PageConfig.sumup_merchant_code.is_not(None),
        PageConfig.sumup_merchant_code != "",
        PageConfig.sumup_api_key.is_not(None),
        PageConfig.sumup_api_key != "",
    )


# Read on every cart page: compiled once, run on the asyncpg connection.
_PAID_DIRECTLY = DirectQuery(
    select(PageConfig.post_id).where(
        PageConfig.post_id == any_(bindparam("page_ids", type_=ARRAY(Integer))),
        has_own_merchant(),
    ),
    parameters=("page_ids",),
)


async def pages_paid_directly(
    connection: asyncpg.Connection, page_ids: Iterable[int]
) -> frozenset[int]:
    """The pages among `page_ids` that take payment with their own SumUp account (one query)."""
    ids = sorted(set(page_ids))
    if not ids:
        return frozenset()
    rows = await fetch_all(connection, _PAID_DIRECTLY, {"page_ids": ids})
    return frozenset(row["post_id"] for row in rows)
