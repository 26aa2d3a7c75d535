"""The console's aiohttp application: its routes, the mapping of the lab's domain errors to HTTP statuses and error
pages, the headers every response carries, and the static files (one stylesheet, one small script)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from labd.lab import Lab
from labd.scheduler.dispatcher import Dispatcher
from labd.web import catalog, fleet, live, login, runs, tokens
from labd.web.access import CONSOLE, Console, current_session
from labd.web.render import SECURITY_HEADERS, STATIC, TIMINGS, page
from pilotlab import domain as d
from pilotlab.names import one_line

log = logging.getLogger("labd.web")

# The same mapping as labd/servicers/errors.py's, in HTTP's words.
STATUS: dict[type[d.LabError], int] = {d.StorageFull: 507, d.LabFault: 500, d.Unauthenticated: 401, d.Denied: 403,
                                       d.NotFound: 404, d.Invalid: 400, d.Conflict: 409}
TITLES = {400: "Not possible", 401: "Not signed in", 403: "Not allowed", 404: "Not found", 409: "Not now",
          500: "The lab failed", 507: "The lab's storage is full"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def error_page(request: web.Request, status: int, message: str) -> web.Response:
    sess = current_session(request)
    api = request.path.endswith(("/events", "/live")) or request.method != "GET" and sess is None
    if api:
        return web.Response(status=status, text=message)
    return await page(request, "error.html.j2", None, status=status, title=TITLES.get(status, "Error"),
                      message=message, role=sess.role.value if sess else "", csrf=sess.csrf if sess else "")


@web.middleware
async def timing(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Server-Timing: how long labd took to answer (store reads and rendering, before compression and sending), for
    browsers' developer tools and bench/web_console.py."""
    t0 = time.perf_counter()
    response = await handler(request)
    if not response.prepared:
        parts = [("app", (time.perf_counter() - t0) * 1000), *request.get(TIMINGS, {}).items()]
        response.headers["Server-Timing"] = ", ".join(f"{name};dur={ms:.1f}" for name, ms in parts)
    return response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return await error_page(request, e.status, e.text or e.reason)
    except d.LabError as e:
        status = next((s for t, s in STATUS.items() if isinstance(e, t)), 500)
        return await error_page(request, status, one_line(str(e)))
    except Exception as e:  # a full disk or database says so, once, as over gRPC; anything else is a bug: 500
        full = request.app[CONSOLE].lab.leases.storage.noted(e)
        if full is None:
            raise
        return await error_page(request, STATUS[d.StorageFull], one_line(str(full)))


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for k, v in SECURITY_HEADERS.items():
        response.headers.setdefault(k, v)
    if request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "public, max-age=86400"
    response.headers.setdefault("X-Frame-Options", "DENY")


def make_app(lab: Lab, dispatcher: Dispatcher, secure: bool) -> web.Application:
    app = web.Application(middlewares=[timing, errors], client_max_size=64 << 10)  # forms only: nothing big is posted
    app[CONSOLE] = Console(lab, dispatcher, secure)
    app.on_response_prepare.append(security_headers)
    r = app.router
    r.add_get("/", login.home)
    r.add_get("/login", login.login_form)
    r.add_post("/login", login.login)
    r.add_post("/logout", login.logout)
    r.add_get("/devices", fleet.devices_page)
    r.add_post("/devices/state", fleet.set_state)
    r.add_get("/devices/{name}", fleet.device_page)
    r.add_get("/runs", runs.runs_page)
    r.add_post("/runs", runs.submit)
    r.add_get("/runs/{run_id}", runs.run_page)
    r.add_post("/runs/{run_id}/cancel", runs.cancel)
    r.add_get("/runs/{run_id}/events", live.run_events)
    r.add_get("/runs/{run_id}/live", live.run_live)
    r.add_get("/runs/{run_id}/report.html", runs.report_html)
    r.add_get("/runs/{run_id}/bundle.zip", runs.bundle_zip)
    r.add_get("/suites", catalog.suites_page)
    r.add_get("/audit", catalog.audit_page)
    r.add_get("/tokens", tokens.tokens_page)
    r.add_post("/tokens", tokens.create)
    r.add_post("/tokens/revoke", tokens.revoke)
    r.add_static("/static", STATIC, append_version=False)

    async def closing(app: web.Application) -> None:
        app[CONSOLE].closing.set()  # live streams end at their next wake-up

    app.on_shutdown.append(closing)
    return app
