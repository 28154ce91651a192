"""Merge an anonymous cart into the user's cart once, when the shopper signs in."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, literal, not_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bp.cart.services.calendar_cart import entry_in_cart
from bp.cart.services.identity import Identity, lock_identity
from bp.cart.services.update_cart import upsert_line
from models import CalendarEntry, CartItem, Order, OrderItem, Product
from models.order import UNPAID_STATUSES
from services.direct_reads import session_connection


@dataclass
class MergeReport:
    """What moved, so the shopper can be told (surprise merges upset people)."""

    lines: list[tuple[str, int]] = field(default_factory=list)
    capped: list[str] = field(default_factory=list)
    entries: list[str] = field(default_factory=list)
    orders: int = 0
    # Lines and bookings left in the anonymous cart: priced in another currency.
    kept_apart: list[str] = field(default_factory=list)
    currency: str | None = None

    @property
    def is_empty(self) -> bool:
        return not (self.lines or self.entries or self.orders or self.kept_apart)

    def message(self) -> str:
        """One sentence for the flash message."""
        parts = [f"{quantity} × {title}" for title, quantity in self.lines]
        parts += self.entries
        text = "Welcome back! We added what you chose before signing in to your cart"
        text = f"{text}: {', '.join(parts)}." if parts else f"{text}."
        if self.capped:
            text += f" Some quantities were capped at the maximum: {', '.join(self.capped)}."
        if self.orders:
            text += f" {self.orders} earlier order(s) now show under your orders."
        if self.kept_apart:
            text += (
                f" We kept {', '.join(self.kept_apart)} out of your cart: your cart is in "
                f"{self.currency}, and one cart is paid in one currency."
            )
        return text


async def merge_anonymous_cart(
    session: AsyncSession, *, user_id: int, anonymous_id: str, max_quantity: int
) -> MergeReport:
    """Move the anonymous lines, pending entries and orders to the user, exactly once.

    Both owners are locked (user first, the same order everywhere), and the anonymous
    lines are soft-deleted in the same transaction, so a racing second merge finds
    nothing left to move. An unpaid order it claims remembers, item by item, what of
    it the merge moved into the user's lines (`OrderItem.merged_quantity`): paying it
    later takes that out, not the user's own quantity.
    """
    user = Identity(user_id=user_id)
    anonymous = Identity(session_id=anonymous_id)
    await lock_identity(session, user)
    await lock_identity(session, anonymous)
    report = MergeReport()
    # Orders before cart lines: the order in which payment confirmation locks them too.
    # An order being paid right now is waited for, and then claimed as paid.
    claimed = (
        await session.execute(
            update(Order)
            .where(Order.session_id == anonymous_id, Order.user_id.is_(None))
            .values(user_id=user_id, claimed_by_user_at=func.now())
            .returning(Order.id, Order.status)
        )
    ).all()
    report.orders = len(claimed)
    currency = await _cart_currency(session, user)
    report.currency = currency
    rows = await session.execute(
        select(CartItem, Product.title, Product.currency)
        .join(Product, Product.id == CartItem.product_id)
        .where(anonymous.owns(CartItem), CartItem.deleted_at.is_(None))
        .order_by(CartItem.id)
        .with_for_update(of=CartItem)
    )
    merged: dict[tuple[int, int], int] = {}
    moved_lines: list[int] = []
    for line, title, line_currency in rows:
        if currency is not None and line_currency != currency:
            report.kept_apart.append(title)
            continue
        added = await _merge_line(session, user, line, max_quantity=max_quantity)
        merged[line.product_id, line.market_place_id] = added
        if added < line.quantity:
            report.capped.append(title)
        report.lines.append((title, line.quantity))
        moved_lines.append(line.id)
    # The anonymous lines leave the cart as they were: `updated_at` stays the shopper's
    # last change, so a line a payment should have taken out still shows it was not.
    if moved_lines:
        await session.execute(
            update(CartItem)
            .where(CartItem.id.in_(moved_lines))
            .values(deleted_at=func.now(), updated_at=CartItem.updated_at)
            .execution_options(synchronize_session=False)
        )
    await _record_merged_quantities(
        session, [order_id for order_id, status in claimed if status in UNPAID_STATUSES], merged
    )
    if currency is None and report.lines:
        currency = await _cart_currency(session, user)
    if currency is not None:
        report.kept_apart += list(
            await session.scalars(
                select(CalendarEntry.name).where(
                    anonymous.owns(CalendarEntry),
                    CalendarEntry.deleted_at.is_(None),
                    CalendarEntry.state == "pending",
                    CalendarEntry.currency != currency,
                )
            )
        )
    # Pending bookings in another currency stay behind; ordered ones follow their order.
    other_currency = (
        (CalendarEntry.state == "pending") & (CalendarEntry.currency != currency)
        if currency is not None
        else literal(False)
    )
    moved = await session.execute(
        update(CalendarEntry)
        .where(
            anonymous.owns(CalendarEntry),
            CalendarEntry.deleted_at.is_(None),
            not_(other_currency),
        )
        .values(user_id=user_id, session_id=None, updated_at=func.now())
        .returning(CalendarEntry.name, CalendarEntry.state)
        .execution_options(synchronize_session=False)
    )
    # Entries already ordered follow their order to the user, but were not added to the cart.
    report.entries = [name for name, state in moved if state == "pending"]
    await session.flush()
    return report


async def _merge_line(
    session: AsyncSession, user: Identity, line: CartItem, *, max_quantity: int
) -> int:
    """Add an anonymous line to the user's (capped at the maximum); how many it added."""
    merged = await upsert_line(
        await session_connection(session),
        user,
        product_id=line.product_id,
        market_place_id=line.market_place_id,
        quantity=line.quantity,
        max_quantity=max_quantity,
    )
    if merged is not None:
        return line.quantity
    same_line = (
        user.owns(CartItem),
        CartItem.product_id == line.product_id,
        CartItem.market_place_id == line.market_place_id,
        CartItem.deleted_at.is_(None),
    )
    had = await session.scalar(select(CartItem.quantity).where(*same_line))
    await session.execute(
        update(CartItem).where(*same_line).values(quantity=max_quantity, updated_at=func.now())
    )
    return max(0, max_quantity - (had or 0))


async def _record_merged_quantities(
    session: AsyncSession, order_ids: list[int], moved: dict[tuple[int, int], int]
) -> None:
    """Note on each item of the claimed unpaid orders how much of it the merge moved into
    the user's lines, so that paying it later takes out that much and no more.

    Checkout lets one unpaid order at a time hold a line; should two, the newest takes
    what moved first and they never take out more than moved in together.
    """
    if not order_ids:
        return
    left = dict(moved)
    items = await session.scalars(
        select(OrderItem)
        .where(OrderItem.order_id.in_(order_ids))
        .order_by(OrderItem.order_id.desc(), OrderItem.id)
    )
    for item in items:
        key = (item.product_id, item.market_place_id)
        item.merged_quantity = min(item.quantity, left.get(key, 0))
        left[key] = left.get(key, 0) - item.merged_quantity


async def _cart_currency(session: AsyncSession, owner: Identity) -> str | None:
    """The currency of the owner's cart now (None while it is empty)."""
    lines = (
        select(Product.currency)
        .join(CartItem, CartItem.product_id == Product.id)
        .where(owner.owns(CartItem), CartItem.deleted_at.is_(None))
    )
    entries = select(CalendarEntry.currency).where(owner.owns(CalendarEntry), entry_in_cart())
    found = await session.scalar(lines.union(entries).limit(1))
    return str(found) if found is not None else None
