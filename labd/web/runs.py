"""The Runs pages: the list with its filters, the queue and the engineers' submit form; one run with live task
progress, its cancel button, and once it has ended the signed report inline and as a zip. Each action calls the
handler the matching RPC calls, with the same role check."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import zipfile

from aiohttp import web

from labd.evidence.bundle import report_bundle
from labd.handlers import devices
from labd.handlers import runs as h
from labd.lab import Lab
from labd.web.access import (
    CANCEL_RUNS,
    LIST_RUNS,
    PULL_REPORTS,
    READ_RUNS,
    SUBMIT_RUNS,
    console_of,
    posted,
    viewer,
)
from labd.web.queue import queue_lines
from labd.web.render import headers, page, render
from pilotlab import domain as d

log = logging.getLogger("labd.web")

DEFAULT_LIMIT = 100
# Runs read (newest first) to filter and to count the queue from: the store has no query for queued tasks or for
# filtered runs, and reading a run costs two queries (about 0.5 ms each on SQLite).
SCAN = 200
FILTERS = ("suite", "device", "status", "verdict")
# The signed report.html inside the console: no scripts at all, its own inline styles and data: images only.
REPORT_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; "
              "sandbox allow-same-origin")


def load_run(lab: Lab, run_id: str) -> d.Run:
    """As GetRun shows it: with the faults a full store could not record yet."""
    return lab.leases.storage.overlay(lab.store.get_run(run_id))


def run_matches(run: d.Run, q: dict[str, str]) -> bool:
    if q.get("suite") and q["suite"] not in (run.suite_id, f"{run.suite_id}@{run.suite_version}"):
        return False
    if q.get("device") and not any(t.device_name == q["device"] for t in run.tasks):
        return False
    if q.get("status") and run.status.value != q["status"]:
        return False
    verdict = run.verdict.value if run.verdict else "none"
    return not (q.get("verdict") and verdict != q["verdict"])


def _runs_view(lab: Lab, q: dict[str, str], limit: int) -> tuple[list[d.Run], int, list[d.Run], list[d.Device],
                                                                 list[d.SuiteRecord]]:
    runs = [lab.leases.storage.overlay(r) for r in lab.store.list_runs(max(limit, SCAN))]
    shown = [r for r in runs if run_matches(r, q)][:limit]
    return shown, len(runs), runs, devices.list_devices(lab.store, lab.sessions), lab.store.list_suites()


async def runs_page(request: web.Request) -> web.Response:
    v = await viewer(request, LIST_RUNS)
    lab = console_of(request).lab
    q = {k: request.query.get(k, "").strip() for k in FILTERS}
    try:
        limit = min(1000, max(1, int(request.query.get("limit") or DEFAULT_LIMIT)))
    except ValueError:
        limit = DEFAULT_LIMIT
    shown, scanned, runs, fleet, suites = await asyncio.to_thread(_runs_view, lab, q, limit)
    return await page(request, "runs.html.j2", v, runs=shown, scanned=scanned, q=q, limit=limit,
                      queue=queue_lines(runs, fleet), now_ms=lab.clock.now_ms(), suites=_latest(suites),
                      devices=[x.name for x in fleet], statuses=[s.value for s in d.Status],
                      can_submit=v.can(SUBMIT_RUNS), form=v.session.take_form())


def _latest(suites: list[d.SuiteRecord]) -> list[d.SuiteRecord]:
    """One entry per suite id (the store lists versions in ascending order: keep the last)."""
    out: dict[str, d.SuiteRecord] = {}
    for s in suites:
        out[s.id] = s
    return list(out.values())


def submit_options(form: dict[str, str]) -> h.SubmitOptions:
    suite, _, version = form.get("suite", "").strip().partition("@")
    target = form.get("target", "device")
    device, select = form.get("device", "").strip(), form.get("select", "").strip()
    if target == "select":
        device = ""
    else:
        select = ""
    try:
        priority = int(form.get("priority") or 0)
    except ValueError:
        raise d.Invalid(f"priority must be a whole number, not {form.get('priority')!r}") from None
    if not suite:
        raise d.Invalid("choose a suite to run")
    if not device and not select:
        raise d.Invalid("name a device, or give a select expression (for example class=smart-terminal)")
    return h.SubmitOptions(suite_id=suite, version=version, device=device, select=select, priority=priority,
                           any_device=bool(form.get("any")) and bool(select))


async def submit(request: web.Request) -> web.Response:
    v, form = await posted(request, SUBMIT_RUNS)
    c = console_of(request)
    lab = c.lab
    try:
        opts = submit_options(form)
        await asyncio.to_thread(lab.leases.storage.check)  # refused while the lab's storage is full
        run = await asyncio.to_thread(h.submit_run, lab.store, lab.sessions, lab.clock, v.who, opts)
    except (d.Invalid, d.NotFound, d.Conflict, d.StorageFull) as e:
        v.session.flash("error", str(e))
        v.session.last_form = {k: form.get(k, "") for k in ("suite", "device", "select", "target")}
        raise web.HTTPSeeOther("/runs") from None
    log.info("run %s submitted from the web console: %s@%s, %d tasks", run.id, run.suite_id, run.suite_version,
             len(run.tasks))
    c.dispatcher.kick(others=True)
    v.session.flash("ok", f"Run {run.id} submitted: {len(run.tasks)} task{'s' if len(run.tasks) != 1 else ''}.")
    raise web.HTTPSeeOther(f"/runs/{run.id}")


def live_html(run: d.Run) -> str:
    return render("run_live.html.j2", run=run)


def live_doc(run: d.Run) -> str:
    """What the run page's script swaps in: the status line and the task table, rendered as on the page."""
    return json.dumps({"status": run.status.value, "verdict": run.verdict.value if run.verdict else None,
                       "terminal": run.status.terminal, "html": live_html(run)})


