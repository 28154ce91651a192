"""Who a page checkout pays: the page's own SumUp account, or the coop's.

Shoppers are told before they pay when the money goes to a page's own merchant.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import PageConfig


async def pages_paid_directly(session: AsyncSession, page_ids: Iterable[int]) -> frozenset[int]:
    """The pages among `page_ids` that take payment with their own SumUp account (one query)."""
    ids = sorted(set(page_ids))
    if not ids:
        return frozenset()
    rows = await session.scalars(
        select(PageConfig.post_id).where(
            PageConfig.post_id.in_(ids),
            PageConfig.sumup_merchant_code.is_not(None),
            PageConfig.sumup_merchant_code != "",
            PageConfig.sumup_api_key.is_not(None),
            PageConfig.sumup_api_key != "",
        )
    )
    return frozenset(rows)
