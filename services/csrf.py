"""CSRF protection of every state-changing form, without a server-side session.

A signed double submit: a token is a timestamped signature (12 hours) over an HMAC
of the browser's anchor, a signed random cookie (see `services.sessions`;
`__Host-` prefixed behind HTTPS, so a sibling subdomain cannot plant its own).
Rendering a form therefore stores nothing in Redis; a form posted without the
browser's cookie or with another browser's token is refused; signing in (which
renews the session id) does not expire the forms already on screen.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from functools import lru_cache
from typing import Any, TypeVar

from itsdangerous import BadData, URLSafeTimedSerializer
from quart import current_app, g, request, session
from wtforms import Form
from wtforms.csrf.core import CSRF, CSRFTokenField
from wtforms.fields import Field
from wtforms.validators import ValidationError

from services.errors import ServiceError
from services.input_guard import refuse_hostile_form
from services.sessions import RedisSession, browser_anchor

F = TypeVar("F", bound=Form)
CSRF_TIME_LIMIT = timedelta(hours=12)
CSRF_SALT = "cart-csrf"


class CsrfError(ServiceError):
    """The form's CSRF token is missing, wrong or stale."""

    status_code = 400
    title = "This form has expired"


def _serializer(secret_key: str | None = None) -> URLSafeTimedSerializer:
    return _serializer_for(secret_key or current_app.config["SECRET_KEY"])


@lru_cache(maxsize=4)
def _serializer_for(secret_key: str) -> URLSafeTimedSerializer:
    # Built once per key: it holds no state between calls.
    return URLSafeTimedSerializer(secret_key, salt=CSRF_SALT)


def _binding(anchor: str, secret_key: str | None = None) -> str:
    key = (secret_key or current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, f"csrf:{anchor}".encode(), hashlib.sha256).hexdigest()[:32]


def token_for_anchor(secret_key: str, anchor: str) -> str:
    """A form token for a browser's anchor, outside a request (seeded benchmark data)."""
    return str(_serializer(secret_key).dumps(_binding(anchor, secret_key)))


def csrf_token() -> str:
    """The CSRF token for forms in a template, made once per request."""
    token: str | None = g.get("csrf_token")
    if token is None:
        token = str(_serializer().dumps(_binding(browser_anchor())))
        g.csrf_token = token
    return token


def csrf_token_is_valid(token: Any) -> bool:
    """Whether `token` was made for this browser's anchor within the time limit."""
    anchor = session.anchor if isinstance(session, RedisSession) else None
    if anchor is None or not isinstance(token, str) or not token or len(token) > 200:
        return False
    try:
        bound = _serializer().loads(token, max_age=int(CSRF_TIME_LIMIT.total_seconds()))
    except BadData:
        return False
    return isinstance(bound, str) and hmac.compare_digest(bound, _binding(anchor))


class TokenOnRenderField(CSRFTokenField):
    """The form's token field, whose fresh token is made only if the field is rendered:
    binding a posted form checks the token it carries and needs no new one."""

    current_token: str | None = None

    def process(self, *args: Any, **kwargs: Any) -> None:
        # A hidden field's processing: CSRFTokenField's own would make a token now.
        super(CSRFTokenField, self).process(*args, **kwargs)

    def _value(self) -> str:
        if self.current_token is None:
            self.current_token = self.csrf_impl.generate_csrf_token(self)
        return self.current_token


class SignedCSRF(CSRF):
    """WTForms CSRF backed by `csrf_token` / `csrf_token_is_valid`."""

    field_class = TokenOnRenderField

    def generate_csrf_token(self, csrf_token_field: Field) -> str:
        # A posted form is only checked here: minting an anchor on a POST would set a cookie.
        has_anchor = isinstance(session, RedisSession) and session.anchor is not None
        return csrf_token() if has_anchor else ""

    def validate_csrf_token(self, form: Form, field: Field) -> None:
        if not csrf_token_is_valid(field.data):
            raise ValidationError("The form's security token is missing or out of date.")


class CsrfForm(Form):
    """Base of every state-changing form: a CSRF token bound to the browser."""

    class Meta:
        csrf = True
        csrf_class = SignedCSRF


async def bind_form(form_class: type[F]) -> F:
    """The posted form, CSRF checked; raises `CsrfError` on a bad token."""
    posted = await request.form
    refuse_hostile_form(posted)
    form = form_class(posted)
    form.validate()
    if "csrf_token" in form.errors:
        raise CsrfError(
            "Please reload the page and try again: "
            "the form's security token was missing or out of date."
        )
    return form
