"""Server-side sessions in Redis, shared with the sibling apps.

The cookie holds only a random id signed with the secret key; the session itself is
JSON under `<prefix><id>` in Redis with a TTL (the format the sibling apps read).

A request writes back only the keys it changed, merged under WATCH/MULTI with what
Redis holds at that moment, so a cart request that overlaps the blog app's login
never undoes it. A refused request (an answer of 400 or more) writes nothing, and a
session is stored only when something is written to it: browsing, a bad form and a
flood of refused POSTs leave no key in Redis. Its TTL slides: a session in use is
kept alive (refreshed at most once per `refresh_seconds`). Reading a session is one
GET: its TTL is read with it only when this worker does not already know that no
refresh can be due (`RefreshSchedule`), and never for the sibling apps' internal
calls. A GET alone cost 65 µs of CPU against 115 µs for the GET and TTL pipeline.

Every browser that was shown a form has an *anchor*: a signed random cookie (no
Redis; `__Host-` prefixed behind HTTPS, so no other subdomain can set it) that the
CSRF tokens are bound to. A browser without a stored session also gets its future
session id from it, so a burst of first writes of one browser (a double click on
"add") lands in one session and one cart, and a first write retried after a failure
finds the same anonymous cart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from itsdangerous import BadSignature, Signer
from quart import Quart, current_app, request, session
from quart.sessions import SecureCookieSession, SessionInterface, SessionMixin
from quart.wrappers import BaseRequestWebsocket, Response
from redis.asyncio import Redis
from redis.exceptions import RedisError, WatchError
from werkzeug.wrappers import Response as WerkzeugResponse

from config.settings import SessionSettings
from services.errors import ServiceError

log = logging.getLogger(__name__)

ANCHOR_COOKIE = "cart_anchor"
MAX_WRITE_ATTEMPTS = 20
_MISSING = object()


class RefreshSchedule:
    """When each session this worker has seen may next need its TTL refreshed.

    A session's TTL only moves forward (every write and every refresh sets it whole),
    so once its expiry has been read, the moment a refresh becomes due is known and
    the TTL need not be read again before then. Only times are kept, never a session's
    contents: the session itself is read from Redis on every request. Forgetting an
    entry costs one TTL read, so the table is simply emptied when it is full.
    """

    def __init__(self, limit: int = 20_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        self._not_before: dict[str, float] = {}

    def due(self, sid: str) -> bool:
        """Whether the TTL must be read: not known, or a refresh may be due by now."""
        return self._not_before.get(sid, 0.0) <= self.clock()

    def not_due_for(self, sid: str, seconds: float) -> None:
        """No refresh of `sid` can be due for `seconds` from now."""
        if seconds <= 0:
            self._not_before.pop(sid, None)
            return
        if len(self._not_before) >= self.limit:
            self._not_before.clear()
        self._not_before[sid] = self.clock() + seconds

    def forget(self, sid: str) -> None:
        self._not_before.pop(sid, None)


class SessionStoreUnavailable(ServiceError):
    """Redis, which holds the sessions, does not answer."""

    status_code = 503
    title = "The shop is not answering just now"
    retry_after = 30

    def __init__(self) -> None:
        super().__init__(
            "Part of the shop is not answering just now. Nothing was changed: "
            "please try again in a minute."
        )


class RedisSession(SecureCookieSession):
    """A session dict that records which keys this request changed.

    `sid` is the stored session's id, or the id a new session will get (derived from
    the browser's anchor), or None for a browser with neither. Only `__setitem__`,
    `__delitem__`, `pop`, `popitem`, `setdefault`, `update` and `clear` are tracked:
    change a nested value by assigning the key again.
    """

    def __init__(
        self,
        initial: Mapping[str, Any] | None = None,
        *,
        sid: str | None,
        stored: bool = False,
        unavailable: bool = False,
        anchor: str | None = None,
        read_anchor: Callable[[], str | None] | None = None,
    ) -> None:
        super().__init__(initial)
        self.sid = sid
        self._anchor = anchor
        # A stored session needs its anchor only for forms: unsigned when first asked for.
        self._read_anchor = read_anchor
        self.stored = stored
        self.new = not stored
        self.unavailable = unavailable
        self.rotate = False
        self.cleared = False
        self.refresh = False
        self.changed: dict[str, Any] = {}
        self.removed: set[str] = set()
        self.new_anchor: str | None = None

    @property
    def anchor(self) -> str | None:
        """The browser's anchor (from its signed cookie), None when it has none."""
        if self._read_anchor is not None:
            self._anchor, self._read_anchor = self._read_anchor(), None
        return self._anchor

    @anchor.setter
    def anchor(self, value: str | None) -> None:
        self._anchor, self._read_anchor = value, None

    # --- change tracking ---------------------------------------------------------

    def _set(self, key: str, value: Any) -> None:
        self.changed[key] = value
        self.removed.discard(key)

    def _remove(self, key: str) -> None:
        self.changed.pop(key, None)
        self.removed.add(key)

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._set(key, value)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._remove(key)

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        if key in self:
            self._remove(key)
        if default is _MISSING:
            return super().pop(key)
        return super().pop(key, default)

    def popitem(self) -> tuple[str, Any]:
        key, value = super().popitem()
        self._remove(key)
        return key, value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def clear(self) -> None:
        super().clear()
        self.cleared = True
        self.changed.clear()
        self.removed.clear()

    # --- lifecycle ---------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        """This request changed the session's contents or its id."""
        return bool(self.changed or self.removed or self.cleared or self.rotate)

    def regenerate(self) -> None:
        """Give the session a new random id on save (on login, against fixation)."""
        self.rotate = True
        self.modified = True

    def merged_into(self, current: Mapping[str, Any]) -> dict[str, Any]:
        """What the session holds after this request's changes meet `current`."""
        merged = {} if self.cleared else dict(current)
        for key in self.removed:
            merged.pop(key, None)
        merged.update(self.changed)
        return merged


