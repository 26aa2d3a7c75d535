"""The Fleet pages: every device with its class, region, tags, capabilities, status, current task and health; one
device in full with its state history (admins); and the admins' drain, release and quarantine buttons, which call
the same handler as `labctl devices drain|release|quarantine`."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web

from labd.evidence.int8 import INT8_FLAGS
from labd.handlers import audit, devices
from labd.lab import Lab
from labd.web.access import LIST_DEVICES, READ_AUDIT, SET_DEVICE_STATE, console_of, posted, viewer
from labd.web.fleet_view import DEVICE_ACTIONS, STATE_ACTIONS, fleet_rows, matches, rows_html
from labd.web.render import note, page
from labd.web.session import safe_next
from pilotlab import domain as d

log = logging.getLogger("labd.web")


async def devices_page(request: web.Request) -> web.Response:
    v = await viewer(request, LIST_DEVICES)
    q = {k: request.query.get(k, "") for k in ("class", "status", "state", "q")}
    t0 = time.perf_counter()
    view = await asyncio.to_thread(fleet_view, console_of(request).lab, q, v.can(READ_AUDIT),
                                   v.can(SET_DEVICE_STATE))
    note(request, "fleet", t0)
    return await page(request, "devices.html.j2", v, q=q, classes=d.DEVICE_CLASSES,
                      can_manage=v.can(SET_DEVICE_STATE), **view)


def fleet_view(lab: Lab, q: dict[str, str], show_why: bool, can_manage: bool) -> dict[str, Any]:
    """The fleet page's content (off the event loop: a thousand devices take a while to read)."""
    rows = fleet_rows(lab, show_why)
    shown = [r for r in rows if matches(r, q)]
    return {"row_html": rows_html(shown, can_manage), "total": len(rows), "shown": len(shown),
            "counts": {s: sum(1 for r in rows if r.dev.status == s) for s in ("online", "busy", "offline")},
            "states": {s: sum(1 for r in rows if r.dev.state == s) for s in ("draining", "quarantined")}}


async def device_page(request: web.Request) -> web.Response:
    v = await viewer(request, LIST_DEVICES)
    lab = console_of(request).lab
    name = request.match_info["name"]
    rows = await asyncio.to_thread(fleet_rows, lab, False)
    row = next((r for r in rows if r.dev.name == name), None)
    if row is None:
        raise d.NotFound(f"no device named {name!r} in this lab")
    history: list[Any] | None = None
    if v.can(READ_AUDIT):
        entries = await asyncio.to_thread(audit.list_audit, lab.store, name, 200)
        history = [e for e in entries if e.action in DEVICE_ACTIONS]
    return await page(request, "device.html.j2", v, row=row, history=history, can_manage=v.can(SET_DEVICE_STATE),
                      actions=STATE_ACTIONS, INT8_FLAGS=INT8_FLAGS)


async def set_state(request: web.Request) -> web.Response:
    """POST /devices/state, set=NAME STATE (one form around the fleet table: one CSRF field for all its buttons)."""
    v, form = await posted(request, SET_DEVICE_STATE)
    c = console_of(request)
    name, _, state = form.get("set", "").rpartition(" ")
    back = safe_next(form.get("back"))
    back = back if back.startswith("/devices") else "/devices"
    try:
        dev = await asyncio.to_thread(devices.set_state, c.lab.store, name, state, v.who, c.lab.clock)
    except (d.Invalid, d.NotFound) as e:
        v.session.flash("error", str(e))
        raise web.HTTPSeeOther(back) from None
    log.info("device %s set %s by an admin (web console)", dev.name, dev.state)
    c.dispatcher.kick(others=True)
    v.session.flash("ok", f"Device {dev.name} is now {dev.state}.")
    raise web.HTTPSeeOther(back)
