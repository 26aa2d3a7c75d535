"""Rendering console pages: one Jinja2 environment over labd/web/templates (every page extends base.html.j2), the
filters the templates share, and the response headers every page carries."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from labd.web.access import ADMINS, Viewer, permitted

STATIC = Path(__file__).parent / "static"
# Templates ship with labd: loaded once, never re-checked on disk (a fleet page renders a template per row).
_env = jinja2.Environment(loader=jinja2.PackageLoader("labd.web", "templates"), auto_reload=False,
                          autoescape=jinja2.select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)

# Pages and fragments: scripts and styles from this origin only, no plugins, framed by nothing but this console.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-src 'self'; frame-ancestors 'self'; form-action 'self'; base-uri 'none'; object-src 'none'")
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
                    "Cross-Origin-Opener-Policy": "same-origin", "Cache-Control": "no-store"}


def when(ms: int | None) -> str:
    """A stored Unix-ms time as UTC to the second ("" for never)."""
    if not ms:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def span(ms: float | None) -> str:
    """A duration in ms as people say it: 850 ms, 42 s, 7 min, 3 h 20 min, 2 d 4 h."""
    if ms is None:
        return ""
    s = max(0.0, ms / 1000)
    if s < 1:
        return f"{ms:.0f} ms"
    if s < 120:
        return f"{s:.0f} s"
    m = s / 60
    if m < 120:
        return f"{m:.0f} min"
    h = int(m // 60)
    if h < 48:
        return f"{h} h {int(m % 60)} min"
    return f"{h // 24} d {h % 24} h"


def size(n: int | None) -> str:
    if not n:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1024  # type: ignore[assignment]
    return ""


def pct(x: float | None) -> str:
    return "" if x is None else f"{x * 100:.0f}%"


def static_version() -> str:
    """A digest of the static files, appended to their URLs: browsers may cache them, and a new labd's files are
    fetched anew."""
    h = hashlib.sha256()
    for f in sorted(STATIC.iterdir()):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:10]


def num(v: object, digits: int = 3) -> str:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return "—"
    return f"{v:.{digits}f}"


_env.filters.update(when=when, span=span, size=size, pct=pct, num=num)
_env.globals["static_v"] = static_version()


TIMINGS = "pilotlab_timings"  # request key: {name: ms} added to the Server-Timing header


def note(request: web.Request, name: str, since: float) -> None:
    """Record how long a step of this request took, since perf_counter() was `since`."""
    request.setdefault(TIMINGS, {})[name] = (time.perf_counter() - since) * 1000


def render(template: str, **ctx: Any) -> str:
    return _env.get_template(template).render(**ctx)


def template(name: str) -> jinja2.Template:
    return _env.get_template(name)


def headers(response: web.StreamResponse, csp: str = CSP) -> None:
    response.headers.update(SECURITY_HEADERS)
    response.headers.setdefault("Content-Security-Policy", csp)


async def page(request: web.Request, template: str, viewer: Viewer | None, status: int = 200,
               **ctx: Any) -> web.Response:
    """A whole page: rendered off the event loop (a fleet of a thousand devices is a big table), compressed when
    the browser accepts it."""
    flashes = viewer.session.take_flashes() if viewer is not None else []
    base = {"viewer": viewer, "role": viewer.who.role.value if viewer else "", "csrf": viewer.csrf if viewer else "",
            "flashes": flashes, "is_admin": bool(viewer) and permitted(viewer.who.role, ADMINS),  # type: ignore[union-attr]
            "path": request.path, **ctx}
    t0 = time.perf_counter()
    html = await asyncio.to_thread(render, template, **base)
    note(request, "render", t0)
    response = web.Response(text=html, content_type="text/html", status=status)
    headers(response)
    if len(html) > 1024:
        response.enable_compression()
    return response
