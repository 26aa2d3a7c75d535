"""The Suites page (each suite with its tasks, criteria and grading levels) and the admins' Audit page."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import lru_cache

from aiohttp import web

from evalsuites import Suite
from labd.handlers import audit
from labd.web.access import LIST_SUITES, READ_AUDIT, console_of, viewer
from labd.web.render import page
from pilotlab import domain as d


@dataclass
class SuiteView:
    suite: Suite
    versions: list[str]  # every registered version, oldest first

    def counts(self, criterion_id: str) -> bool:
        """Whether a criterion decides the verdict: with a grading table, those of its first (basic) level do, the
        others only decide the grade (as labd.scheduler.plan grades them)."""
        g = self.suite.grading
        return g is None or not g.levels or criterion_id in g.levels[0].criteria


@lru_cache(maxsize=256)
def _parse(suite_json: str) -> Suite:
    return Suite.from_json(suite_json)


def suite_views(records: list[d.SuiteRecord]) -> list[SuiteView]:
    """The latest version of each suite in full, with the other versions named."""
    versions: dict[str, list[d.SuiteRecord]] = {}
    for rec in records:
        versions.setdefault(rec.id, []).append(rec)
    return [SuiteView(_parse(recs[-1].suite_json), [r.version for r in recs]) for _, recs in sorted(versions.items())]


async def suites_page(request: web.Request) -> web.Response:
    v = await viewer(request, LIST_SUITES)
    lab = console_of(request).lab
    records = await asyncio.to_thread(lab.store.list_suites)
    views = await asyncio.to_thread(suite_views, records)
    return await page(request, "suites.html.j2", v, suites=views)


async def audit_page(request: web.Request) -> web.Response:
    v = await viewer(request, READ_AUDIT)
    lab = console_of(request).lab
    target = request.query.get("target", "").strip()
    try:
        limit = min(audit.MAX_LIMIT, max(1, int(request.query.get("limit") or 200)))
    except ValueError:
        limit = 200
    entries = await asyncio.to_thread(audit.list_audit, lab.store, target, limit)
    return await page(request, "audit.html.j2", v, entries=entries, target=target, limit=limit)
