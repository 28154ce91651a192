"""Who owns a cart: the signed-in user, or an anonymous id kept in the session.

The blog app puts `uid` in the shared session at login. Shoppers who are not signed
in get an anonymous id (`cart_sid`) on their first cart write, not on every page
view; it is kept only when that write succeeds (the session store drops the changes
of a refused request). These functions read and write only the session mapping
they are given.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import ColumnElement, Text, and_, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.direct_reads import DirectQuery, begin_with, fetch_row

USER_KEY = "uid"
ANONYMOUS_KEY = "cart_sid"


@dataclass(frozen=True)
class Identity:
    """A cart owner: exactly one of `user_id` and `session_id` is set."""

    user_id: int | None = None
    session_id: str | None = None

    def __post_init__(self) -> None:
        if (self.user_id is None) == (self.session_id is None):
            raise ValueError("an identity is a user or an anonymous session, not both")

    @property
    def key(self) -> str:
        """A stable text key, e.g. for advisory locks."""
        return f"u:{self.user_id}" if self.user_id is not None else f"s:{self.session_id}"

    def owns(self, model: Any) -> ColumnElement[bool]:
        """SQL condition: the row of `model` belongs to this identity."""
        if self.user_id is not None:
            return and_(model.user_id == self.user_id)
        return and_(model.session_id == self.session_id, model.user_id.is_(None))

    def columns(self) -> dict[str, Any]:
        """Identity columns for an insert."""
        return {"user_id": self.user_id, "session_id": self.session_id}


def _user_id(session: Mapping[str, Any]) -> int | None:
    value = session.get(USER_KEY)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    # ASCII digits only: "²".isdigit() is true but int("²") fails.
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19:
        return int(value)
    return None


def identity_from_session(session: Mapping[str, Any]) -> Identity | None:
    """The identity this session already has, or None (no cart yet)."""
    user_id = _user_id(session)
    if user_id is not None:
        return Identity(user_id=user_id)
    anonymous = session.get(ANONYMOUS_KEY)
    if isinstance(anonymous, str) and anonymous:
        return Identity(session_id=anonymous)
    return None


def _anonymous_id(session: Mapping[str, Any]) -> str:
    # Derived from the session's id when it has one (for a browser whose session is
    # not stored yet, the id derived from its anchor cookie), so that first writes
    # racing in one browser (a double click on "add") share one cart, and a first
    # write retried after a failure finds the same one.
    sid = getattr(session, "sid", None)
    if not isinstance(sid, str) or not sid:
        return secrets.token_urlsafe(24)
    digest = hashlib.sha256(f"cart-anonymous:{sid}".encode()).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode("ascii")


def ensure_identity(session: MutableMapping[str, Any]) -> Identity:
    """The session's identity, creating the anonymous id on the first cart write."""
    identity = identity_from_session(session)
    if identity is None:
        session[ANONYMOUS_KEY] = _anonymous_id(session)
        identity = Identity(session_id=session[ANONYMOUS_KEY])
    return identity


def pending_merge(session: Mapping[str, Any]) -> tuple[int, str] | None:
    """(user id, anonymous id) when a shopper signed in while holding an anonymous cart."""
    user_id = _user_id(session)
    anonymous = session.get(ANONYMOUS_KEY)
    if user_id is not None and isinstance(anonymous, str) and anonymous:
        return user_id, anonymous
    return None


# Built once: the key is the only value that changes.
_OWNER_LOCK = select(
    func.pg_advisory_xact_lock(func.hashtextextended(bindparam("key", type_=Text), 0))
)
_OWNER_LOCK_DIRECT = DirectQuery(_OWNER_LOCK, parameters=("key",))
# The keys this app makes (`u:<id>`, `s:<urlsafe base64>`), safe to write as a literal.
_LITERAL_KEY = re.compile(r"[A-Za-z0-9_:-]{1,100}", flags=re.ASCII)


def _lock_key(identity: Identity) -> str:
    return f"cart:{identity.key}"


async def lock_identity(session: AsyncSession, identity: Identity) -> None:
    """Serialise cart writes of one owner until the session's transaction ends.

    Run through the session, so its adapter sends the transaction's `BEGIN` first and
    keeps track of it: after this, `services.direct_reads.session_connection` gives the
    connection inside that transaction. A request cancelled at any point (a client gone)
    then ends with the session's rollback, as every other statement of the session.
    """
    await session.execute(_OWNER_LOCK, {"key": _lock_key(identity)})


async def lock_owner(connection: asyncpg.Connection, identity: Identity) -> None:
    """`lock_identity` on an asyncpg connection: the lock of the same key, held until
    the connection's transaction ends.

    On the request's write connection (`services.db.db_write`), which has no transaction
    yet, the lock begins one: `BEGIN` and the lock in one round trip (the key written as
    a literal, so it is sent only when made of characters that need no quoting; any
    other is sent as a parameter, after its own `BEGIN`). Inside a transaction begun
    already (a second write of the request, or a session's: `session_connection`), only
    the lock is sent.
    """
    key = _lock_key(identity)
    if connection.is_in_transaction():
        await fetch_row(connection, _OWNER_LOCK_DIRECT, {"key": key})
    elif _LITERAL_KEY.fullmatch(key):
        await begin_with(connection, f"SELECT pg_advisory_xact_lock(hashtextextended('{key}', 0))")
    else:
        await begin_with(connection)
        await fetch_row(connection, _OWNER_LOCK_DIRECT, {"key": key})
