"""DSSE envelopes signed with Ed25519 and the in-toto statements inside."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pilotlab import dsse


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def stmt() -> dict:
    subjects = {"report.json": hashlib.sha256(b"report").hexdigest(),
                "samples/latency.csv": hashlib.sha256(b"lat").hexdigest(),
                "a-first.csv": hashlib.sha256(b"a").hexdigest()}
    return dsse.statement(subjects, {"verdict": "pass", "run": "run-1"})


def test_statement_subjects_sorted_with_sha256() -> None:
    s = stmt()
    assert s["_type"] == dsse.STATEMENT_TYPE
    assert s["predicateType"] == dsse.PREDICATE_TYPE
    assert [x["name"] for x in s["subject"]] == ["a-first.csv", "report.json", "samples/latency.csv"]
    assert s["subject"][1]["digest"] == {"sha256": hashlib.sha256(b"report").hexdigest()}
    assert s["predicate"] == {"verdict": "pass", "run": "run-1"}


def test_sign_and_open(key: Ed25519PrivateKey) -> None:
    env = dsse.sign_envelope(key, stmt())
    assert env["payloadType"] == dsse.PAYLOAD_TYPE
    assert env["signatures"][0]["keyid"] == dsse.key_id(key.public_key())
    assert dsse.key_id(key.public_key()).startswith("ed25519:")
    assert dsse.open_envelope(env, key.public_key()) == stmt()
    # the envelope survives a JSON round trip, as it would on disk
    assert dsse.open_envelope(json.loads(json.dumps(env)), key.public_key()) == stmt()


def test_signature_covers_pae_not_raw_payload(key: Ed25519PrivateKey) -> None:
    env = dsse.sign_envelope(key, stmt())
    payload = base64.b64decode(env["payload"])
    sig = base64.b64decode(env["signatures"][0]["sig"])
    key.public_key().verify(sig, dsse.pae(dsse.PAYLOAD_TYPE, payload))
    assert dsse.pae("t", b"xy") == b"DSSEv1 1 t 2 xy"


def test_wrong_key(key: Ed25519PrivateKey) -> None:
    env = dsse.sign_envelope(key, stmt())
    with pytest.raises(ValueError, match="verifies"):
        dsse.open_envelope(env, Ed25519PrivateKey.generate().public_key())


def test_tampered_payload(key: Ed25519PrivateKey) -> None:
    env = dsse.sign_envelope(key, stmt())
    forged = stmt()
    forged["predicate"]["verdict"] = "fail"
    env["payload"] = base64.b64encode(json.dumps(forged, sort_keys=True, separators=(",", ":")).encode()).decode()
    with pytest.raises(ValueError):
        dsse.open_envelope(env, key.public_key())


def test_tampered_signature(key: Ed25519PrivateKey) -> None:
    env = dsse.sign_envelope(key, stmt())
    sig = bytearray(base64.b64decode(env["signatures"][0]["sig"]))
    sig[0] ^= 1
    env["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    with pytest.raises(ValueError):
        dsse.open_envelope(env, key.public_key())


@pytest.mark.parametrize("ptype", ["application/json", "", None])
def test_wrong_payload_type(key: Ed25519PrivateKey, ptype: str | None) -> None:
    env = dsse.sign_envelope(key, stmt())
    env["payloadType"] = ptype
    with pytest.raises(ValueError, match="payloadType"):
        dsse.open_envelope(env, key.public_key())


def test_no_signatures(key: Ed25519PrivateKey) -> None:
    env = dsse.sign_envelope(key, stmt())
    env["signatures"] = []
    with pytest.raises(ValueError):
        dsse.open_envelope(env, key.public_key())
    del env["signatures"]
    with pytest.raises(ValueError):
        dsse.open_envelope(env, key.public_key())


def test_any_one_good_signature_suffices(key: Ed25519PrivateKey) -> None:
    other = Ed25519PrivateKey.generate()
    env = dsse.sign_envelope(other, stmt())
    good = dsse.sign_envelope(key, stmt())
    env["signatures"] = [{"keyid": "junk"}, env["signatures"][0], {"sig": "!!notbase64"}, good["signatures"][0]]
    assert dsse.open_envelope(env, key.public_key()) == stmt()


def test_public_pem_round_trip(key: Ed25519PrivateKey) -> None:
    pem = dsse.public_pem(key.public_key())
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    loaded = dsse.load_public_pem(pem.encode())
    assert dsse.key_id(loaded) == dsse.key_id(key.public_key())
    assert dsse.open_envelope(dsse.sign_envelope(key, stmt()), loaded) == stmt()


def test_load_public_pem_rejects_other_key_types() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ValueError, match="Ed25519"):
        dsse.load_public_pem(pem)
