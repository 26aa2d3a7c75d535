"""Picks and opens the state backend from a database URL (sqlite:///… or postgresql+psycopg://…)."""

from __future__ import annotations

from labd.blobs import BlobStore
from labd.clock import SYSTEM_CLOCK, Clock
from labd.state.base import Store


def open_store(url: str, clock: Clock = SYSTEM_CLOCK, blobs: BlobStore | None = None) -> Store:
    """Open the store at url after migrating its schema to the newest revision (labd.state.migrate); raises
    ValueError for an unsupported scheme. The clock stamps what the store stamps itself (token creation, queue
    order); every other time is the caller's argument. Result batches go to blobs (labd serve: DATA_DIR/blobs;
    None: the blobs folder beside a SQLite file, or inline rows on PostgreSQL)."""
    if url.startswith("sqlite") or url.startswith("postgresql"):
        from labd.state.migrate import migrate
        from labd.state.sql import SqlStore

        migrate(url)
        return SqlStore(url, clock, blobs)
    raise ValueError(f"unsupported database URL {url!r}; use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB")
