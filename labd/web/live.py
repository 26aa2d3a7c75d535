"""Live run pages: server-sent events that carry the run's status line and task table each time the run changes
(woken by labd's run events, as WatchRun is), and the same document by plain GET for browsers that poll instead."""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiohttp import web

from labd.servicers.lab import WATCH_POLL_S
from labd.web.access import WATCH_RUNS, console_of, viewer
from labd.web.render import headers
from labd.web.runs import live_doc, load_run

KEEPALIVE_S = 10.0  # a comment line this often: proxies keep the stream open, and a gone browser is noticed


async def run_live(request: web.Request) -> web.Response:
    """GET /runs/RUN_ID/live: the live document once (the polling fallback)."""
    await viewer(request, WATCH_RUNS, api=True)
    run = await asyncio.to_thread(load_run, console_of(request).lab, request.match_info["run_id"])
    response = web.Response(text=live_doc(run), content_type="application/json")
    headers(response)
    return response


async def run_events(request: web.Request) -> web.StreamResponse:
    """GET /runs/RUN_ID/events: text/event-stream of `run` events until the run ends (then `end`), the token is
    refused (`signed-out`), the browser goes away or labd stops."""
    await viewer(request, WATCH_RUNS, api=True)
    c = console_of(request)
    lab, run_id = c.lab, request.match_info["run_id"]
    run = await asyncio.to_thread(load_run, lab, run_id)  # an unknown run is a 404 before the stream starts
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
    headers(response)
    await response.prepare(request)
    last, seen, quiet_since = "", -1, time.monotonic()
    with contextlib.suppress(ConnectionError):
        await response.write(b"retry: 2000\n\n")
        while not c.closing.is_set():
            version = lab.events.version(run_id)
            doc = live_doc(run)
            if doc != last:
                await response.write(f"event: run\ndata: {doc}\n\n".encode())
                last, quiet_since = doc, time.monotonic()
            elif time.monotonic() - quiet_since >= KEEPALIVE_S:
                await response.write(b": still watching\n\n")
                quiet_since = time.monotonic()
            if run.status.terminal:
                await response.write(b"event: end\ndata: {}\n\n")
                break
            if request.transport is None or request.transport.is_closing():
                break
            seen = await lab.events.wait_change(run_id, max(seen, version), WATCH_POLL_S)
            try:
                await viewer(request, WATCH_RUNS, api=True)  # a revoked token ends the stream at once
            except web.HTTPUnauthorized:
                await response.write(b"event: signed-out\ndata: {}\n\n")
                break
            run = await asyncio.to_thread(load_run, lab, run_id)
    return response
