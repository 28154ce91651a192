"""SQLAlchemy models: the cart's own tables and the siblings' it reads."""

from models.base import Base
from models.order import Order, OrderItem
from models.page_config import PageConfig
from models.siblings.blog import Post, User
from models.siblings.events import Calendar, CalendarEntry
from models.siblings.market import CartItem, MarketPlace, Product
from models.siblings.shared import DomainEvent

CART_TABLES = frozenset({"orders", "order_items", "page_configs"})

__all__ = [
    "CART_TABLES",
    "Base",
    "Calendar",
    "CalendarEntry",
    "CartItem",
    "DomainEvent",
    "MarketPlace",
    "Order",
    "OrderItem",
    "PageConfig",
    "Post",
    "Product",
    "User",
]
