"""Schema migrations (labd/state/migrate.py) on SQLite and PostgreSQL: old databases upgrade in place, losslessly."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from alembic import command
from sqlalchemy import MetaData, event, inspect, select, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from labd.blobs import FsBlobs
from labd.state import migrate as m
from labd.state.base import AuditEntry
from labd.state.factory import open_store
from labd.state.sql import SqlStore
from pilotlab import domain as d
from tests.labd.conftest import spec_of

NOW = 1_700_000_000_000
BIG_NS = 1_700_000_000_000_000_000
WRITES = re.compile(r"^\s*(CREATE|ALTER|DROP|INSERT|UPDATE|DELETE)\b", re.IGNORECASE)


# --- a database per test: a SQLite file, or a fresh PostgreSQL schema (as conftest.py's `store`) ------------
def _pg_urls(base: str, schema: str) -> tuple[str, str]:
    """(psycopg URL, SQLAlchemy URL whose search_path is schema) for the server at base."""
    p = urlsplit(base)
    query = f"{p.query}&" if p.query else ""
    return (urlunsplit(("postgresql", p.netloc, p.path, p.query, p.fragment)),
            urlunsplit(("postgresql+psycopg", p.netloc, p.path, f"{query}options=-csearch_path%3D{schema}", "")))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/lab.db"
        return
    import psycopg

    schema = f"m_{uuid.uuid4().hex[:8]}"
    plain, url = _pg_urls(request.getfixturevalue("pg_server"), schema)  # fails, not skips, when the server is down
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield url
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# --- what the release before migrations did, and real rows through the store API --------------------------
def baseline() -> MetaData:
    return m.scripts().get_revision(m.BASELINE).module.baseline_metadata()  # type: ignore[union-attr,no-any-return]


def pre_migration_store(url: str) -> SqlStore:
    """A store as the release before migrations opened it: SqlStore plus create_all of its (baseline) tables."""
    store = SqlStore(url)
    baseline().create_all(store.engine)
    return store


def pre_migration_db_with_rows(url: str) -> dict[str, Any]:
    """A database as the release before migrations left it, holding real rows written by the store: filled at
    head, taken down to the baseline schema (later columns dropped), its alembic_version removed. Returns what
    the store read back before the downgrade."""
    m.migrate(url)
    store = SqlStore(url)
    try:
        before = fill(store)
    finally:
        store.close()
    with m.connect(url) as conn:
        command.downgrade(m.alembic_config(conn), m.BASELINE)
        conn.execute(text("DROP TABLE alembic_version"))
    return before


def fill(store: SqlStore) -> dict[str, Any]:
    """A row in every table: token, device, suite, artifact, two runs (one finished), attempt, batches, report."""
    caps = d.Capabilities(os="Linux", arch="aarch64", cpu_cores=4, providers=["CPUExecutionProvider"],
                          energy_sensors=[d.EnergySensor(kind="rapl", name="pkg", path="/sys/x", readable=True)],
                          slots=2, cpu_flags=["asimd"])
    dev = store.enrol_device("bench-1", "robot", "eu", {"rack": "1"}, caps, b"\x00pk\xff", NOW)
    token_hash = "ab" * 32
    token_id = store.create_token(d.Role.DEVICE, token_hash, device_id=dev.id)
    store.put_suite(d.SuiteRecord(id="s", version="1.2.0", title="Suite", digest="sha256:s", suite_json='{"a":1}'))
    store.put_artifact(d.ArtifactRecord(sha256="ef" * 32, size=2**40, name="m.onnx", kind="model", path="/a/m"))
    runs = []
    for r, timeout in ((0, 0), (1, 60_000)):
        rid = f"run-{r}"
        tasks = [d.Task(id=f"{rid}-t{i}", run_id=rid, name=f"t{i}", device_id=dev.id, device_name=dev.name,
                        status=d.Status.QUEUED, spec=spec_of(f"t{i}", i)) for i in range(2)]
        runs.append(store.create_run(d.Run(id=rid, suite_id="s", suite_version="1.2.0", suite_digest="sha256:s",
                                           status=d.Status.QUEUED, priority=r, submitted_ms=NOW + r,
                                           submitted_by="tok-eng", tasks=tasks, queue_timeout_ms=timeout)))
    claimed = store.claim_next_task(dev.id, NOW + 10, 30_000)
    assert claimed is not None
    task, att = claimed
    for seq in range(3):
        idx = list(range(seq * 4, seq * 4 + 4))
        store.add_result_batch(d.ResultBatch(attempt_id=att.id, seq=seq, kind="latency", index=idx,
                                             sample_index=[i * 7 for i in idx], t_ns=[BIG_NS + i for i in idx],
                                             value=[2**40 + i for i in idx], signature=b"sig" + bytes([seq]),
                                             fvalue=[i / 3 for i in idx]), NOW + 20)
    fin = d.AttemptFinish(attempt_id=att.id, outcome=d.Outcome.OK, batches=3, effective_settings={"threads": 2},
                          environment={"kernel": "6.1"}, execution_provider="CPUExecutionProvider",
                          providers_used=["CPUExecutionProvider"], phases={"warmup_ms": 12})
    store.finish_attempt(fin, task_status=d.Status.COMPLETED, verdict=d.Verdict.PASS, metrics={"p99_ms": 1.5},
                         reason="", now_ms=NOW + 30)
    store.append_report(d.ReportRecord(id="rep-1", run_id=task.run_id, digest="sha256:r",
                                       issued_ms=NOW + 40, replaces=None, log_index=0, bundle=b""), "cd" * 32, NOW)
    store.set_report_bundle("rep-1", b"\x01bundle\x00")
    return {"device": store.get_device(dev.id), "token": store.find_token(token_hash), "token_id": token_id,
            "runs": [store.get_run(r.id) for r in runs], "suites": store.list_suites(),
            "artifact": store.get_artifact("ef" * 32), "attempt": store.get_attempt(att.id),
            "samples": {k: v.tolist() for k, v in store.samples(att.id, "latency").items()},
            "batches": store.batches(att.id), "report": store.latest_report(task.run_id),
            "leaves": store.log_leaves(), "tasks": store.count_tasks()}


def view(store: SqlStore, before: dict[str, Any]) -> dict[str, Any]:
    """The same reads as fill() returned, from another store."""
    att = before["attempt"]
    return {"device": store.get_device(att.device_id), "token": store.find_token("ab" * 32),
            "token_id": before["token_id"], "runs": [store.get_run(r.id) for r in before["runs"]],
            "suites": store.list_suites(), "artifact": store.get_artifact("ef" * 32),
            "attempt": store.get_attempt(att.id),
            "samples": {k: v.tolist() for k, v in store.samples(att.id, "latency").items()},
            "batches": store.batches(att.id), "report": store.latest_report(before["report"].run_id),
            "leaves": store.log_leaves(), "tasks": store.count_tasks()}


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every baseline table, column by column, in primary-key order."""
    with engine.connect() as conn:
        return {name: [tuple(r) for r in conn.execute(select(t).order_by(*t.primary_key.columns))]
                for name, t in baseline().tables.items()}


