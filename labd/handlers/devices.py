"""Reading the fleet and setting a device's admin state (drain, release, quarantine)."""

from __future__ import annotations

from labd.sessions import SessionRegistry
from labd.state import Store
from pilotlab import domain as d

STATES = ("active", "draining", "quarantined")


def list_devices(store: Store, sessions: SessionRegistry) -> list[d.Device]:
    """Every enrolled device, shown busy while its live session runs attempts."""
    devices = store.list_devices()
    for dev in devices:
        sess = sessions.get(dev.id)
        if sess is not None and sess.running:
            dev.status = "busy"
    return devices


def set_state(store: Store, name: str, state: str) -> d.Device:
    if state not in STATES:
        raise d.Invalid(f"unknown device state {state!r}; use one of {', '.join(STATES)}")
    dev = store.get_device_by_name(name)
    return store.set_device_state(dev.id, state)
