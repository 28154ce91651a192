"""SQLAlchemy models: the cart's own tables and the siblings' it reads."""

from models.base import Base
from models.checkout_attempt import CheckoutAttempt
from models.domain_event import DomainEvent
from models.order import CheckoutKey, Order, OrderBooking, OrderItem, OrderTransition
from models.page_config import PageConfig
from models.refund import Refund
from models.siblings.blog import Post, User
from models.siblings.events import Calendar, CalendarEntry
from models.siblings.market import CartItem, MarketPlace, Product

CART_TABLES = frozenset(
    {
        "orders",
        "order_items",
        "order_bookings",
        "order_transitions",
        "checkout_attempts",
        "checkout_keys",
        "refunds",
        "page_configs",
        "domain_events",
    }
)

__all__ = [
    "CART_TABLES",
    "Base",
    "Calendar",
    "CalendarEntry",
    "CartItem",
    "CheckoutAttempt",
    "CheckoutKey",
    "DomainEvent",
    "MarketPlace",
    "Order",
    "OrderBooking",
    "OrderItem",
    "OrderTransition",
    "PageConfig",
    "Post",
    "Product",
    "Refund",
    "User",
]
