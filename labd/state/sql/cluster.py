"""What several labd replicas on one database share beyond rows: named locks and leadership (PostgreSQL advisory
locks, released by the server when the holder's connection ends, so a killed replica frees them), the lab facts
every replica must agree on (lab_meta), and the database's name for the subjects of the replicas' wake-up hints.

On SQLite there is one labd per database (labd/server.py holds the file), so a lock is a lock of this process and
this labd always leads."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from labd.state.sql.engine import SqlEngine
from labd.state.tables import LabMetaRow

log = logging.getLogger("labd.cluster")


class Leadership:
    """One named single-writer duty: `held()` is True while this labd holds it. On PostgreSQL it is a session
    advisory lock on a connection kept for it: taken when free, kept while the connection answers, lost (and
    released by the server) when the connection or the process ends, then taken by another replica's next try."""

    def __init__(self, engine: Engine | None, key: int, name: str) -> None:
        self._engine, self._key, self.name = engine, key, name
        self._conn: Connection | None = None

    def held(self) -> bool:
        if self._engine is None:
            return True  # SQLite: the only labd on its database
        try:
            if self._conn is None:
                conn = self._engine.connect()
                got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key}).scalar())
                conn.commit()
                if not got:
                    conn.close()
                    return False
                self._conn = conn
                log.info("this labd now leads %s", self.name)
                return True
            self._conn.execute(text("SELECT 1"))
            self._conn.commit()
            return True
        except Exception as e:  # the connection is gone, and with it the lock: another replica takes over
            if self._conn is not None:
                log.warning("lost the lead of %s (%s); another replica takes it over", self.name,
                            str(e).splitlines()[0])
            self._drop()
            return False

    def release(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
            self._conn.commit()
            self._conn.close()
        except Exception:
            self._drop()
        self._conn = None

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.invalidate()
                self._conn.close()
            except Exception:  # already unusable: nothing to return to the pool
                log.debug("closing the lost leader connection failed", exc_info=True)
        self._conn = None


class ClusterSql(SqlEngine):
    _locks_guard = threading.Lock()

    def namespace(self) -> str:
        """This database's name among others on the same server (its database and schema, or the SQLite file),
        as 16 hex digits: the lock keys and hint subjects of the replicas on it."""
        ns: str | None = getattr(self, "_namespace", None)
        if ns is None:
            if self.is_sqlite:
                basis = f"sqlite:{self.engine.url.database}"
            else:
                with self.engine.connect() as c:
                    db, schema = c.execute(text("SELECT current_database(), current_schema()")).one()
                basis = f"postgresql:{db}:{schema}"
            ns = hashlib.sha256(basis.encode()).hexdigest()[:16]
            self._namespace = ns
        return ns

    def _lock_key(self, name: str) -> int:
        digest = hashlib.sha256(f"pilotlab:{self.namespace()}:{name}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def _local_lock(self, name: str) -> threading.Lock:
        with self._locks_guard:
            locks: dict[str, threading.Lock] = self.__dict__.setdefault("_named_locks", {})
            return locks.setdefault(name, threading.Lock())

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        with self._local_lock(name):
            if self.is_sqlite:
                yield
                return
            key, conn, clean = self._lock_key(name), self.engine.connect(), False
            try:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
                    clean = True
            finally:
                if not clean:  # a connection whose lock state is unknown goes, and its locks with it
                    conn.invalidate()
                conn.close()

    def leadership(self, name: str) -> Leadership:
        return Leadership(None if self.is_sqlite else self.engine, 0 if self.is_sqlite else self._lock_key(name),
                          name)

    @property
    def replicated(self) -> bool:
        return not self.is_sqlite

    def claim_meta(self, key: str, value: str) -> str:
        table = LabMetaRow.__table__  # type: ignore[attr-defined]
        ins = (sqlite_insert if self.is_sqlite else pg_insert)(table).values(key=key, value=value)
        with self._core_tx() as c:
            c.execute(ins.on_conflict_do_nothing(index_elements=["key"]))
            return str(c.execute(text("SELECT value FROM lab_meta WHERE key = :k"), {"k": key}).scalar_one())

    def cancelled_among(self, attempt_ids: list[str]) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        with self._core_read() as c:
            for i in range(0, len(attempt_ids), 500):
                part = attempt_ids[i:i + 500]
                q = text("SELECT id, reason FROM attempts WHERE status = 'cancelled' AND id IN :ids").bindparams(
                    bindparam("ids", expanding=True))
                found.extend((str(a), str(r or "")) for a, r in c.execute(q, {"ids": part}))
        return found

    def mark_stale_offline(self, before_ms: int) -> int:
        with self._core_tx() as c:
            r = c.execute(text("UPDATE devices SET status = 'offline' WHERE status = 'online' AND last_seen_ms < :t"),
                          {"t": before_ms})
            return int(r.rowcount or 0)
