"""The site navigation: the published pages, in their menu order."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from sqlalchemy import select

from models import Post
from services.direct_reads import DirectQuery, fetch_all


@dataclass(frozen=True)
class NavItem:
    slug: str
    title: str
    url: str


# Read on every page: compiled once, run on the asyncpg connection.
_PUBLISHED_PAGES = DirectQuery(
    select(Post.slug, Post.title)
    .where(Post.is_page.is_(True), Post.status == "published")
    .order_by(Post.nav_order, Post.title)
)


async def get_navigation_tree(connection: asyncpg.Connection, *, blog_url: str) -> list[NavItem]:
    """Published pages ordered for the menu, each linking to the blog app."""
    rows = await fetch_all(connection, _PUBLISHED_PAGES, {})
    return [NavItem(slug, title, f"{blog_url}/{slug}/") for slug, title in rows]
