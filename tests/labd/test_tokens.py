"""Token lifecycle without gRPC: expiry, use limits, revocation (and of the device credentials it issued), and the
Authenticator's bounded cache of unknown tokens."""

from __future__ import annotations

import pytest

from labd.auth import Authenticator, hash_token
from labd.handlers import agents, tokens
from pilotlab import domain as d
from tests.labd.conftest import Parts


def auth_of(parts: Parts, **kw: object) -> Authenticator:
    return Authenticator(parts.store, clock=parts.clock, **kw)  # type: ignore[arg-type]


def enrol_with(parts: Parts, who: d.Principal, name: str) -> str:
    """What the Enrol RPC does: count the use, then enrol (device and credential issued with who's token)."""
    tokens.take_enrolment(parts.store, who)
    _, credential = agents.enrol(parts.store, parts.clock, name, "robot", "eu", {}, d.Capabilities(), b"", who)
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


def test_enrolment_writes_credential_issuer_and_audit_entry_in_one_transaction(parts: Parts) -> None:
    """Nothing is written between creating the credential and recording its issuer: a crash cannot leave a credential
    that outlives the revocation of its agent token."""
    agent = tokens.create_token(parts.store, parts.clock, "agent")
    who = auth_of(parts).resolve(agent.token)
    writes: list[str] = []
    store = parts.store
    for method in ("create_token", "enrol_device", "append_audit", "revoke_token", "set_device_state"):
        original = getattr(store, method)

        def spy(*args: object, _name: str = method, _original: object = original, **kw: object) -> object:
            writes.append(_name)
            return _original(*args, **kw)  # type: ignore[operator]

        setattr(store, method, spy)
    credential = enrol_with(parts, who, "one-tx")
    assert writes == ["enrol_device"]
    rec = parts.store.find_token(hash_token(credential))
    dev = parts.store.get_device_by_name("one-tx")
    assert rec is not None and rec.issued_by == agent.id and rec.device_id == dev.id and rec.role is d.Role.DEVICE
    [enrolled] = parts.store.list_audit("one-tx")
    assert (enrolled.actor, enrolled.role, enrolled.action, enrolled.detail) == (
        agent.id, "agent", "device.enrol", "class robot, region eu")


def test_failed_enrolment_stores_no_credential_and_no_entry(parts: Parts) -> None:
    who = auth_of(parts).resolve(tokens.create_token(parts.store, parts.clock, "agent").token)
    enrol_with(parts, who, "taken")
    with pytest.raises(d.Conflict):
        enrol_with(parts, who, "taken")
    assert [t.device_name for t in parts.store.list_tokens() if t.role is d.Role.DEVICE] == ["taken"]
    assert [e.action for e in parts.store.list_audit("taken")] == ["device.enrol"]


def test_token_actions_are_audited_with_the_admin_who_did_them(parts: Parts) -> None:
    admin = d.Principal(d.Role.ADMIN, "tok-admin")
    minted = tokens.create_token(parts.store, parts.clock, "agent", expires_in_s=3600, max_uses=5, who=admin)
    parts.clock.advance(1_000)
    tokens.revoke_token(parts.store, parts.clock, minted.id, who=admin)
    assert [(e.actor, e.role, e.action, e.target, e.detail, e.time_ms) for e in parts.store.list_audit(minted.id)] == [
        ("tok-admin", "admin", "token.revoke", minted.id, "refused from now on, with the credentials it issued",
         parts.clock.now_ms()),
        ("tok-admin", "admin", "token.create", minted.id, "role agent, expires in 3600 s, at most 5 enrolments",
         parts.clock.now_ms() - 1_000)]
    with pytest.raises(d.NotFound):
        tokens.revoke_token(parts.store, parts.clock, "tok-nope", who=admin)
    assert parts.store.list_audit("tok-nope") == []


def test_a_batch_of_heartbeats_reads_its_tokens_once_and_checks_each(parts: Parts,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    auth = auth_of(parts)
    live = tokens.create_token(parts.store, parts.clock, "engineer")
    revoked = tokens.create_token(parts.store, parts.clock, "engineer")
    tokens.revoke_token(parts.store, parts.clock, revoked.id)
    reads: list[list[str]] = []
    find_tokens = parts.store.find_tokens
    monkeypatch.setattr(parts.store, "find_tokens", lambda hs: reads.append(hs) or find_tokens(hs))
    monkeypatch.setattr(parts.store, "find_token", lambda h: pytest.fail("read one by one inside the batch"))
    with auth.batch([live.token, revoked.token, "nope", None, live.token]):
        assert auth.record(live.token).id == live.id
        with pytest.raises(d.Unauthenticated, match="revoked"):
            auth.record(revoked.token)
        with pytest.raises(d.Unauthenticated, match="does not know this token"):
            auth.record("nope")
        with pytest.raises(d.Unauthenticated, match="no token"):
            auth.record(None)
    assert len(reads) == 1 and sorted(reads[0]) == sorted({hash_token(live.token), hash_token(revoked.token),
                                                           hash_token("nope")})
    # After the block, a token is read again (a revocation made now counts at the next heartbeat).
    monkeypatch.undo()
    tokens.revoke_token(parts.store, parts.clock, live.id)
    with pytest.raises(d.Unauthenticated, match="revoked"):
        auth.record(live.token)
