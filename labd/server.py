"""labd's composition root: opens the store, keys and suites, starts the gRPC server and the dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from evalsuites import builtin_suites_dir
from labd import gcpace
from labd.blobs import BlobStore, open_blobs
from labd.catalog import check_suite_dirs, load_catalog
from labd.clock import SYSTEM_CLOCK, Clock
from labd.config import LabConfig, StartupError
from labd.evidence.keys import key_id, load_or_create_signing_key
from labd.hints import HintHandlers, Hints, HintsUnavailable
from labd.lab import Lab, ensure_admin_token
from labd.scheduler.dispatcher import Dispatcher
from labd.servicers.agent import AgentServicer
from labd.servicers.artifacts import ArtifactServicer
from labd.servicers.decoding import UndecodableRequests
from labd.servicers.lab import LabServicer
from labd.state import Store, open_store
from pilotlab.instance import DirUnusable, claim_dir
from pilotlab.tls import TlsError, is_loopback
from pilotlab.v1 import agent_pb2, agent_pb2_grpc, artifact_pb2, artifact_pb2_grpc, lab_pb2, lab_pb2_grpc

if TYPE_CHECKING:  # aiohttp is imported only when the web console is asked for
    from labd.web import WebConsole

log = logging.getLogger("labd")

# Per-message limits; gRPC refuses a bigger message with RESOURCE_EXHAUSTED before any handler sees it. What labd
# receives is small (a result batch of 4096 samples is about 200 KB); what it sends is at most a 4 MiB artifact
# chunk, a 1 MiB report chunk, or a listing. The agent's channel (agents/lab_client.py) uses the same two figures.
MAX_RECEIVE_MESSAGE = 8 << 20
MAX_SEND_MESSAGE = 16 << 20
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_RECEIVE_MESSAGE),
    ("grpc.max_send_message_length", MAX_SEND_MESSAGE),
    # Agents behind NAT keep their session alive with pings; let them.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    # One labd per listen address: with SO_REUSEPORT a second labd would bind too and the kernel would split
    # the clients between the two labs.
    ("grpc.so_reuseport", 0),
    # Calls the server has received and asyncio not yet taken up: gRPC core refuses them at random past 1,000 and
    # all past 3,000, which a fleet reconnecting at once (a labd restart, a replica's agents moving) exceeds while
    # labd opens sessions; the agents saw "Internal error from Core". A pending call costs a few KB.
    ("grpc.server.max_pending_requests", 20_000),
    ("grpc.server.max_pending_requests_hard_limit", 50_000),
]
SERVICES = [
    agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name,
    artifact_pb2.DESCRIPTOR.services_by_name["ArtifactService"].full_name,
    lab_pb2.DESCRIPTOR.services_by_name["LabService"].full_name,
]


def build_lab(config: LabConfig, clock: Clock = SYSTEM_CLOCK) -> Lab:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    key = load_or_create_signing_key(config.data_dir, config.signing_key)
    store = _open_store(config.db_url, clock, _blob_store(config))
    signs_with = store.claim_meta("signing_key", key_id(key))  # the first labd on the database sets the lab's key
    if signs_with != key_id(key):
        store.close()  # type: ignore[attr-defined]
        raise StartupError(f"this database's lab signs its reports with key {signs_with[:16]}…, and this labd's key "
                           f"({config.signing_key or config.data_dir / 'signing_key.pem'}) is {key_id(key)[:16]}…: "
                           "give every replica the lab's key with --signing-key")
    ensure_admin_token(config, store, clock)
    load_catalog(config.suite_dirs or [builtin_suites_dir()], store, config.artifacts_dir,
                 strict=bool(config.suite_dirs))
    return Lab.wire(config, store, key, clock)


def _blob_store(config: LabConfig) -> BlobStore:
    """Where result batches go: --blobs (a folder every replica shares, or s3://BUCKET/PREFIX) or DATA_DIR/blobs;
    an object store is checked now (reachable, bucket there, key may write), one line when it is not."""
    return open_blobs(config.blobs, config.data_dir)


def claim_sqlite(db_url: str) -> int | None:
    """Hold a SQLite database for this labd: SQLite serves one labd, and a second one on the same file (from
    another --data-dir) is refused with a line saying so. None for other databases."""
    from sqlalchemy import make_url

    if not db_url.startswith("sqlite"):
        return None
    database = make_url(db_url).database
    if not database or database == ":memory:":
        return None
    path = Path(database).resolve()
    try:
        return claim_dir(path.parent, f"{path.name}.labd.lock", "--db", "labd",
                         "labd{pid}: a SQLite database serves one labd; stop that one, or run several replicas on "
                         "PostgreSQL (--db postgresql+psycopg://…)")
    except DirUnusable as e:
        raise StartupError(str(e).replace(f"--db {path.parent} is", f"--db {path} is", 1)) from None


def claim_data_dir(data_dir: Path) -> int:
    """Hold data_dir for this process (one labd per data dir); raises StartupError when it cannot."""
    try:
        return claim_dir(data_dir, "labd.lock", "--data-dir", "labd",
                         "labd{pid}; stop it or choose another --data-dir")
    except DirUnusable as e:
        raise StartupError(str(e)) from None


def _open_store(url: str, clock: Clock, blobs: BlobStore) -> Store:
    from sqlalchemy import make_url
    from sqlalchemy.exc import OperationalError

    try:
        return open_store(url, clock, blobs)
    except OperationalError as e:
        reason = " ".join(str(e.orig or e).split("\n")[0].split())
        shown = make_url(url).render_as_string(hide_password=True)
        raise StartupError(f"cannot open the database {shown} ({reason}); "
                           "check --db and that the database server is running and reachable") from None


def _address_in_use(what: str, flag: str) -> StartupError:
    return StartupError(f"{what} is already in use (another labd, or another program); "
                        f"stop it or choose another {flag}")


def _check_bindable(address: str, flag: str) -> None:
    """Fail early, before anything is opened or logged, when address cannot be listened on."""
    host, _, port = address.rpartition(":")
    try:
        infos = socket.getaddrinfo(host.strip("[]") or None, int(port), type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (ValueError, OSError) as e:
        raise StartupError(f"cannot listen on {address} ({e}); choose another {flag} (HOST:PORT)") from None
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(sockaddr)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise _address_in_use(address, flag) from None
            raise StartupError(f"cannot listen on {address} ({e.strerror}); choose another {flag}") from None


def _server_credentials(config: LabConfig) -> grpc.ServerCredentials | None:
    """The gRPC port's TLS credentials, checked now; None for plaintext, which must be loopback or --insecure."""
    if config.tls is None:
        if not is_loopback(config.listen) and not config.insecure:
            raise StartupError(f"--listen {config.listen} is reachable from other machines and no TLS is configured: "
                               "give --tls-cert and --tls-key, or --insecure to let tokens and results cross the "
                               "network in plaintext")
        return None
    try:
        return config.tls.credentials()
    except TlsError as e:
        raise StartupError(str(e)) from None


def _bind(server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None) -> int:
    try:
        if credentials is not None:
            return int(server.add_secure_port(address, credentials))
        return int(server.add_insecure_port(address))
    except RuntimeError:
        _check_bindable(address, "--listen")  # says why, when it can tell
        raise _address_in_use(address, "--listen") from None


async def serve(config: LabConfig) -> None:
    if config.threads < 0:
        raise StartupError(f"--threads {config.threads}: give a positive number of worker threads, or 0 for the "
                           "default")
    # asyncio.to_thread's pool: every blocking call of labd (the store, verification) runs on it.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(config.worker_threads(), thread_name_prefix="labd-worker"))
    lock_fd = claim_data_dir(config.data_dir)
    db_lock_fd = claim_sqlite(config.db_url)
    check_suite_dirs(config.suite_dirs)
    credentials = _server_credentials(config)
    _check_bindable(config.listen, "--listen")
    if config.metrics_listen:
        _check_bindable(config.metrics_listen, "--metrics-listen")
    if config.web_listen:
        from labd.web import check_web_listen

        check_web_listen(config)
        _check_bindable(config.web_listen, "--web-listen")
    server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=[UndecodableRequests()])
    # Held from here on: no second labd can take the port while this one starts.
    port = _bind(server, config.listen, credentials)
    lab = build_lab(config)
    hints = Hints(config.nats_url if lab.store.replicated else None, lab.store.namespace())
    if config.nats_url and not lab.store.replicated:
        log.warning("--nats ignored: a SQLite database serves one labd, which needs no hints")
    dispatcher = Dispatcher(lab.store, lab.sessions, lab.leases, lab.events, lab.metrics, lab.clock, hints=hints)
    try:
        await hints.start(HintHandlers(work=dispatcher.kick, cancel=dispatcher.cancel_hinted,
                                       run=lambda run_id: lab.events.notify(run_id, hinted=True)))
    except HintsUnavailable as e:
        raise StartupError(str(e)) from None
    if hints.enabled:
        lab.events.on_change = hints.run
    if lab.store.replicated and not config.blobs:
        log.warning("result blobs go to %s, which no other replica can read: if this lab runs several replicas, give "
                    "each the same --blobs (a shared folder or s3://BUCKET/PREFIX)", config.data_dir / "blobs")
    if lab.store.replicated:
        log.info("replica on PostgreSQL %s: dispatches to the agents connected here; expired leases and queue "
                 "timeouts run on the replica that leads%s", lab.store.namespace(),
                 "; hints over NATS" if hints.enabled else "; no --nats: other replicas' work seen by polling")
    # The generated registration functions are untyped (grpc_tools writes no stubs for them).
    agent_pb2_grpc.add_AgentServiceServicer_to_server(AgentServicer(lab, dispatcher), server)  # type: ignore[no-untyped-call]
    artifact_pb2_grpc.add_ArtifactServiceServicer_to_server(ArtifactServicer(lab), server)  # type: ignore[no-untyped-call]
    lab_pb2_grpc.add_LabServiceServicer_to_server(LabServicer(lab, dispatcher), server)  # type: ignore[no-untyped-call]
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    host = config.listen.rsplit(":", 1)[0]
    address = f"{host}:{port}"
    if config.metrics_listen:
        mhost, mport = config.metrics_listen.rsplit(":", 1)
        try:
            bound = lab.metrics.serve(mhost, int(mport))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise _address_in_use(config.metrics_listen, "--metrics-listen") from None
            raise StartupError(f"cannot listen on {config.metrics_listen} ({e.strerror}); "
                               "choose another --metrics-listen") from None
        log.info("metrics on http://%s:%d/metrics", mhost, bound)
        _publish(config.data_dir / "metrics.addr", f"{mhost}:{bound}\n")
    web = await _start_web(config, lab, dispatcher) if config.web_listen else None
    await server.start()
    for name in ["", *SERVICES]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    _publish(config.data_dir / "labd.addr", address + "\n")
    log.info("labd listening on %s (data dir %s, db %s)", address, config.data_dir,
             config.db_url.split("@")[-1])
    if config.tls is not None:
        log.info("gRPC speaks %s", config.tls.describe())
    elif is_loopback(config.listen):
        log.warning("gRPC speaks plaintext (loopback only); give --tls-cert and --tls-key to serve other machines")
    else:
        log.warning("gRPC speaks PLAINTEXT on %s (--insecure): tokens and results cross the network unencrypted",
                    address)
    print(f"labd listening on {address}" + (" (TLS)" if config.tls is not None else ""), flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    dispatch_task = asyncio.create_task(dispatcher.run())
    collections = gcpace.pace()  # full garbage collections once a minute, not whenever they fire
    await stop.wait()
    collections.cancel()
    log.info("stopping: no new work, draining sessions")
    for name in ["", *SERVICES]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    if web is not None:
        await web.stop()
    dispatch_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await dispatch_task
    await hints.close()
    await asyncio.to_thread(dispatcher.close)  # another replica takes the lead at once
    for sess in lab.sessions.all():
        sess.close()
    await server.stop(grace=5)
    lab.store.close()  # type: ignore[attr-defined]
    log.info("stopped")
    if db_lock_fd is not None:
        os.close(db_lock_fd)
    os.close(lock_fd)


async def _start_web(config: LabConfig, lab: Lab, dispatcher: Dispatcher) -> WebConsole:
    """The web console on --web-listen (labd.web), its bound address published to DATA_DIR/web.addr."""
    from labd.web import WebConsole

    assert config.web_listen
    console = WebConsole(lab, dispatcher, config.web_listen, config.tls)
    try:
        bound = await console.start()
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise _address_in_use(config.web_listen, "--web-listen") from None
        raise StartupError(f"cannot listen on {config.web_listen} ({e.strerror}); "
                           "choose another --web-listen") from None
    _publish(config.data_dir / "web.addr", bound + "\n")
    return console


def _publish(path: Path, text: str) -> None:
    """Write a file others poll for, atomically: a reader sees no file or the whole address, never an empty one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
