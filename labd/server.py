"""labd's composition root: opens the store, keys and suites, starts the gRPC server and the dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from evalsuites import builtin_suites_dir
from labd.catalog import load_catalog
from labd.clock import SYSTEM_CLOCK, Clock
from labd.config import LabConfig
from labd.evidence.keys import load_or_create_signing_key
from labd.lab import Lab, ensure_admin_token
from labd.scheduler.dispatcher import Dispatcher
from labd.servicers.agent import AgentServicer
from labd.servicers.artifacts import ArtifactServicer
from labd.servicers.lab import LabServicer
from labd.state import open_store
from pilotlab.v1 import agent_pb2, agent_pb2_grpc, artifact_pb2, artifact_pb2_grpc, lab_pb2, lab_pb2_grpc

log = logging.getLogger("labd")

MAX_MESSAGE = 16 << 20
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    # Agents behind NAT keep their session alive with pings; let them.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
]
SERVICES = [
    agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name,
    artifact_pb2.DESCRIPTOR.services_by_name["ArtifactService"].full_name,
    lab_pb2.DESCRIPTOR.services_by_name["LabService"].full_name,
]


def build_lab(config: LabConfig, clock: Clock = SYSTEM_CLOCK) -> Lab:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(config.db_url, clock)
    key = load_or_create_signing_key(config.data_dir)
    ensure_admin_token(config, store)
    load_catalog(config.suite_dirs or [builtin_suites_dir()], store, config.artifacts_dir,
                 strict=bool(config.suite_dirs))
    return Lab.wire(config, store, key, clock)


async def serve(config: LabConfig) -> None:
    lab = build_lab(config)
    dispatcher = Dispatcher(lab.store, lab.sessions, lab.leases, lab.events, lab.metrics, lab.clock)
    server = grpc.aio.server(options=SERVER_OPTIONS)
    # The generated registration functions are untyped (grpc_tools writes no stubs for them).
    agent_pb2_grpc.add_AgentServiceServicer_to_server(AgentServicer(lab, dispatcher), server)  # type: ignore[no-untyped-call]
    artifact_pb2_grpc.add_ArtifactServiceServicer_to_server(ArtifactServicer(lab), server)  # type: ignore[no-untyped-call]
    lab_pb2_grpc.add_LabServiceServicer_to_server(LabServicer(lab, dispatcher), server)  # type: ignore[no-untyped-call]
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    port = server.add_insecure_port(config.listen)
    host = config.listen.rsplit(":", 1)[0]
    address = f"{host}:{port}"
    await server.start()
    for name in ["", *SERVICES]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    if config.metrics_listen:
        mhost, mport = config.metrics_listen.rsplit(":", 1)
        bound = lab.metrics.serve(mhost, int(mport))
        log.info("metrics on http://%s:%d/metrics", mhost, bound)
        _publish(config.data_dir / "metrics.addr", f"{mhost}:{bound}\n")
    _publish(config.data_dir / "labd.addr", address + "\n")
    log.info("labd listening on %s (data dir %s, db %s)", address, config.data_dir,
             config.db_url.split("@")[-1])
    print(f"labd listening on {address}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    dispatch_task = asyncio.create_task(dispatcher.run())
    await stop.wait()
    log.info("stopping: no new work, draining sessions")
    for name in ["", *SERVICES]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    dispatch_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await dispatch_task
    for sess in lab.sessions.all():
        sess.close()
    await server.stop(grace=5)
    lab.store.close()  # type: ignore[attr-defined]
    log.info("stopped")


def _publish(path: Path, text: str) -> None:
    """Write a file others poll for, atomically: a reader sees no file or the whole address, never an empty one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
