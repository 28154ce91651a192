"""The site navigation: the published pages, in their menu order."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import ScalarSelect, func, select
from sqlalchemy.dialects.postgresql import aggregate_order_by, array

from models import Post
from services.direct_reads import DirectQuery, fetch_all


@dataclass(frozen=True)
class NavItem:
    slug: str
    title: str
    url: str


_PUBLISHED = (Post.is_page.is_(True), Post.status == "published")
_MENU_ORDER = (Post.nav_order, Post.title)

# Read on every page: compiled once, run on the asyncpg connection.
_PUBLISHED_PAGES = DirectQuery(
    select(Post.slug, Post.title).where(*_PUBLISHED).order_by(*_MENU_ORDER)
)


def navigation_items(pages: Iterable[tuple[str, str]], *, blog_url: str) -> list[NavItem]:
    """The menu of (slug, title) pairs in menu order, each linking to the blog app."""
    return [NavItem(slug, title, f"{blog_url}/{slug}/") for slug, title in pages]


async def get_navigation_tree(connection: asyncpg.Connection, *, blog_url: str) -> list[NavItem]:
    """Published pages ordered for the menu, each linking to the blog app."""
    rows = await fetch_all(connection, _PUBLISHED_PAGES, {})
    return navigation_items(rows, blog_url=blog_url)


def navigation_column() -> ScalarSelect[Any]:
    """SQL: the published pages' [slug, title] pairs in menu order, as one two-dimensional
    array (NULL when there are none), for a query that reads the menu with something else;
    read it with `navigation_items(row[...] or ())`. An array of text, not of records:
    asyncpg would look up an anonymous record type on every new connection."""
    pair = array([Post.slug, Post.title])
    ordered = aggregate_order_by(pair, *_MENU_ORDER)
    return select(func.array_agg(ordered)).where(*_PUBLISHED).scalar_subquery()
