"""CSRF protection of every state-changing form."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

from quart import current_app, g, request, session
from wtforms import Form
from wtforms.csrf.session import SessionCSRF

from services.errors import ServiceError

F = TypeVar("F", bound=Form)
CSRF_TIME_LIMIT = timedelta(hours=12)


class CsrfError(ServiceError):
    """The form's CSRF token is missing, wrong or stale."""

    status_code = 400
    title = "This form has expired"


class CsrfForm(Form):
    """Base of every state-changing form: a session-bound CSRF token."""

    class Meta:
        csrf = True
        csrf_class = SessionCSRF
        csrf_time_limit = CSRF_TIME_LIMIT


def _form_meta() -> dict[str, Any]:
    return {"csrf_secret": current_app.config["SECRET_KEY"].encode(), "csrf_context": session}


async def bind_form(form_class: type[F]) -> F:
    """The posted form, CSRF checked; raises `CsrfError` on a bad token."""
    form = form_class(await request.form, meta=_form_meta())
    form.validate()
    if "csrf_token" in form.errors:
        raise CsrfError(
            "Please reload the page and try again: "
            "the form's security token was missing or out of date."
        )
    return form


def csrf_token() -> str:
    """The CSRF token for hand-written forms in a template, made once per request."""
    token: str | None = g.get("csrf_token")
    if token is None:
        token = CsrfForm(meta=_form_meta()).csrf_token.current_token
        g.csrf_token = token
    return token
