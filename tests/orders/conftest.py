"""Fixtures of the order tests."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(autouse=True)
async def fresh_sandbox(sandbox_control: Any) -> None:
    """Every test starts with no SumUp checkouts and a well-behaved sandbox."""
    await sandbox_control.reset()
