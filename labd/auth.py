"""Bearer tokens: minted at random, stored hashed, resolved to a role (and a device for device credentials)."""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Iterable, Sequence

from labd.clock import SYSTEM_CLOCK, Clock
from labd.state import Store
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


class Authenticator:
    """Resolves a call's bearer token to a Principal and checks it against the roles a call allows."""

    def __init__(self, store: Store, cache_s: float = 30.0, clock: Clock = SYSTEM_CLOCK) -> None:
        self._store = store
        self._clock = clock
        self._cache: dict[str, tuple[float, d.Principal | None]] = {}
        self._lock = threading.Lock()
        self._ttl = cache_s

    def resolve(self, token: str | None) -> d.Principal:
        if not token:
            raise d.Unauthenticated("no token: pass --token or set LAB_TOKEN (an admin finds one in "
                                    "DATA_DIR/admin.token)")
        h = hash_token(token)
        now = self._clock.monotonic()
        with self._lock:
            hit = self._cache.get(h)
        if hit is not None and hit[0] > now:
            principal = hit[1]
        else:
            rec = self._store.find_token(h)
            principal = None if rec is None or rec.revoked else d.Principal(rec.role, rec.id, rec.device_id)
            with self._lock:
                self._cache[h] = (now + self._ttl, principal)
        if principal is None:
            raise d.Unauthenticated("the lab does not know this token; check --token/LAB_TOKEN or ask an admin "
                                    "for a new one")
        return principal

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
