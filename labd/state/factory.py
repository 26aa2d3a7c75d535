"""Picks and opens the state backend from a database URL (sqlite:///… or postgresql+psycopg://…)."""

from __future__ import annotations

from labd.state.base import Store


def open_store(url: str) -> Store:
    """Open (and migrate) the store at url; raises ValueError for an unsupported scheme."""
    if url.startswith("sqlite") or url.startswith("postgresql"):
        from labd.state.sql import SqlStore

        return SqlStore(url)
    raise ValueError(f"unsupported database URL {url!r}; use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB")
