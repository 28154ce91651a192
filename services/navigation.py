"""The site navigation: the published pages, in their menu order."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Post


@dataclass(frozen=True)
class NavItem:
    slug: str
    title: str
    url: str


_PUBLISHED_PAGES = (
    select(Post.slug, Post.title)
    .where(Post.is_page.is_(True), Post.status == "published")
    .order_by(Post.nav_order, Post.title)
)


async def get_navigation_tree(session: AsyncSession, *, blog_url: str) -> list[NavItem]:
    """Published pages ordered for the menu, each linking to the blog app."""
    connection = await session.connection()
    rows = await connection.execute(_PUBLISHED_PAGES)
    return [NavItem(slug, title, f"{blog_url}/{slug}/") for slug, title in rows]
