"""Fixtures of the order tests."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.db import create_sessionmaker


@pytest.fixture(autouse=True)
async def fresh_sandbox(sandbox_control: Any) -> None:
    """Every test starts with no SumUp checkouts and a well-behaved sandbox."""
    await sandbox_control.reset()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """The session factory the reconcile sweep is given."""
    return create_sessionmaker(engine)
