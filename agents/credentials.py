"""The device's identity in its work dir: the credential from enrolment and the device's Ed25519 key."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

CREDENTIAL_FILE = "device.json"
KEY_FILE = "device_key.pem"


@dataclass
class Credential:
    device_id: str
    device_token: str
    name: str
    lab: str


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_credential(work_dir: Path) -> Credential | None:
    path = work_dir / CREDENTIAL_FILE
    if not path.exists():
        return None
    return Credential(**json.loads(path.read_text()))


def save_credential(work_dir: Path, cred: Credential) -> None:
    _write_private(work_dir / CREDENTIAL_FILE, json.dumps(cred.__dict__, indent=2).encode())


def device_key(work_dir: Path) -> Ed25519PrivateKey:
    path = work_dir / KEY_FILE
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, Ed25519PrivateKey)
        return key
    key = Ed25519PrivateKey.generate()
    _write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return key


def public_raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
