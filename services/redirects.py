"""Where a `next` parameter may send the shopper: this site and its siblings only."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit


def safe_next(target: str | None, *, allowed_origins: Iterable[str]) -> str | None:
    """`target` when it stays on this site (a path, or one of the coop's apps), else None."""
    if not target or "\\" in target or any(ord(char) < 32 for char in target):
        return None
    parts = urlsplit(target)
    if not parts.scheme and not parts.netloc:
        return target if target.startswith("/") and not target.startswith("//") else None
    origin = f"{parts.scheme}://{parts.netloc}"
    return target if origin in set(allowed_origins) else None
