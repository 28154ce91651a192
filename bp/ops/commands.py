"""Operator commands: `quart --app app <command>`."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import click
from quart import Blueprint
from quart.cli import ScriptInfo

from config import Settings
from services.db import create_engine, create_sessionmaker
from services.schema import BRANCHES, downgrade, upgrade

bp = Blueprint("ops_commands", __name__, cli_group=None)


def command_settings() -> Settings:
    """The app's settings, for a command that runs its own event loop.

    Quart's `with_appcontext` would run the command inside a loop already, and
    Alembic and `asyncio.run` need to start their own.
    """
    app = click.get_current_context().ensure_object(ScriptInfo).load_app()
    settings: Settings = app.config["SETTINGS"]
    return settings


@bp.cli.command("migrate")
@click.option(
    "--branch",
    type=click.Choice([*BRANCHES, "all"]),
    default="cart",
    show_default=True,
    help="cart is what production applies; siblings are stand-ins for the other apps.",
)
@click.option("--down", is_flag=True, help="Take the branch(es) back to empty instead.")
def migrate_command(branch: str, down: bool) -> None:
    """Apply (or revert) the Alembic migrations of a branch."""
    branches = BRANCHES if branch == "all" else (branch,)
    url = command_settings().database_url
    (downgrade if down else upgrade)(url, branches)
    click.echo(f"migrations {'reverted' if down else 'applied'}: {', '.join(branches)}")


@bp.cli.command("load-demo-data")
def load_demo_data_command() -> None:
    """Insert the demo pages, products, calendars and user (idempotent)."""
    from sandbox.demo_data import load_demo_data

    async def run() -> dict[str, int]:
        engine = create_engine(command_settings().database_url, pool_size=1)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                return await load_demo_data(session)
        finally:
            await engine.dispose()

    created = asyncio.run(run())
    summary = ", ".join(f"{count} {name}" for name, count in created.items()) or "nothing new"
    click.echo(f"demo data loaded: {summary}")


@bp.cli.command("reconcile")
@click.option("--batch-size", type=click.IntRange(1, 10000), default=None, help="Orders per pass.")
def reconcile_command(batch_size: int | None) -> None:
    """Follow open SumUp checkouts, expire stale orders, settle refunds (safe anywhere)."""
    from bp.cart.services.checkout_attempts import CheckoutContext
    from bp.cart.services.reconcile import reconcile_orders
    from services.sumup import SumUpClients

    settings = command_settings()

    async def run() -> str:
        engine = create_engine(settings.database_url, pool_size=2)
        clients = SumUpClients(
            base_url=settings.sumup.base_url, timeout_seconds=settings.sumup.timeout_seconds
        )
        try:
            report = await reconcile_orders(
                create_sessionmaker(engine),
                CheckoutContext(settings, clients),
                batch_size=batch_size or settings.reconcile.batch_size,
                expire_after=timedelta(minutes=settings.orders.unpaid_expiry_minutes),
            )
        finally:
            await clients.aclose()
            await engine.dispose()
        return str(report)

    click.echo(f"reconcile: {asyncio.run(run())}")
