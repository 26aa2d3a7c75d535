"""Reading the fleet and setting a device's admin state (drain, release, quarantine; each recorded in the audit
log)."""

from __future__ import annotations

from labd.clock import SYSTEM_CLOCK, Clock
from labd.sessions import SessionRegistry
from labd.state import AuditEntry, Store
from pilotlab import domain as d

STATES = ("active", "draining", "quarantined")
ACTIONS = {"active": "device.release", "draining": "device.drain", "quarantined": "device.quarantine"}


def list_devices(store: Store, sessions: SessionRegistry) -> list[d.Device]:
    """Every enrolled device, shown busy while its live session runs attempts; with several replicas, also while
    an attempt runs on it through another replica (the store knows those)."""
    devices = store.list_devices()
    elsewhere = {a.device_id for a in store.running_attempts()} if store.replicated else set()
    for dev in devices:
        sess = sessions.get(dev.id)
        here = sess is not None and bool(sess.running)
        there = sess is None and dev.id in elsewhere and dev.status == "online"
        if here or there:
            dev.status = "busy"
    return devices


def set_state(store: Store, name: str, state: str, who: d.Principal | None = None,
              clock: Clock = SYSTEM_CLOCK) -> d.Device:
    """Drain, release or quarantine the device; recorded (device.drain, device.release, device.quarantine) by who."""
    if state not in STATES:
        raise d.Invalid(f"unknown device state {state!r}; use one of {', '.join(STATES)}")
    dev = store.get_device_by_name(name)
    audit = AuditEntry.by(who, ACTIONS[state], dev.name, f"{dev.state} -> {state}", clock.now_ms())
    return store.set_device_state(dev.id, state, audit=audit)
