"""The lab's Ed25519 signing key (created on first start, mode 0600, reused afterwards) and the issuer of its
reports: the lab's name with that key."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

KEY_FILE = "signing_key.pem"


@dataclass(frozen=True)
class Issuer:
    """Who issues the lab's reports and signs them."""

    lab_name: str
    key: Ed25519PrivateKey


def load_or_create_signing_key(data_dir: Path, path: Path | None = None) -> Ed25519PrivateKey:
    """The lab's Ed25519 signing key: the given file (labd --signing-key, which every replica of one lab is given),
    else DATA_DIR/signing_key.pem, created on first start."""
    given = path is not None
    path = path or data_dir / KEY_FILE
    if given and not path.exists():
        raise ValueError(f"--signing-key {path} does not exist; give the lab's signing key (PEM, Ed25519), the "
                         f"{KEY_FILE} of the labd that first started on this database")
    if path.exists():
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError, OSError) as e:
            raise ValueError(f"{path} is not a readable unencrypted PEM private key ({e}); give the lab's signing "
                             "key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} holds no Ed25519 private key; move it away to let labd create one")
        return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key


def key_id(key: Ed25519PrivateKey) -> str:
    """The public key's sha256, hex: how lab_meta records which key the lab signs with."""
    import hashlib

    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()
