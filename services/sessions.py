"""Server-side sessions in Redis, shared with the sibling apps.

The cookie holds only a random id signed with the secret key; the session itself is
JSON under `<prefix><id>` in Redis with a TTL. A session is written only when it
changed and is not empty, so browsing without a cart creates nothing.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping
from typing import Any

from itsdangerous import BadSignature, Signer
from quart import Quart
from quart.sessions import SecureCookieSession, SessionInterface, SessionMixin
from quart.wrappers import BaseRequestWebsocket, Response
from redis.asyncio import Redis
from redis.exceptions import RedisError
from werkzeug.wrappers import Response as WerkzeugResponse

from config.settings import SessionSettings

log = logging.getLogger(__name__)


class RedisSession(SecureCookieSession):
    """A session dict that knows its id and whether it must get a new one."""

    def __init__(self, initial: Mapping[str, Any] | None = None, *, sid: str | None) -> None:
        super().__init__(initial)
        self.sid = sid
        self.new = sid is None
        self.rotate = False

    def regenerate(self) -> None:
        """Give the session a new id on the next save (on login, against fixation)."""
        self.rotate = True
        self.modified = True


class RedisSessionInterface(SessionInterface):
    """Sessions stored in Redis under a namespaced key, with a signed id cookie."""

    salt = "coop-session"

    def __init__(self, redis: Redis, settings: SessionSettings, secret_key: str) -> None:
        self.redis = redis
        self.settings = settings
        self.signer = Signer(secret_key, salt=self.salt)

    def key(self, sid: str) -> str:
        """The Redis key of a session id."""
        return f"{self.settings.redis_prefix}{sid}"

    def sid_from_cookie(self, cookie: str | None) -> str | None:
        """The session id a signed cookie carries, or None when absent or forged."""
        if not cookie:
            return None
        try:
            return self.signer.unsign(cookie).decode("ascii")
        except (BadSignature, UnicodeDecodeError):
            return None

    async def load(self, sid: str) -> dict[str, Any] | None:
        """The stored session for an id, or None."""
        raw = await self.redis.get(self.key(sid))
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            log.warning("session %s… holds unreadable data; starting afresh", sid[:6])
            return None
        return data if isinstance(data, dict) else None

    async def open_session(self, app: Quart, request: BaseRequestWebsocket) -> RedisSession:
        sid = self.sid_from_cookie(request.cookies.get(self.settings.cookie_name))
        if sid is None:
            return RedisSession(sid=None)
        try:
            data = await self.load(sid)
        except RedisError:
            log.exception("session store unavailable")
            raise
        if data is None:
            return RedisSession(sid=None)
        return RedisSession(data, sid=sid)

    async def save_session(
        self,
        app: Quart,
        session: SessionMixin,
        response: Response | WerkzeugResponse | None,
    ) -> None:
        assert isinstance(session, RedisSession)
        if response is None or not session.modified:
            return
        cookie = dict(
            domain=self.settings.cookie_domain,
            path="/",
            secure=self.settings.cookie_secure,
            samesite=self.settings.cookie_samesite,
            httponly=True,
        )
        if session.sid and (session.rotate or not session):
            await self.redis.delete(self.key(session.sid))
        if not session:
            if session.sid:
                response.delete_cookie(self.settings.cookie_name, **cookie)  # type: ignore[arg-type]
            return
        if session.sid is None or session.rotate:
            session.sid = secrets.token_urlsafe(32)
        await self.redis.set(
            self.key(session.sid),
            json.dumps(dict(session), separators=(",", ":")),
            ex=self.settings.ttl_seconds,
        )
        response.set_cookie(
            self.settings.cookie_name,
            self.signer.sign(session.sid).decode("ascii"),
            max_age=self.settings.ttl_seconds,
            **cookie,  # type: ignore[arg-type]
        )
