"""Fixtures for the labd state-store contract tests: one `store` per backend (SQLite file, PostgreSQL schema)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from labd.state.base import Store
from labd.state.factory import open_store

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
