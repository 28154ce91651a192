"""The cart service's application factory.

`create_app()` loads and validates the settings, sets up logging (JSON in
production, one access line per request with its request id), wires the extensions
(database, Redis sessions, SumUp clients, metrics), registers the blueprints, the
error handlers and the CLI commands. `app = create_app()` below is what the workers
of `services.server` (and the seed's `hypercorn app:app`) serve; bad settings stop it
with one line each, not a traceback.
"""

from __future__ import annotations

from typing import Any

from quart import Quart

import path_setup  # noqa: F401  (puts the project root on sys.path)
from bp.cart.context import init_cart_context
from config import ConfigError, Settings, load_settings
from config.settings import report_config_error
from services.background import init_background_tasks
from services.compression import init_compression
from services.db import init_db, init_request_commit
from services.error_pages import init_error_handlers
from services.formatting import init_formatting
from services.input_guard import init_input_guard
from services.logging_setup import init_request_logging, setup_logging
from services.metrics import init_metrics
from services.page_assets import init_page_assets
from services.page_links import init_page_links
from services.page_messages import init_page_messages
from services.rate_limits import init_rate_limits
from services.redis_client import create_redis
from services.routing import init_url_converters
from services.security_headers import init_security_headers
from services.sessions import RedisSessionInterface, require_session_store
from services.sumup import init_sumup
from services.templating import init_templates

# Routes that work with Redis down: SumUp's notifications (payments still settle) and ops.
NO_SESSION_NEEDED = (
    "/cart/checkout/webhook/",
    "/cart/checkout/events/",
    "/healthz",
    "/readyz",
    "/metrics",
    "/static/",
)
# Routes the sibling apps call with a shopper's forwarded session cookie.
SERVED_TO_SERVICES = ("/internal/",)


def _register_blueprints(app: Quart, settings: Settings) -> None:
    from bp.cart.api import bp as cart_api_bp
    from bp.cart.global_routes import bp as cart_global_bp
    from bp.cart.overview_routes import bp as cart_overview_bp
    from bp.cart.page_routes import bp as cart_page_bp
    from bp.ops.commands import bp as ops_commands_bp
    from bp.ops.event_commands import bp as event_commands_bp
    from bp.ops.routes import bp as ops_bp
    from bp.order.internal_routes import bp as order_internal_bp
    from bp.order.routes import bp as order_bp
    from bp.orders.routes import bp as orders_bp

    # Global (static) cart routes first: a page cannot be called `add` or `checkout`.
    for blueprint in (
        ops_bp,
        ops_commands_bp,
        event_commands_bp,
        cart_api_bp,
        cart_global_bp,
        cart_overview_bp,
        cart_page_bp,
        orders_bp,
        order_bp,
        order_internal_bp,
    ):
        app.register_blueprint(blueprint)
    if settings.dev_routes_enabled:
        from bp.dev.routes import bp as dev_bp

        app.register_blueprint(dev_bp)


def create_app(settings: Settings | None = None, **config: Any) -> Quart:
    """Build the cart app; `settings` defaults to the file plus the environment."""
    settings = settings or load_settings()
    setup_logging(settings)
    app = Quart(__name__, template_folder="templates", static_folder="static")
    app.config.update(
        SETTINGS=settings,
        SECRET_KEY=settings.secret_key.reveal(),
        MAX_CONTENT_LENGTH=64 * 1024,
        PROVIDE_AUTOMATIC_OPTIONS=True,
        **config,
    )

    @app.before_serving
    async def _open_redis() -> None:
        redis = create_redis(settings.redis_url)
        app.extensions["redis"] = redis
        app.session_interface = RedisSessionInterface(  # type: ignore[assignment]
            redis,
            settings.session,
            settings.secret_key.reveal(),
            served_to_services=SERVED_TO_SERVICES,
        )

    @app.after_serving
    async def _close_redis() -> None:
        await app.extensions["redis"].aclose()

    init_rate_limits(app)
    init_request_logging(app)
    # after_request hooks run last-registered first: compression goes first, so it runs last.
    init_compression(app)
    init_db(app)
    # After the database hook, so an error page refused here still has its session.
    init_input_guard(app)
    app.before_request(require_session_store(NO_SESSION_NEEDED))
    init_security_headers(app)
    init_sumup(app)
    init_metrics(app)
    init_url_converters(app)
    init_templates(app)
    init_formatting(app)
    init_page_assets(app)
    init_page_messages(app)
    init_page_links(app)
    init_error_handlers(app)
    init_background_tasks(app)
    init_cart_context(app)
    _register_blueprints(app, settings)
    init_request_commit(app)  # last registered: its after-request hook runs first
    return app


def _create_app_or_exit() -> Quart:
    try:
        return create_app()
    except ConfigError as error:
        report_config_error(error)
        raise SystemExit(2) from None


app = _create_app_or_exit()