def unblobbed(rows: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    """A dump without result_batches.data (inline samples, or empty for a blob: revision 0006 changes which)."""
    return {**rows, "result_batches": [r[:-1] for r in rows["result_batches"]]}


def schema(engine: Engine) -> dict[str, Any]:
    insp = inspect(engine)
    return {t: ([(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(t)],
                sorted((str(i["name"]), tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(t)))
            for t in insp.get_table_names()}


def capture_writes() -> tuple[list[str], Any]:
    seen: list[str] = []

    def listener(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if WRITES.match(statement):
            seen.append(statement)

    event.listen(Engine, "before_cursor_execute", listener)
    return seen, listener


# --- the tests -----------------------------------------------------------------------------------------------
def test_pre_migration_database_is_upgraded_in_place_with_every_row(db_url: str) -> None:
    before = pre_migration_db_with_rows(db_url)
    old = SqlStore(db_url)
    try:
        assert not inspect(old.engine).has_table("alembic_version")
        assert set(inspect(old.engine).get_table_names()) == set(baseline().tables)
        rows = dump(old.engine)
    finally:
        old.close()
    assert all(rows.values()), f"every table holds rows: {[t for t, r in rows.items() if not r]}"

    new = open_store(db_url)
    assert isinstance(new, SqlStore)
    try:
        assert dump(new.engine) == rows
        assert view(new, before) == before
        with m.connect(db_url) as conn:
            assert m.current(conn) == m.head()
            assert m.schema_drift(conn) == []
        assert "ix_tasks_expiry" in {i["name"] for i in inspect(new.engine).get_indexes("tasks")}
        shape = schema(new.engine)
    finally:
        new.close()

    # Opening again is a no-op: no DDL, no writes, same revision, same schema and rows.
    seen, listener = capture_writes()
    try:
        again = m.migrate(db_url)
        store = open_store(db_url)
    finally:
        event.remove(Engine, "before_cursor_execute", listener)
    assert isinstance(store, SqlStore)
    try:
        assert again == m.Migration(before=m.head(), after=m.head(), adopted=False) and not again.changed
        assert seen == []
        assert schema(store.engine) == shape and dump(store.engine) == rows
        # The migrated store keeps working: the queued task of run-1 expires through the new index.
        assert store.expire_queued(NOW + 2 * 60_000) == ["run-1"]
    finally:
        store.close()


def test_adoption_is_reported_and_later_revisions_run(db_url: str) -> None:
    pre_migration_store(db_url).close()
    result = m.migrate(db_url)
    assert result == m.Migration(before=None, after=m.head(), adopted=True) and result.changed


def test_fresh_database_migrates_to_head_and_matches_tables(db_url: str) -> None:
    result = m.migrate(db_url)
    assert result == m.Migration(before=None, after=m.head(), adopted=False)
    with m.connect(db_url) as conn:
        assert m.current(conn) == m.head()
        assert set(inspect(conn).get_table_names()) == set(SQLModel.metadata.tables) | {"alembic_version"}
        assert m.schema_drift(conn) == []  # what `alembic check` compares: migrations == tables.py
    assert m.migrate(db_url).before == m.head()


def test_downgrade_to_baseline_and_back(db_url: str) -> None:
    m.migrate(db_url)
    with m.connect(db_url) as conn:
        command.downgrade(m.alembic_config(conn), m.BASELINE)
        assert m.current(conn) == m.BASELINE
        drift = m.schema_drift(conn)
        # compare_metadata: ("add_index", Index), ("add_column", schema, table, Column) and ("add_table", Table)
        assert sorted((op[0], op[-1].name) for op in drift) == [
            ("add_column", "blob_at"), ("add_column", "expires_ms"), ("add_column", "issued_by"),
            ("add_column", "max_uses"), ("add_column", "observations_json"), ("add_column", "revoked_ms"),
            ("add_column", "sha256"), ("add_column", "uses"),
            ("add_index", "ix_audit_log_target"), ("add_index", "ix_tasks_expiry"),
            ("add_index", "ix_tokens_issued_by"), ("add_table", "audit_log"), ("add_table", "lab_meta")]
    assert m.migrate(db_url) == m.Migration(before=m.BASELINE, after=m.head(), adopted=False)
    with m.connect(db_url) as conn:
        assert m.schema_drift(conn) == []


def test_audit_log_revision_adds_an_append_only_table_and_removes_it_whole(db_url: str) -> None:
    """0005 adds audit_log (empty: earlier actions were not recorded) whose triggers refuse UPDATE and DELETE; its
    downgrade drops table, index and triggers and leaves every other row as it was."""
    m.migrate(db_url)
    store = SqlStore(db_url)
    try:
        fill(store)
        store.append_audit(AuditEntry(NOW, "tok-adm", "admin", "run.cancel", "run-0", "wrong suite"))
        rows = dump(store.engine)
    finally:
        store.close()
    with m.connect(db_url) as conn:
        command.downgrade(m.alembic_config(conn), "0004_token_lifecycle")
        assert not inspect(conn).has_table("audit_log")
        assert sorted((op[0], op[-1].name) for op in m.schema_drift(conn)) == [
            ("add_column", "blob_at"), ("add_column", "sha256"), ("add_index", "ix_audit_log_target"),
            ("add_table", "audit_log"), ("add_table", "lab_meta")]
    assert m.migrate(db_url) == m.Migration(before="0004_token_lifecycle", after=m.head(), adopted=False)
    store = SqlStore(db_url)
    try:
        # Going down through 0006 put the result batches' samples inline; every other value is as it was.
        assert unblobbed(dump(store.engine)) == unblobbed(rows) and store.list_audit() == []
        store.append_audit(AuditEntry(NOW + 1, "labd", "system", "device.quarantine", "bench-1", "3 errors"))
        for statement in ("UPDATE audit_log SET detail = ''", "DELETE FROM audit_log"):
            with pytest.raises(Exception, match="the audit log is append-only"), store.engine.begin() as conn:
                conn.execute(text(statement))
        assert [(e.actor, e.action, e.target, e.detail) for e in store.list_audit()] == [
            ("labd", "device.quarantine", "bench-1", "3 errors")]
    finally:
        store.close()
    with m.connect(db_url) as conn:
        assert m.schema_drift(conn) == []


def test_result_blobs_revision_reads_old_rows_and_its_downgrade_puts_blobs_inline(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """0006 moves no data: batches stored inline before it are read as they are, beside new ones stored as blobs.
    Its downgrade puts each blob's samples back inline (from PILOTLAB_BLOB_DIR), and refuses, changing nothing,
    when a blob cannot be read."""
    m.migrate(db_url)
    blobs = FsBlobs(tmp_path / "blob-store")
    store = SqlStore(db_url, blobs=blobs)
    try:
        before = fill(store)  # three batches, each a blob
        att = before["attempt"]
        with store.engine.connect() as conn:
            kept = conn.execute(text("SELECT seq, sha256, data FROM result_batches ORDER BY seq")).all()
        assert [(len(h), len(bytes(b))) for _, h, b in kept] == [(64, 0)] * 3
    finally:
        store.close()

    # The blobs lie in a pack (0008). Its downgrade copies each out into a file of its own, where 0006 and 0007
    # read them; a pack that cannot be read stops it, changing nothing.
    monkeypatch.setenv("PILOTLAB_BLOB_DIR", str(tmp_path / "blob-store"))
    (pack,) = (tmp_path / "blob-store" / "packs").glob("*.pack")
    packed = pack.read_bytes()
    pack.write_bytes(packed[:-1])
    with m.connect(db_url) as conn, pytest.raises(RuntimeError, match="PILOTLAB_BLOB_DIR"):
        command.downgrade(m.alembic_config(conn), "0007_lab_meta")
    with m.connect(db_url) as conn:
        assert m.current(conn) == m.head()
    pack.write_bytes(packed)
    with m.connect(db_url) as conn:
        command.downgrade(m.alembic_config(conn), "0007_lab_meta")
    digest = kept[0][1]
    blob = tmp_path / "blob-store" / digest[:2] / digest[2:]
    assert all((tmp_path / "blob-store" / h[:2] / h[2:]).is_file() for _, h, _ in kept)

    # A blob that cannot be read stops 0006's downgrade, which changes nothing.
    saved = blob.read_bytes()
    blob.unlink()
    with m.connect(db_url) as conn:
        command.downgrade(m.alembic_config(conn), "0006_result_blobs")
    with m.connect(db_url) as conn, pytest.raises(RuntimeError, match="PILOTLAB_BLOB_DIR"):
        command.downgrade(m.alembic_config(conn), "0005_audit_log")
    with m.connect(db_url) as conn:
        assert m.current(conn) == "0006_result_blobs"
    blob.write_bytes(saved)

    with m.connect(db_url) as conn:
        command.downgrade(m.alembic_config(conn), "0005_audit_log")
        rows = conn.execute(text("SELECT seq, n, data FROM result_batches ORDER BY seq")).all()
        assert [(s, len(bytes(b))) for s, n, b in rows] == [(s, 48 * n) for s, n, _ in rows]
    assert m.migrate(db_url).before == "0005_audit_log"
    store = SqlStore(db_url, blobs=FsBlobs(tmp_path / "elsewhere"))  # old rows need no blob
    try:
        assert view(store, before)["samples"] == before["samples"]
        assert store.batches(att.id) == before["batches"]
        # A new batch beside the old inline ones is a blob, read together with them.
        new = d.ResultBatch(attempt_id=att.id, seq=3, kind="latency", index=[12], sample_index=[0], t_ns=[1],
                            value=[5])
        assert store.add_result_batch(new, NOW) is True
        assert store.samples(att.id, "latency")["index"].tolist() == before["samples"]["index"] + [12]
    finally:
        store.close()


def test_failed_migration_changes_nothing(db_url: str) -> None:
    """All revisions run in one transaction: when one fails, the database stays as it was (SQLite too)."""
    pre_migration_db_with_rows(db_url)
    old = SqlStore(db_url)
    try:
        rows = dump(old.engine)
        with old.engine.begin() as conn:  # an object in the way of revision 0002
            conn.execute(text("CREATE INDEX ix_tasks_expiry ON runs (status)"))
        shape = schema(old.engine)
    finally:
        old.close()
    with pytest.raises(Exception, match="ix_tasks_expiry"):
        m.migrate(db_url)
    store = SqlStore(db_url)
    try:
        assert not inspect(store.engine).has_table("alembic_version")
        assert schema(store.engine) == shape and dump(store.engine) == rows
    finally:
        store.close()


def test_concurrent_starts_migrate_once(db_url: str) -> None:
    """Two labd replicas starting together on one empty database: one migrates, the other finds it done."""
    results: list[m.Migration] = []
    errors: list[BaseException] = []
    gate = threading.Barrier(2)

    def start() -> None:
        try:
            gate.wait()
            results.append(m.migrate(db_url))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted((r.before or "", r.after) for r in results) == [("", m.head()), (m.head(), m.head())]


def test_database_of_a_newer_labd_is_refused(db_url: str) -> None:
    m.migrate(db_url)
    with m.connect(db_url) as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    with pytest.raises(RuntimeError, match="newer labd"):
        m.migrate(db_url)


def test_in_memory_sqlite_is_refused() -> None:
    with pytest.raises(ValueError, match="sqlite:///PATH"):
        m.migrate("sqlite://")

