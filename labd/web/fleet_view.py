"""The fleet table's content, made cheaply enough for a thousand devices: every device as labctl lists it, its
current tasks from one query, and each row's HTML reused while the device shows the same (a page view then costs
the store's device list plus string joins)."""

from __future__ import annotations

import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from markupsafe import Markup

from labd.evidence.int8 import int8_relevant, x86_without_vnni
from labd.handlers import audit, devices
from labd.lab import Lab
from labd.state import AuditEntry
from labd.web.render import size, template, when
from pilotlab import domain as d

STATE_ACTIONS = {"draining": "Drain", "active": "Release", "quarantined": "Quarantine"}
DEVICE_ACTIONS = ("device.drain", "device.release", "device.quarantine", "device.enrol")
HISTORY_LOOKUPS = 50  # on the fleet page, why a device is drained or quarantined is looked up for at most this many
WHY_TTL_S = 30.0  # and kept this long per (device, state)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Lru(Generic[K, V]):
    """A bounded, thread-safe map that forgets the least recently used entries first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._d: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._d.get(key)
            if value is not None:
                self._d.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> V:
        with self._lock:
            self._d[key] = value
            while len(self._d) > self.limit:
                self._d.popitem(last=False)
        return value

    def get_or(self, key: K, make: Callable[[], V]) -> V:
        hit = self.get(key)
        return hit if hit is not None else self.put(key, make())


@dataclass(frozen=True)
class Current:
    run_id: str
    task: str


@dataclass
class DeviceRow:
    """One device as the fleet table shows it; cell texts are made here so the row template only substitutes."""

    dev: d.Device
    current: list[Current] = field(default_factory=list)
    why: str = ""  # for admins, the latest drain or quarantine: when, by whom, why (from the audit log)

    @property
    def int8(self) -> list[str]:
        return int8_relevant(self.dev.capabilities.cpu_flags)

    @property
    def no_vnni(self) -> bool:
        return x86_without_vnni(self.dev.capabilities.cpu_flags)

    @property
    def tags(self) -> list[str]:
        return [f"{k}={v}" for k, v in sorted(self.dev.tags.items())]

    @property
    def platform(self) -> str:
        c = self.dev.capabilities
        parts = [f"{c.os} {c.arch}".strip(), f"{c.cpu_cores} cores" if c.cpu_cores else "",
                 size(c.memory_bytes) if c.memory_bytes else ""]
        return " · ".join(p for p in parts if p)

    @property
    def providers(self) -> str:
        """Execution providers by their short names (CUDA, CPU…); the device page has them in full."""
        return ", ".join(p.removesuffix("ExecutionProvider") for p in self.dev.capabilities.providers)

    def key(self, can_manage: bool) -> tuple[Hashable, ...]:
        """Everything the row shows: equal keys render equal HTML."""
        dev, c = self.dev, self.dev.capabilities
        return (dev.name, dev.device_class, dev.region, tuple(self.tags), dev.status, dev.state, dev.infra_errors,
                tuple(self.current), self.why, self.platform, tuple(self.int8), len(c.cpu_flags), self.providers,
                c.onnxruntime_version, can_manage)


_task_names: Lru[str, tuple[str, str]] = Lru(8192)  # task id -> (run id, name): fixed once the task exists
_why: Lru[tuple[str, str], tuple[float, str]] = Lru(4096)  # (device, state) -> (looked up at, text)
_rows: Lru[tuple[Hashable, ...], Markup] = Lru(4096)


def state_change(e: AuditEntry) -> str:
    """"quarantined 2026-05-01 10:00:00 by labd: 3 consecutive infrastructure errors" (the detail only when it says
    more than the change of state)."""
    verb = {"device.drain": "drained", "device.release": "released", "device.quarantine": "quarantined"}[e.action]
    out = f"{verb} {when(e.time_ms)} by {e.actor}"
    return out if "->" in e.detail or not e.detail else f"{out}: {e.detail}"


def _why_now(lab: Lab, dev: d.Device) -> str:
    now = time.monotonic()
    hit = _why.get((dev.name, dev.state))
    if hit is not None and now - hit[0] < WHY_TTL_S:
        return hit[1]
    entries = audit.list_audit(lab.store, dev.name, 20)
    latest = next((e for e in entries if e.action in DEVICE_ACTIONS[:3]), None)
    text = state_change(latest) if latest else ""
    _why.put((dev.name, dev.state), (now, text))
    return text


def fleet_rows(lab: Lab, show_why: bool) -> list[DeviceRow]:
    """Every device (labctl devices list's view: busy while its live session runs attempts) with its current
    tasks; for admins, why each drained or quarantined device is so."""
    rows = [DeviceRow(dev) for dev in devices.list_devices(lab.store, lab.sessions)]
    busy = {r.dev.id: r for r in rows if r.dev.status == "busy"}
    if busy:
        for att in lab.store.running_attempts():
            row = busy.get(att.device_id)
            if row is not None:
                run_id, name = _task_names.get_or(att.task_id, functools.partial(_task, lab, att.task_id))
                row.current.append(Current(run_id, name))
    if show_why:
        for row in [r for r in rows if r.dev.state != "active"][:HISTORY_LOOKUPS]:
            row.why = _why_now(lab, row.dev)
    return rows


def _task(lab: Lab, task_id: str) -> tuple[str, str]:
    t = lab.store.get_task(task_id)
    return t.run_id, t.name


def matches(row: DeviceRow, q: dict[str, str]) -> bool:
    """The fleet page's filters: class, status, state, and words to find in the name, region, tags, CPU model or
    CPU features (all of them)."""
    dev = row.dev
    if q.get("class") and dev.device_class != q["class"]:
        return False
    if q.get("status") and dev.status != q["status"]:
        return False
    if q.get("state") and dev.state != q["state"]:
        return False
    text = q.get("q", "").strip().lower()
    if text:
        hay = " ".join([dev.name, dev.region, *(f"{k}={v}" for k, v in dev.tags.items()),
                        dev.capabilities.cpu_model, *dev.capabilities.cpu_flags]).lower()
        return all(word in hay for word in text.split())
    return True


def rows_html(rows: list[DeviceRow], can_manage: bool) -> list[Markup]:
    """Each row's HTML, rendered only when the device shows something new since it was last rendered."""
    _rows.limit = max(_rows.limit, 2 * len(rows))
    row_template = template("device_row.html.j2")

    def make(row: DeviceRow) -> Markup:
        return Markup(row_template.render(r=row, can_manage=can_manage, actions=STATE_ACTIONS))

    return [_rows.get_or(r.key(can_manage), functools.partial(make, r)) for r in rows]