async def run_page(request: web.Request) -> web.Response:
    v = await viewer(request, READ_RUNS)
    lab = console_of(request).lab
    run = await asyncio.to_thread(load_run, lab, request.match_info["run_id"])
    return await page(request, "run.html.j2", v, run=run, can_cancel=v.can(CANCEL_RUNS),
                      can_report=v.can(PULL_REPORTS))


async def cancel(request: web.Request) -> web.Response:
    v, form = await posted(request, CANCEL_RUNS)
    c = console_of(request)
    run_id = request.match_info["run_id"]
    try:
        run, running = await asyncio.to_thread(h.cancel_run, c.lab.store, c.lab.clock, run_id,
                                               form.get("reason", "").strip(), v.who)
    except (d.Conflict, d.Invalid) as e:
        v.session.flash("error", str(e))
        raise web.HTTPSeeOther(f"/runs/{run_id}") from None
    await c.dispatcher.run_cancelled(run, running)
    log.info("run %s cancelled from the web console", run.id)
    v.session.flash("ok", f"Run {run.id} cancelled.")
    raise web.HTTPSeeOther(f"/runs/{run.id}")


async def _bundle(request: web.Request) -> tuple[str, dict[str, bytes]]:
    """The run's signed bundle, exactly as GetReport streams it (issued on first request, recorded report.pull)."""
    v = await viewer(request, PULL_REPORTS)
    lab = console_of(request).lab
    run_id = request.match_info["run_id"]
    files = await asyncio.to_thread(report_bundle, lab.store, lab.issuer, lab.clock, run_id, "", v.who)
    return run_id, files


async def report_html(request: web.Request) -> web.Response:
    _, files = await _bundle(request)
    response = web.Response(body=files["report.html"], content_type="text/html", charset="utf-8")
    headers(response, REPORT_CSP)
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.enable_compression()
    return response


def zip_files(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in sorted(files):
            z.writestr(name, files[name])
    return buf.getvalue()


async def bundle_zip(request: web.Request) -> web.Response:
    run_id, files = await _bundle(request)
    report_id = json.loads(files["report.json"]).get("report_id", "report")
    body = await asyncio.to_thread(zip_files, files)
    response = web.Response(body=body, content_type="application/zip")
    headers(response)
    response.headers["Content-Disposition"] = f'attachment; filename="{run_id}-{report_id}.zip"'
    return response
