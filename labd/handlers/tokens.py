"""Tokens: minting user tokens (engineer, certifier, agent, admin; only their hash is stored), listing and revoking
them (each recorded in the audit log by whoever did it), and counting an agent token's enrolments against its
limit."""

from __future__ import annotations

from typing import NamedTuple

from labd.auth import hash_token, new_token
from labd.clock import Clock
from labd.state import AuditEntry, Store, TokenRecord
from pilotlab import domain as d

MAX_EXPIRES_IN_S = 10 * 366 * 86_400  # ten years; a longer life is "never" (leave --expires-in out)


class Minted(NamedTuple):
    token: str  # shown once
    id: str
    role: d.Role


def create_token(store: Store, clock: Clock, role_name: str, expires_in_s: int = 0, max_uses: int = 0,
                 who: d.Principal | None = None) -> Minted:
    """A new token of a user role, expiring expires_in_s from now (0: never); an agent token may enrol at most
    max_uses devices (0: no limit). Recorded as token.create by who."""
    try:
        role = d.Role(role_name)
    except ValueError:
        role = None
    if role is None or role not in d.USER_ROLES:
        raise d.Invalid(f"unknown role {role_name!r}; use one of {', '.join(r.value for r in d.USER_ROLES)}")
    if expires_in_s < 0 or expires_in_s > MAX_EXPIRES_IN_S:
        raise d.Invalid(f"--expires-in must be a number of seconds from 1 to {MAX_EXPIRES_IN_S} (ten years), "
                        f"not {expires_in_s}; leave it out for a token that never expires")
    if max_uses < 0 or (max_uses and role != d.Role.AGENT):
        raise d.Invalid("--max-uses must be 1 or more and applies to agent tokens only (the devices it may enrol)")
    token, now = new_token(role), clock.now_ms()
    expires_ms = now + expires_in_s * 1000 if expires_in_s else 0
    detail = f"role {role.value}"
    if expires_in_s:
        detail += f", expires in {expires_in_s} s"
    if max_uses:
        detail += f", at most {max_uses} enrolment{'s' if max_uses != 1 else ''}"
    tid = store.create_token(role, hash_token(token), expires_ms=expires_ms, max_uses=max_uses,
                             audit=AuditEntry.by(who, "token.create", "", detail, now))  # the store names the target
    return Minted(token, tid, role)


def list_tokens(store: Store) -> list[TokenRecord]:
    return store.list_tokens()


def revoke_token(store: Store, clock: Clock, token_id: str, who: d.Principal | None = None) -> TokenRecord:
    """Refuse the token from now on (and the device credentials issued with it); recorded as token.revoke by who."""
    if not token_id:
        raise d.Invalid("name the token to revoke by its id; see `labctl token list`")
    now = clock.now_ms()
    audit = AuditEntry.by(who, "token.revoke", token_id, "refused from now on, with the credentials it issued", now)
    return store.revoke_token(token_id, now, audit=audit)


def take_enrolment(store: Store, who: d.Principal) -> None:
    """Count one enrolment against the caller's token; Unauthenticated once its max_uses are spent."""
    store.use_token(who.token_id)


def give_back_enrolment(store: Store, who: d.Principal) -> None:
    """An enrolment that failed (a taken name, a bad class) does not use up the token."""
    store.use_token(who.token_id, -1)

