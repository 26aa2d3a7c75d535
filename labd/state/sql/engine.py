"""The SQL store's engine and transactions: one writer at a time on SQLite (WAL), pooled connections on PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from labd.blobs import BlobStore, FsBlobs
from labd.clock import SYSTEM_CLOCK, Clock


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class SqlEngine:
    """What every part of the SQL store shares: the engine, a write transaction and a read session."""

    def __init__(self, url: str, clock: Clock = SYSTEM_CLOCK, blobs: BlobStore | None = None) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        # Result batches as blobs: the given store; else, for a SQLite file, the blobs folder beside it (labd's
        # DATA_DIR/blobs); else (PostgreSQL without a blob store) inline rows, as before revision 0006.
        self.blobs = blobs if blobs is not None else _beside_sqlite(url)
        # Only for what the Store API stamps itself (a token's creation, the queue order of a run's tasks).
        self.clock = clock
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        # SQLite has one writer: serialise writers here rather than retrying on "database is locked".
        self._write_lock = threading.RLock() if self.is_sqlite else None

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        lock = self._write_lock
        if lock is not None:
            lock.acquire()
        try:
            with Session(self.engine, expire_on_commit=False) as s, s.begin():
                yield s
        finally:
            if lock is not None:
                lock.release()

    @contextmanager
    def _core_tx(self) -> Iterator[Connection]:
        """A write transaction on a plain connection, for prepared Core statements on hot paths (no ORM session)."""
        lock = self._write_lock
        if lock is not None:
            lock.acquire()
        try:
            with self.engine.begin() as conn:
                yield conn
        finally:
            if lock is not None:
                lock.release()

    @contextmanager
    def _core_read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as s:
            yield s


def _beside_sqlite(url: str) -> BlobStore | None:
    from sqlalchemy import make_url

    database = make_url(url).database if url.startswith("sqlite") else None
    if not database or database == ":memory:":
        return None
    return FsBlobs(Path(database).resolve().parent / "blobs")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
