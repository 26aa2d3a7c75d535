"""Token lifecycle without gRPC: expiry, use limits, revocation (and of the device credentials it issued), and the
Authenticator's bounded cache of unknown tokens."""

from __future__ import annotations

import pytest

from labd.auth import Authenticator, hash_token, new_token
from labd.handlers import tokens
from pilotlab import domain as d
from tests.labd.conftest import Parts


def auth_of(parts: Parts, **kw: object) -> Authenticator:
    return Authenticator(parts.store, clock=parts.clock, **kw)  # type: ignore[arg-type]


def enrol_with(parts: Parts, who: d.Principal, name: str) -> str:
    """What the Enrol RPC does around the enrol handler: count the use, enrol, link the credential."""
    tokens.take_enrolment(parts.store, who)
    dev = parts.enrol(name)
    credential = new_token(d.Role.DEVICE)
    parts.store.create_token(d.Role.DEVICE, hash_token(credential), device_id=dev.id)
    tokens.link_credential(parts.store, credential, who)
    return credential


def test_create_rejects_bad_limits(parts: Parts) -> None:
    with pytest.raises(d.Invalid, match="--expires-in"):
        tokens.create_token(parts.store, parts.clock, "engineer", expires_in_s=-1)
    with pytest.raises(d.Invalid, match="agent tokens only"):
        tokens.create_token(parts.store, parts.clock, "engineer", max_uses=3)


def test_expired_token_is_refused_with_its_date(parts: Parts) -> None:
    auth = auth_of(parts)
    minted = tokens.create_token(parts.store, parts.clock, "engineer", expires_in_s=60)
    assert auth.resolve(minted.token).token_id == minted.id
    parts.clock.advance(60_000)
    with pytest.raises(d.Unauthenticated, match=r"this token expired on 2023-11-14T22:14:20Z"):
        auth.resolve(minted.token)


def test_agent_token_enrols_at_most_max_uses_devices(parts: Parts) -> None:
    auth = auth_of(parts)
    minted = tokens.create_token(parts.store, parts.clock, "agent", max_uses=2)
    who = auth.resolve(minted.token)
    enrol_with(parts, who, "a1")
    enrol_with(parts, who, "a2")
    with pytest.raises(d.Unauthenticated, match="this token has been used 2 times, its limit"):
        tokens.take_enrolment(parts.store, who)
    assert [t.uses for t in parts.store.list_tokens() if t.id == minted.id] == [2]


def test_revocation_is_immediate_and_reaches_device_credentials(parts: Parts) -> None:
    auth = auth_of(parts)
    agent = tokens.create_token(parts.store, parts.clock, "agent")
    other = tokens.create_token(parts.store, parts.clock, "agent")
    credential = enrol_with(parts, auth.resolve(agent.token), "r1")
    spared = enrol_with(parts, auth.resolve(other.token), "r2")
    assert auth.resolve(credential).role == d.Role.DEVICE  # resolved once: nothing cached may hide what follows
    rec = tokens.revoke_token(parts.store, parts.clock, agent.id)
    assert rec.revoked_ms == parts.clock.now_ms()
    for revoked in (agent.token, credential):
        with pytest.raises(d.Unauthenticated, match=r"this token was revoked on 2023-11-14T22:13:20Z; ask an admin"):
            auth.resolve(revoked)
    assert auth.resolve(spared).role == d.Role.DEVICE


def test_list_is_newest_first_and_holds_no_secret(parts: Parts) -> None:
    first = tokens.create_token(parts.store, parts.clock, "certifier")
    parts.clock.advance(1_000)
    second = tokens.create_token(parts.store, parts.clock, "agent", expires_in_s=10, max_uses=1)
    found = tokens.list_tokens(parts.store)
    ids = [t.id for t in found]
    assert ids.index(second.id) < ids.index(first.id)
    assert all(second.token not in repr(t) and hash_token(second.token) not in repr(t) for t in found)


def test_unknown_tokens_cache_is_bounded(parts: Parts) -> None:
    auth = auth_of(parts, max_unknown=3)
    for i in range(10):
        with pytest.raises(d.Unauthenticated, match="does not know this token"):
            auth.resolve(f"plt_bad_{i}")
    assert len(auth._unknown) == 3