def browser_anchor() -> str:
    """The current browser's anchor, minting one (a cookie, nothing in Redis) if it has none."""
    if not isinstance(session, RedisSession):
        raise RuntimeError("the Redis session interface is not installed")
    if session.anchor is None:
        anchor = secrets.token_urlsafe(32)
        session.anchor = session.new_anchor = anchor
        if session.sid is None:
            session.sid = current_session_interface().provisional_sid(anchor)
    return session.anchor


def current_session_interface() -> RedisSessionInterface:
    """The app's Redis session interface."""
    interface = current_app.session_interface
    if not isinstance(interface, RedisSessionInterface):
        raise RuntimeError("the Redis session interface is not installed")
    return interface


class RedisSessionInterface(SessionInterface):
    """Sessions stored in Redis under a namespaced key, with a signed id cookie."""

    salt = "coop-session"
    anchor_salt = "cart-anchor"

    def __init__(
        self,
        redis: Redis,
        settings: SessionSettings,
        secret_key: str,
        *,
        served_to_services: tuple[str, ...] = (),
    ) -> None:
        self.redis = redis
        # Paths that other services call with a shopper's forwarded cookie: reading the
        # session there never slides its TTL (see `open_session`).
        self.served_to_services = served_to_services
        self.settings = settings
        self.signer = Signer(secret_key, salt=self.salt)
        self.anchor_signer = Signer(secret_key, salt=self.anchor_salt)
        self._derive_key = hashlib.sha256(f"cart-session-id:{secret_key}".encode()).digest()
        self.schedule = RefreshSchedule()

    @property
    def refresh_seconds(self) -> int:
        """How stale a session's TTL may get before a request refreshes it."""
        return min(3600, max(1, self.settings.ttl_seconds // 20))

    @property
    def anchor_cookie(self) -> str:
        """The anchor cookie's name: `__Host-` behind HTTPS, so subdomains cannot plant one."""
        return f"__Host-{ANCHOR_COOKIE}" if self.settings.cookie_secure else ANCHOR_COOKIE

    def key(self, sid: str) -> str:
        """The Redis key of a session id."""
        return f"{self.settings.redis_prefix}{sid}"

    def sid_from_cookie(self, cookie: str | None) -> str | None:
        """The session id a signed cookie carries, or None when absent or forged."""
        return self._unsign(self.signer, cookie)

    def anchor_from_cookie(self, cookie: str | None) -> str | None:
        """The browser's anchor from its signed cookie, or None when absent or forged."""
        return self._unsign(self.anchor_signer, cookie)

    @staticmethod
    def _unsign(signer: Signer, cookie: str | None) -> str | None:
        if not cookie or len(cookie) > 256:
            return None
        try:
            return signer.unsign(cookie).decode("ascii")
        except (BadSignature, UnicodeDecodeError, UnicodeEncodeError):
            return None

    def provisional_sid(self, anchor: str) -> str:
        """The id a browser's first stored session gets: keyed by our secret, so unguessable."""
        digest = hmac.new(self._derive_key, anchor.encode(), hashlib.sha256).digest()
        return digest.hex()[:43]

    async def load(self, sid: str, *, slide: bool = True) -> tuple[dict[str, Any] | None, bool]:
        """The stored session for an id (or None), and whether its TTL is due a refresh
        (never when not `slide`)."""
        key = self.key(sid)
        if not (slide and self.schedule.due(sid)):
            data = _decode(cast(bytes | None, await self.redis.get(key)), sid)
            if data is None:
                self.schedule.forget(sid)
            return data, False
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.ttl(key)
            raw, ttl = await pipe.execute()
        data = _decode(raw, sid)
        if data is None:
            return None, False
        if ttl < 0:  # kept without an expiry (by whoever wrote it): nothing to refresh
            self.schedule.not_due_for(sid, self.refresh_seconds)
            return data, False
        # A refresh is due once fewer than `ttl_seconds - refresh_seconds` are left.
        seconds_to_due = int(ttl) - (self.settings.ttl_seconds - self.refresh_seconds)
        self.schedule.not_due_for(sid, seconds_to_due)
        return data, seconds_to_due <= 0

    async def open_session(self, app: Quart, request: BaseRequestWebsocket) -> RedisSession:
        cookies = request.cookies
        anchor_cookie = cookies.get(self.anchor_cookie)
        sid = self.sid_from_cookie(cookies.get(self.settings.cookie_name))
        if sid is not None:
            # A sibling app asking on a shopper's behalf: the Set-Cookie of a refresh would
            # go to the sibling, not to the browser, and the apps the browser talks to
            # keep its session alive themselves. One GET, nothing written.
            slide = not request.path.startswith(self.served_to_services)
            try:
                data, refresh = await self.load(sid, slide=slide)
            except RedisError as error:
                # Never raise here: Quart would answer a bare 500 before any handler ran.
                log.warning("session store unavailable: %s", error.__class__.__name__)
                anchor = self.anchor_from_cookie(anchor_cookie)
                return RedisSession(sid=None, unavailable=True, anchor=anchor)
            if data is not None:
                stored = RedisSession(
                    data,
                    sid=sid,
                    stored=True,
                    read_anchor=lambda: self.anchor_from_cookie(anchor_cookie),
                )
                stored.refresh = refresh
                return stored
        anchor = self.anchor_from_cookie(anchor_cookie)
        provisional = self.provisional_sid(anchor) if anchor else None
        return RedisSession(sid=provisional, anchor=anchor)

    def _cookie_options(self) -> dict[str, Any]:
        return dict(
            path="/",
            secure=self.settings.cookie_secure,
            samesite=self.settings.cookie_samesite,
            httponly=True,
        )

    async def save_session(
        self,
        app: Quart,
        session: SessionMixin,
        response: Response | WerkzeugResponse | None,
    ) -> None:
        assert isinstance(session, RedisSession)
        if response is None or session.unavailable:
            return
        if session.new_anchor is not None:
            response.set_cookie(
                self.anchor_cookie,
                self.anchor_signer.sign(session.new_anchor).decode("ascii"),
                max_age=self.settings.ttl_seconds,
                **self._cookie_options(),
            )
        try:
            if session.dirty and response.status_code < 400:
                await self._save_changes(session, response)
            elif session.refresh and session.sid is not None:
                await self.redis.expire(self.key(session.sid), self.settings.ttl_seconds)
                self.schedule.not_due_for(session.sid, self.refresh_seconds)
                self._set_session_cookie(response, session.sid)
        except RedisError:
            # The answer is already decided (and committed); the anchor lets a retried
            # first write find the same anonymous cart.
            log.exception("session %s… could not be saved", (session.sid or "new")[:6])

    async def _save_changes(
        self, session: RedisSession, response: Response | WerkzeugResponse
    ) -> None:
        sid = await self.write_changes(session)
        if sid is not None:
            self._set_session_cookie(response, sid)
        elif session.stored:
            response.delete_cookie(
                self.settings.cookie_name,
                domain=self.settings.cookie_domain,
                **self._cookie_options(),
            )

    def _set_session_cookie(self, response: Response | WerkzeugResponse, sid: str) -> None:
        response.set_cookie(
            self.settings.cookie_name,
            self.signer.sign(sid).decode("ascii"),
            max_age=self.settings.ttl_seconds,
            domain=self.settings.cookie_domain,
            **self._cookie_options(),
        )

    async def write_changes(self, session: RedisSession) -> str | None:
        """Merge the session's changes into Redis atomically; the id it now lives under.

        None when the session ended up empty (and was deleted).
        """
        old_sid = session.sid
        new_sid = old_sid
        if new_sid is None or session.rotate:
            new_sid = secrets.token_urlsafe(32)
        sids = _unique((old_sid, new_sid))
        keys = [self.key(sid) for sid in sids]
        async with self.redis.pipeline(transaction=True) as pipe:
            for _ in range(MAX_WRITE_ATTEMPTS):
                try:
                    await pipe.watch(*keys)
                    raw = await pipe.get(keys[0]) if old_sid else None
                    current = _decode(cast(bytes | None, raw), old_sid)
                    merged = session.merged_into(current or {})
                    pipe.multi()
                    if old_sid is not None and (old_sid != new_sid or not merged):
                        pipe.delete(self.key(old_sid))
                    if merged:
                        pipe.set(
                            self.key(new_sid),
                            json.dumps(merged, separators=(",", ":")),
                            ex=self.settings.ttl_seconds,
                        )
                    await pipe.execute()
                except WatchError:
                    continue
                for sid in sids:
                    self.schedule.forget(sid)
                if merged:
                    self.schedule.not_due_for(new_sid, self.refresh_seconds)
                session.sid = new_sid if merged else None
                return session.sid
        raise RedisError(f"session kept changing under {MAX_WRITE_ATTEMPTS} writes")


def _unique(sids: Iterable[str | None]) -> list[str]:
    seen: list[str] = []
    for sid in sids:
        if sid is not None and sid not in seen:
            seen.append(sid)
    return seen


def _decode(raw: bytes | None, sid: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        log.warning("session %s… holds unreadable data; starting afresh", (sid or "")[:6])
        return None
    return data if isinstance(data, dict) else None


def session_unavailable() -> bool:
    """Whether this request's session could not be read because Redis is down."""
    return isinstance(session, RedisSession) and session.unavailable


def require_session_store(exempt_prefixes: tuple[str, ...]) -> Any:
    """A before-request hook: 503 when the session could not be read, except on `exempt`."""

    async def _require() -> None:
        if session_unavailable() and not request.path.startswith(exempt_prefixes):
            raise SessionStoreUnavailable()

    return _require
