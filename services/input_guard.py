"""Hostile input stops at the web layer, with a clear answer, before any query runs.

PostgreSQL refuses NUL in text and the drivers fail on it with a 500; bytes that are
not UTF-8 arrive as U+FFFD; `"²".isdigit()` is true but `int("²")` fails and
`int("١٢")` is 12. So paths, query strings, forms and JSON bodies are checked here:
a path that cannot name anything is a 404, a bad query or form a 422, a JSON body
that is not UTF-8, not JSON or nested past reason a 400.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_to_bytes

from quart import Quart, request
from werkzeug.datastructures import MultiDict

from services.errors import NotFoundError, ServiceError

# C0 controls but tab, LF and CR (which `next` handling drops itself), DEL, and U+FFFD
# (what undecodable bytes become).
UNREADABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")
PATH_UNREADABLE = re.compile(r"[\x00-\x1f\x7f\ufffd]")
ASCII_NATURAL = re.compile(r"[0-9]{1,18}")
# Generous: each route bounds its own parameters (and says so in its own words).
MAX_QUERY_VALUE = 8192
MAX_FORM_VALUE = 2048
MAX_FORM_FIELDS = 32
MAX_JSON_DEPTH = 32


class BadInput(ServiceError):
    """A request this service cannot read: refused before it reaches the database."""

    status_code = 400
    title = "Bad request"


class UnreadableQuery(ServiceError):
    """A query string with characters or lengths no parameter of ours accepts."""

    status_code = 422
    title = "The address could not be read"


class UnreadableForm(ServiceError):
    """A form with characters or lengths no field of ours accepts."""

    status_code = 422
    title = "The form could not be read"


def _is_utf8(raw: bytes) -> bool:
    # Werkzeug keeps undecodable query bytes as literal "%FF" text rather than U+FFFD.
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _unreadable(values: Iterable[str], *, limit: int) -> bool:
    return any(len(value) > limit or UNREADABLE.search(value) for value in values)


async def refuse_hostile_request() -> None:
    """Before every request: a path that cannot name anything, or an unreadable query."""
    if PATH_UNREADABLE.search(request.path):
        raise NotFoundError("There is nothing here.")
    if not request.query_string:
        return
    args = request.args
    if (
        not _is_utf8(unquote_to_bytes(request.query_string))
        or _unreadable(args.keys(), limit=64)
        or _unreadable(args.values(), limit=MAX_QUERY_VALUE)
    ):
        raise UnreadableQuery("The address holds characters or a length this shop cannot read.")


def refuse_hostile_form(form: MultiDict[str, str]) -> None:
    """Refuse a posted form whose names or values no field of ours could hold."""
    if len(form) > MAX_FORM_FIELDS or _unreadable(form.keys(), limit=64):
        raise UnreadableForm("The form does not match any form of this shop.")
    if _unreadable(form.values(), limit=MAX_FORM_VALUE):
        raise UnreadableForm(
            "The form holds characters or a length this shop cannot accept. "
            "Please go back, check what you typed and try again."
        )


def query_natural(name: str, *, default: int) -> int:
    """A whole number from the query in ASCII digits only; absent means `default`."""
    value = request.args.get(name)
    if value is None or value == "":
        return default
    if not ASCII_NATURAL.fullmatch(value):
        raise UnreadableQuery(f"'{name}' must be a whole number written in digits 0 to 9.")
    return int(value)


def json_depth_exceeds(text: str, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than `limit` (checked before parsing)."""
    depth = 0
    in_string = False
    escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


async def json_body(*, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The request's JSON body (any content type); `BadInput` when it cannot be read."""
    raw = await request.get_data(as_text=False)
    if not isinstance(raw, bytes):
        raw = raw.encode()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput("The body is not UTF-8 text.") from None
    if json_depth_exceeds(text, max_depth):
        raise BadInput(f"The JSON body is nested deeper than {max_depth} levels.")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise BadInput("The body is not JSON.") from None


def init_input_guard(app: Quart) -> None:
    """Check every request's path and query before anything else reads them."""
    app.before_request(refuse_hostile_request)
