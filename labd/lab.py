"""What labd is made of, wired once at start: config, store, clock, keys, live sessions, run events, metrics and the
scheduler's device health and leases. Servicers take the whole; handlers and the scheduler only the parts they use."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from labd.auth import Authenticator, hash_token, new_token
from labd.clock import SYSTEM_CLOCK, Clock
from labd.config import LabConfig
from labd.events import RunEvents
from labd.evidence.keys import Issuer
from labd.scheduler.health import DeviceHealth
from labd.scheduler.leases import Leases
from labd.sessions import SessionRegistry
from labd.state import AuditEntry, Store
from labd.telemetry import LabMetrics
from pilotlab import domain as d


@dataclass
class Lab:
    config: LabConfig
    store: Store
    clock: Clock
    issuer: Issuer
    auth: Authenticator
    sessions: SessionRegistry
    events: RunEvents
    metrics: LabMetrics
    health: DeviceHealth
    leases: Leases

    @classmethod
    def wire(cls, config: LabConfig, store: Store, signing_key: Ed25519PrivateKey,
             clock: Clock = SYSTEM_CLOCK) -> Lab:
        sessions = SessionRegistry()
        metrics = LabMetrics(lambda: len(sessions), store.count_tasks)
        health = DeviceHealth(store, metrics, clock)
        leases = Leases(store, sessions, health, metrics, clock, lease_ms=config.lease_ms,
                        max_attempts=config.max_attempts)
        return cls(config=config, store=store, clock=clock, issuer=Issuer(config.lab_name, signing_key),
                   auth=Authenticator(store, clock=clock), sessions=sessions, events=RunEvents(), metrics=metrics,
                   health=health, leases=leases)


def ensure_admin_token(config: LabConfig, store: Store, clock: Clock = SYSTEM_CLOCK) -> Path:
    """First start writes DATA_DIR/admin.token (0600); later starts keep it."""
    path = config.admin_token_file
    if path.exists():
        token = path.read_text().strip()
        if store.find_token(hash_token(token)) is None:
            store.create_token(d.Role.ADMIN, hash_token(token), audit=AuditEntry.by(
                None, "token.create", "", f"role admin, re-registered from {path}", clock.now_ms()))
        return path
    token = new_token(d.Role.ADMIN)
    store.create_token(d.Role.ADMIN, hash_token(token), audit=AuditEntry.by(
        None, "token.create", "", f"role admin, written to {path}", clock.now_ms()))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return path
