"""The development stand-ins exist only outside production."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from app import create_app


@pytest.mark.parametrize("path", ["/dev/login", "/dev/shop"])
async def test_dev_routes_are_not_found_in_production(settings: Any, path: str) -> None:
    app = create_app(replace(settings, env="production"))
    async with app.test_app() as test_app:
        response = await test_app.test_client().get(path)
    assert response.status_code == 404


async def test_dev_logout_is_not_found_in_production(settings: Any) -> None:
    app = create_app(replace(settings, env="production"))
    async with app.test_app() as test_app:
        response = await test_app.test_client().post("/dev/logout")
    assert response.status_code == 404


@pytest.mark.parametrize("env", ["development", "test"])
async def test_dev_routes_exist_in_development_and_tests(settings: Any, env: str) -> None:
    app = create_app(replace(settings, env=env))
    async with app.test_app() as test_app:
        response = await test_app.test_client().get("/dev/shop")
    assert response.status_code == 200
