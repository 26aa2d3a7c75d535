"""Fixtures for labd's tests: one `store` per backend (SQLite file, PostgreSQL schema) for the store contract, and
`parts` (a lab's parts over a SQLite store with a fake clock) for the handler and scheduler tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from evalsuites import Suite, builtin_suites_dir, load_suite
from labd.catalog import register_suite
from labd.clock import FakeClock
from labd.scheduler.health import DeviceHealth
from labd.scheduler.leases import Leases
from labd.scheduler.plan import SubmitOptions, new_run
from labd.sessions import AgentSession, SessionRegistry
from labd.state.base import Store
from labd.state.factory import open_store
from labd.telemetry import LabMetrics
from pilotlab import domain as d
from pilotlab.tasks import ArtifactRef, Criterion, TaskSpec, requested

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _pg_base_url() -> str:
    return os.environ.get("PILOTLAB_PG_URL", DEFAULT_PG_URL)


def _sqlalchemy_url(base: str, schema: str) -> str:
    """postgresql://… → postgresql+psycopg://…?options=-csearch_path%3D<schema> (keeping any other query)."""
    parts = urlsplit(base)
    scheme = "postgresql+psycopg"
    query = f"options=-csearch_path%3D{schema}"
    if parts.query:
        query = f"{parts.query}&{query}"
    return urlunsplit((scheme, parts.netloc, parts.path, query, parts.fragment))


def _psycopg_url(base: str) -> str:
    parts = urlsplit(base)
    return urlunsplit(("postgresql", parts.netloc, parts.path, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The PostgreSQL base URL, checked reachable once; fails loudly unless PILOTLAB_SKIP_POSTGRES=1."""
    base = _pg_base_url()
    if os.environ.get("PILOTLAB_SKIP_POSTGRES") == "1":
        pytest.skip("PostgreSQL backend skipped: PILOTLAB_SKIP_POSTGRES=1")
    try:
        import psycopg

        with psycopg.connect(_psycopg_url(base), autocommit=True, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except Exception as e:  # noqa: BLE001 - any failure to reach the server is reported the same way
        pytest.fail(
            f"cannot reach the PostgreSQL test server at {base!r} ({type(e).__name__}: {e}). Start it "
            "(database 'test', user 'postgres', trust auth), point PILOTLAB_PG_URL at another server, "
            "or set PILOTLAB_SKIP_POSTGRES=1 to skip the PostgreSQL backend.",
            pytrace=False,
        )
    return base


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        st = open_store(f"sqlite:///{tmp_path}/lab.db")
        try:
            yield st
        finally:
            st.close()
        return

    import psycopg

    base = request.getfixturevalue("pg_server")
    schema = f"t_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_psycopg_url(base), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        st = open_store(_sqlalchemy_url(base, schema))
        try:
            yield st
        finally:
            st.close()
    finally:
        with psycopg.connect(_psycopg_url(base), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# --- the lab's parts, for handler and scheduler tests -----------------------------------------------------------
@dataclass
class Parts:
    """A lab without gRPC: a real SQLite store in a temp dir with the smoke suite registered, a fake clock, live
    sessions, metrics, device health and leases; helpers that enrol devices, connect them and queue runs."""

    store: Store
    clock: FakeClock
    sessions: SessionRegistry
    metrics: LabMetrics
    health: DeviceHealth
    leases: Leases
    suite: Suite

    def enrol(self, name: str, device_class: str = "robot", region: str = "eu", slots: int = 1,
              public_key: bytes = b"") -> d.Device:
        caps = d.Capabilities(os="Linux", arch="aarch64", cpu_cores=4, memory_bytes=8 << 30,
                              providers=["CPUExecutionProvider"], slots=slots)
        return self.store.enrol_device(name, device_class, region, {}, caps, public_key, self.clock.now_ms())

    def connect(self, dev: d.Device, slots: int = 1, running: set[str] | None = None) -> AgentSession:
        session = AgentSession(dev.id, dev.name, slots, dev.public_key, running=running or set())
        self.sessions.open(session)
        return session

    def queue(self, *devices: d.Device, select: str = "", any_device: bool = False, priority: int = 0,
              queue_timeout_s: float = 0.0) -> d.Run:
        opts = SubmitOptions(suite_id=self.suite.id, select=select, any_device=any_device, priority=priority,
                             queue_timeout_s=queue_timeout_s)
        return self.store.create_run(new_run(self.suite, list(devices), ENGINEER, opts, self.clock.now_ms()))

    def claim(self, dev: d.Device) -> tuple[d.Task, d.Attempt]:
        got = self.leases.claim(dev.id)
        assert got is not None, f"expected a queued task for {dev.name}"
        return got


ENGINEER = d.Principal(d.Role.ENGINEER, "tok-eng")
LEASE_MS = 30_000
MAX_ATTEMPTS = 3


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    clock = FakeClock()
    store = open_store(f"sqlite:///{tmp_path}/lab.db", clock)
    suite = load_suite(builtin_suites_dir() / "smoke")
    register_suite(suite, store, tmp_path / "artifacts")
    sessions = SessionRegistry()
    metrics = LabMetrics(lambda: len(sessions), store.count_tasks)
    health = DeviceHealth(store, metrics, clock)
    leases = Leases(store, sessions, health, metrics, clock, lease_ms=LEASE_MS, max_attempts=MAX_ATTEMPTS)
    try:
        yield Parts(store, clock, sessions, metrics, health, leases, suite)
    finally:
        store.close()  # type: ignore[attr-defined]


def spec_of(name: str, i: int) -> TaskSpec:
    """A task spec that differs per task (its settings and criterion), to check it round-trips exactly."""
    model = ArtifactRef(name="m", kind="model", sha256="ab" * 32, size=100 + i)
    data = ArtifactRef(name="d", kind="dataset", sha256="cd" * 32, size=7, classification="personal",
                       regions=("eu", "cn-gd"))
    return TaskSpec(name=name, scenario="offline", model=model, dataset=data,
                    settings=requested("offline", {"batch_sizes": [1, 2 + i], "min_query_count": i}),
                    criteria=(Criterion(task=name, metric="throughput_per_s", op=">=", threshold=float(i)),))
