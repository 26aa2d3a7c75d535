"""LabService: what labctl calls — tokens, fleet, suites, runs (submit, watch, cancel), reports and the audit
log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc

from labd.evidence.bundle import report_bundle
from labd.handlers import audit, devices, tokens
from labd.handlers import runs as h
from labd.lab import Lab
from labd.scheduler.dispatcher import Dispatcher
from labd.servicers.errors import streaming, unary
from labd.servicers.tokens import call_token
from labd.state import AuditEntry, TokenRecord
from pilotlab import __version__, convert, dsse
from pilotlab import domain as d
from pilotlab.v1 import lab_pb2, lab_pb2_grpc

log = logging.getLogger("labd.lab")

READERS = [d.Role.ENGINEER, d.Role.CERTIFIER]
ENGINEERS = [d.Role.ENGINEER]
WATCH_POLL_S = 1.0
REPORT_CHUNK = 1 << 20


def token_info(t: TokenRecord) -> lab_pb2.TokenInfo:
    return lab_pb2.TokenInfo(id=t.id, role=t.role.value, created_ms=t.created_ms, expires_ms=t.expires_ms,
                             revoked_ms=t.revoked_ms, uses=t.uses, max_uses=t.max_uses, device=t.device_name,
                             issued_by=t.issued_by or "")


def audit_info(e: AuditEntry) -> lab_pb2.AuditEntry:
    return lab_pb2.AuditEntry(time_ms=e.time_ms, actor=e.actor, role=e.role, action=e.action, target=e.target,
                              detail=e.detail)


class LabServicer(lab_pb2_grpc.LabServiceServicer):
    def __init__(self, lab: Lab, dispatcher: Dispatcher) -> None:
        self.lab = lab
        self.dispatcher = dispatcher

    async def _who(self, context: grpc.aio.ServicerContext, roles: list[d.Role], action: str) -> d.Principal:
        return await asyncio.to_thread(self.lab.auth.require, call_token(context), roles, action)

    @unary
    async def CreateToken(self, request: lab_pb2.CreateTokenRequest,
                          context: grpc.aio.ServicerContext) -> lab_pb2.CreateTokenResponse:
        who = await self._who(context, [d.Role.ADMIN], "create tokens")
        minted = await asyncio.to_thread(tokens.create_token, self.lab.store, self.lab.clock, request.role,
                                         request.expires_in_s, request.max_uses, who)
        log.info("token %s (%s) created by an admin", minted.id, minted.role.value)
        return lab_pb2.CreateTokenResponse(token=minted.token, role=minted.role.value, id=minted.id)

    @unary
    async def ListTokens(self, request: lab_pb2.ListTokensRequest,
                         context: grpc.aio.ServicerContext) -> lab_pb2.ListTokensResponse:
        await self._who(context, [d.Role.ADMIN], "list tokens")
        found = await asyncio.to_thread(tokens.list_tokens, self.lab.store)
        return lab_pb2.ListTokensResponse(tokens=[token_info(t) for t in found])

    @unary
    async def RevokeToken(self, request: lab_pb2.RevokeTokenRequest,
                          context: grpc.aio.ServicerContext) -> lab_pb2.TokenInfo:
        who = await self._who(context, [d.Role.ADMIN], "revoke tokens")
        rec = await asyncio.to_thread(tokens.revoke_token, self.lab.store, self.lab.clock, request.id, who)
        log.info("token %s (%s) revoked by an admin", rec.id, rec.role.value)
        return token_info(rec)

    @unary
    async def ListDevices(self, request: lab_pb2.ListDevicesRequest,
                          context: grpc.aio.ServicerContext) -> lab_pb2.ListDevicesResponse:
        await self._who(context, READERS, "list devices")
        found = await asyncio.to_thread(devices.list_devices, self.lab.store, self.lab.sessions)
        return lab_pb2.ListDevicesResponse(devices=[convert.device_to_pb(x) for x in found])

    @unary
    async def ListSuites(self, request: lab_pb2.ListSuitesRequest,
                         context: grpc.aio.ServicerContext) -> lab_pb2.ListSuitesResponse:
        await self._who(context, READERS, "list suites")
        suites = await asyncio.to_thread(self.lab.store.list_suites)
        return lab_pb2.ListSuitesResponse(suites=[convert.suite_info_to_pb(s) for s in suites])

    @unary
    async def GetSuite(self, request: lab_pb2.GetSuiteRequest,
                       context: grpc.aio.ServicerContext) -> lab_pb2.SuiteInfo:
        await self._who(context, READERS, "read suites")
        s = await asyncio.to_thread(self.lab.store.get_suite, request.id, request.version or None)
        return convert.suite_info_to_pb(s, with_json=True)

    @unary
    async def SubmitRun(self, request: lab_pb2.SubmitRunRequest,
                        context: grpc.aio.ServicerContext) -> lab_pb2.Run:
        who = await self._who(context, ENGINEERS, "submit runs")
        opts = h.SubmitOptions(suite_id=request.suite_id, version=request.suite_version, device=request.device,
                               select=request.select, priority=request.priority, any_device=request.any_device,
                               queue_timeout_s=request.queue_timeout_s)
        await asyncio.to_thread(self.lab.leases.storage.check)  # refused while the lab's storage is full
        run = await asyncio.to_thread(h.submit_run, self.lab.store, self.lab.sessions, self.lab.clock, who, opts)
        log.info("run %s submitted: %s@%s, %d tasks", run.id, run.suite_id, run.suite_version, len(run.tasks))
        self.dispatcher.kick(others=True)
        return convert.run_to_pb(run)

    @unary
    async def GetRun(self, request: lab_pb2.GetRunRequest, context: grpc.aio.ServicerContext) -> lab_pb2.Run:
        await self._who(context, READERS, "read runs")
        run = await asyncio.to_thread(self.lab.store.get_run, request.id)
        return convert.run_to_pb(self.lab.leases.storage.overlay(run))  # with faults a full store could not record

    @unary
    async def ListRuns(self, request: lab_pb2.ListRunsRequest,
                       context: grpc.aio.ServicerContext) -> lab_pb2.ListRunsResponse:
        await self._who(context, READERS, "list runs")
        runs = [self.lab.leases.storage.overlay(r)
                for r in await asyncio.to_thread(self.lab.store.list_runs, request.limit or 100)]
        return lab_pb2.ListRunsResponse(runs=[convert.run_to_pb(r) for r in runs])

    @unary
    async def CancelRun(self, request: lab_pb2.CancelRunRequest,
                        context: grpc.aio.ServicerContext) -> lab_pb2.Run:
        who = await self._who(context, ENGINEERS, "cancel runs")
        run, running = await asyncio.to_thread(h.cancel_run, self.lab.store, self.lab.clock, request.id,
                                               request.reason, who)
        await self.dispatcher.run_cancelled(run, running)
        return convert.run_to_pb(run)

    @streaming
    async def WatchRun(self, request: lab_pb2.GetRunRequest,
                       context: grpc.aio.ServicerContext) -> AsyncIterator[lab_pb2.Run]:
        await self._who(context, READERS, "watch runs")
        seen, last = -1, None
        while True:
            version = self.lab.events.version(request.id)
            run = self.lab.leases.storage.overlay(await asyncio.to_thread(self.lab.store.get_run, request.id))
            msg = convert.run_to_pb(run)
            if msg != last:
                yield msg
                last = msg
            if run.status.terminal:
                return
            seen = await self.lab.events.wait_change(request.id, max(seen, version), WATCH_POLL_S)

    @streaming
    async def GetReport(self, request: lab_pb2.GetReportRequest,
                        context: grpc.aio.ServicerContext) -> AsyncIterator[lab_pb2.ReportChunk]:
        who = await self._who(context, READERS, "pull reports")
        if request.amend_reason:
            await self._who(context, ENGINEERS, "amend reports")
        lab = self.lab
        files = await asyncio.to_thread(report_bundle, lab.store, lab.issuer, lab.clock, request.run_id,
                                        request.amend_reason, who)
        total = sum(len(data) for data in files.values())
        for path in sorted(files):
            data = memoryview(files[path])
            for off in range(0, max(len(data), 1), REPORT_CHUNK):
                chunk = data[off:off + REPORT_CHUNK]
                yield lab_pb2.ReportChunk(path=path, data=bytes(chunk), last=off + REPORT_CHUNK >= len(data),
                                          bundle_bytes=total)
                total = 0

    @unary
    async def SetDeviceState(self, request: lab_pb2.SetDeviceStateRequest,
                             context: grpc.aio.ServicerContext) -> lab_pb2.Device:
        who = await self._who(context, [d.Role.ADMIN], "drain, release or quarantine devices")
        dev = await asyncio.to_thread(devices.set_state, self.lab.store, request.name, request.state, who,
                                      self.lab.clock)
        log.info("device %s set %s by an admin", dev.name, dev.state)
        self.dispatcher.kick(others=True)
        return convert.device_to_pb(dev)

    @unary
    async def ListAudit(self, request: lab_pb2.ListAuditRequest,
                        context: grpc.aio.ServicerContext) -> lab_pb2.ListAuditResponse:
        await self._who(context, [d.Role.ADMIN], "read the audit log")
        found = await asyncio.to_thread(audit.list_audit, self.lab.store, request.target, request.limit)
        return lab_pb2.ListAuditResponse(entries=[audit_info(e) for e in found])

    @unary
    async def GetLabInfo(self, request: lab_pb2.GetLabInfoRequest,
                         context: grpc.aio.ServicerContext) -> lab_pb2.LabInfo:
        await self._who(context, READERS + [d.Role.AGENT, d.Role.DEVICE], "read the lab's identity")
        issuer = self.lab.issuer
        return lab_pb2.LabInfo(name=issuer.lab_name, version=__version__,
                               public_key_pem=dsse.public_pem(issuer.key.public_key()))
