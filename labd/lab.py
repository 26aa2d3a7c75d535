"""The lab's state as handlers see it: store, config, keys, live sessions, run events and metrics."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from labd.auth import Authenticator, hash_token, new_token
from labd.config import LabConfig
from labd.events import RunEvents
from labd.metrics import LabMetrics
from labd.sessions import SessionRegistry
from labd.state import Store
from pilotlab import domain as d


@dataclass
class Lab:
    config: LabConfig
    store: Store
    signing_key: Ed25519PrivateKey
    auth: Authenticator
    sessions: SessionRegistry = field(default_factory=SessionRegistry)
    events: RunEvents = field(default_factory=RunEvents)
    metrics: LabMetrics | None = None

    def __post_init__(self) -> None:
        if self.metrics is None:
            self.metrics = LabMetrics(lambda: len(self.sessions), self.store.count_tasks)

    @property
    def m(self) -> LabMetrics:
        assert self.metrics is not None
        return self.metrics


def ensure_admin_token(config: LabConfig, store: Store) -> Path:
    """First start writes DATA_DIR/admin.token (0600); later starts keep it."""
    path = config.admin_token_file
    if path.exists():
        token = path.read_text().strip()
        if store.find_token(hash_token(token)) is None:
            store.create_token(d.Role.ADMIN, hash_token(token))
        return path
    token = new_token(d.Role.ADMIN)
    store.create_token(d.Role.ADMIN, hash_token(token))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return path
