"""Who a page checkout pays: the page's own SumUp account, or the coop's.

Shoppers are told before they pay when the money goes to a page's own merchant
(`PageRef.paid_directly`, read with the cart's lines and entries or with the page).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_

from models import PageConfig


def has_own_merchant() -> ColumnElement[bool]:
    """A `PageConfig` row whose page takes payment with its own SumUp account."""
    return and_(
        PageConfig.sumup_merchant_code.is_not(None),
        PageConfig.sumup_merchant_code != "",
        PageConfig.sumup_api_key.is_not(None),
        PageConfig.sumup_api_key != "",
    )
