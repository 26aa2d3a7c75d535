"""Web console sign-in state: server-side sessions behind a random cookie id, one CSRF token per session, and the
same-origin check every POST passes.

A session keeps the token it was opened with in labd's memory only (never in the cookie, never on disk), so every
request is checked by the same Authenticator and role lists as a gRPC call: a revoked or expired token ends its
sessions at their next request."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web

from pilotlab import domain as d

IDLE_S = 8 * 3600  # a session unused this long is forgotten
MAX_AGE_S = 24 * 3600  # and none lives longer, used or not
MAX_SESSIONS = 10_000  # the oldest are dropped past this: a flood of sign-ins cannot grow memory without bound
LOGIN_COOKIE_MAX_AGE_S = 3600


def session_cookie(secure: bool) -> str:
    """The session cookie's name; over HTTPS the __Host- prefix makes the browser insist on Secure, Path=/ and no
    Domain, so no other host (a sibling subdomain) can plant or read it."""
    return "__Host-pilotlab_session" if secure else "pilotlab_session"


def login_cookie(secure: bool) -> str:
    """The sign-in form's CSRF cookie (double submit: the form's hidden field must equal it)."""
    return "__Host-pilotlab_login" if secure else "pilotlab_login"


def set_cookie(response: web.StreamResponse, name: str, value: str, secure: bool, max_age: int | None = None) -> None:
    """HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it), Secure over HTTPS."""
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="Strict", secure=secure)


def del_cookie(response: web.StreamResponse, name: str, secure: bool) -> None:
    response.del_cookie(name, path="/", httponly=True, samesite="Strict", secure=secure)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def same_secret(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


@dataclass
class WebSession:
    id: str
    token: str
    role: d.Role
    token_id: str
    csrf: str
    created: float
    seen: float
    flashes: list[tuple[str, str]] = field(default_factory=list)  # (kind: ok | error, message), shown once
    last_form: dict[str, str] = field(default_factory=dict)  # a refused form's fields, to fill it in again once

    def flash(self, kind: str, message: str) -> None:
        self.flashes = [*self.flashes[-4:], (kind, message)]

    def take_form(self) -> dict[str, str]:
        out, self.last_form = self.last_form, {}
        return out

    def take_flashes(self) -> list[tuple[str, str]]:
        out, self.flashes = self.flashes, []
        return out


class Sessions:
    """Signed-in browsers by session id. Thread-safe; ids are 256-bit random and compared as dict keys."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, idle_s: float = IDLE_S,
                 max_age_s: float = MAX_AGE_S, max_sessions: int = MAX_SESSIONS) -> None:
        self._by_id: OrderedDict[str, WebSession] = OrderedDict()
        self._lock = threading.Lock()
        self._clock = clock
        self._idle_s, self._max_age_s, self._max = idle_s, max_age_s, max_sessions

    def open(self, token: str, who: d.Principal) -> WebSession:
        now = self._clock()
        sess = WebSession(id=new_secret(), token=token, role=who.role, token_id=who.token_id, csrf=new_secret(),
                          created=now, seen=now)
        with self._lock:
            self._by_id[sess.id] = sess
            while len(self._by_id) > self._max:
                self._by_id.popitem(last=False)
        return sess

    def get(self, sid: str | None) -> WebSession | None:
        """The live session with this id, or None (unknown, idle too long or too old: then forgotten)."""
        if not sid:
            return None
        now = self._clock()
        with self._lock:
            sess = self._by_id.get(sid)
            if sess is None:
                return None
            if now - sess.seen > self._idle_s or now - sess.created > self._max_age_s:
                del self._by_id[sid]
                return None
            sess.seen = now
            return sess

    def close(self, sid: str) -> None:
        with self._lock:
            self._by_id.pop(sid, None)

    def close_token(self, token_id: str) -> int:
        """Forget every session of a token (it was found revoked or expired); returns how many."""
        with self._lock:
            gone = [sid for sid, s in self._by_id.items() if s.token_id == token_id]
            for sid in gone:
                del self._by_id[sid]
        return len(gone)

    def __len__(self) -> int:
        return len(self._by_id)


def origin_of(url: str) -> str:
    u = urlsplit(url)
    return f"{u.scheme}://{u.netloc}".lower()


def same_origin(headers: Mapping[str, str], scheme: str, host: str) -> bool:
    """False when the request says it comes from another origin: its Origin header, or else its Referer, names a
    scheme and host other than this console's. A request that sends neither passes (SameSite=Strict and the CSRF
    token still hold)."""
    expected = f"{scheme}://{host}".lower()
    origin = headers.get("Origin")
    if origin is not None:
        return origin.lower() == expected
    referer = headers.get("Referer")
    if referer:
        return origin_of(referer) == expected
    return True


def safe_next(target: str | None, default: str = "/devices") -> str:
    """Where to go after sign-in: a path on this console only (never //host or a full URL)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target
