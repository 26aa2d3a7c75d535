"""Bearer tokens: minted at random, stored hashed, resolved to a role (and a device for device credentials)."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from labd.clock import SYSTEM_CLOCK, Clock
from labd.state import Store, TokenRecord
from pilotlab import domain as d

TOKEN_PREFIX = "plt"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(role: d.Role) -> str:
    return f"{TOKEN_PREFIX}_{role.value}_{secrets.token_urlsafe(32)}"


def bearer(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            v = value.decode() if isinstance(value, bytes) else value
            return v[7:].strip() if v.lower().startswith("bearer ") else v.strip()
    return None


def iso_utc(ms: int) -> str:
    """A stored Unix-ms time as ISO 8601 UTC to the second, as messages show it."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_live(rec: TokenRecord, now_ms: int) -> None:
    """Unauthenticated when the token was revoked (or, for a device credential, its agent token was) or expired."""
    if rec.revoked_ms or rec.revoked:
        when = f" on {iso_utc(rec.revoked_ms)}" if rec.revoked_ms else ""
        raise d.Unauthenticated(f"this token was revoked{when}; ask an admin for a new one")
    if rec.expires_ms and rec.expires_ms <= now_ms:
        raise d.Unauthenticated(f"this token expired on {iso_utc(rec.expires_ms)}; ask an admin for a new one")


class Authenticator:
    """Resolves a call's bearer token to a Principal and checks it against the roles a call allows.

    Known tokens are read from the store on every call (one indexed lookup), so a revocation or an expiry takes
    effect at once, on every labd replica. Only unknown tokens are cached, for negative_s, in an LRU of at most
    max_unknown entries: a random token never becomes known later, and the bound keeps a flood of bad tokens
    from growing memory."""

    def __init__(self, store: Store, negative_s: float = 30.0, clock: Clock = SYSTEM_CLOCK,
                 max_unknown: int = 10_000) -> None:
        self._store = store
        self._clock = clock
        self._unknown: OrderedDict[str, float] = OrderedDict()  # token hash -> monotonic time it expires
        self._lock = threading.Lock()
        self._ttl = negative_s
        self._max_unknown = max_unknown
        self._batch = threading.local()  # this thread's tokens read together (batch), by hash

    def _known_unknown(self, h: str, now: float) -> bool:
        with self._lock:
            until = self._unknown.get(h)
            if until is None:
                return False
            if until <= now:
                del self._unknown[h]
                return False
            self._unknown.move_to_end(h)
            return True

    def _remember_unknown(self, h: str, now: float) -> None:
        with self._lock:
            self._unknown[h] = now + self._ttl
            self._unknown.move_to_end(h)
            while len(self._unknown) > self._max_unknown:
                self._unknown.popitem(last=False)

    def record(self, token: str | None) -> TokenRecord:
        """The token's live record; Unauthenticated when missing, unknown, revoked or expired."""
        if not token:
            raise d.Unauthenticated("no token: pass --token or set LAB_TOKEN (an admin finds one in "
                                    "DATA_DIR/admin.token)")
        h = hash_token(token)
        now = self._clock.monotonic()
        read: dict[str, TokenRecord] | None = getattr(self._batch, "read", None)
        if read is not None and h in read:
            rec: TokenRecord | None = read[h]
        else:
            rec = None if self._known_unknown(h, now) else self._store.find_token(h)
        if rec is None:
            self._remember_unknown(h, now)
            raise d.Unauthenticated("the lab does not know this token; check --token/LAB_TOKEN or ask an admin "
                                    "for a new one")
        check_live(rec, self._clock.now_ms())
        return rec

    @contextmanager
    def batch(self, tokens: Sequence[str | None]) -> Iterator[None]:
        """Within the block, record() in this thread takes these tokens' records from one read of the store (the
        heartbeats of all sessions in one batch), each still checked as record() checks it."""
        now = self._clock.monotonic()
        hashes = sorted(h for h in {hash_token(t) for t in tokens if t} if not self._known_unknown(h, now))
        found = self._store.find_tokens(hashes) if hashes else {}
        self._batch.read = {h: found.get(h) for h in hashes}
        try:
            yield
        finally:
            self._batch.read = None

    def resolve(self, token: str | None) -> d.Principal:
        rec = self.record(token)
        return d.Principal(rec.role, rec.id, rec.device_id)
    def require(self, token: str | None, allowed: Sequence[d.Role], action: str) -> d.Principal:
        """The caller, when its role is allowed; admin may do anything but act as a device."""
        p = self.resolve(token)
        admin_ok = list(allowed) != [d.Role.DEVICE]
        if p.role not in allowed and not (admin_ok and p.role == d.Role.ADMIN):
            names = ", ".join(r.value for r in allowed if r != d.Role.ADMIN)
            article = "an" if p.role.value[0] in "aeiou" else "a"
            raise d.Denied(f"{article} {p.role.value} token may not {action}; it needs a token of role "
                           f"{names or 'admin'}")
        return p
