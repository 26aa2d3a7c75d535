"""Brings a labd database to the newest schema with Alembic when labd opens it, adopting pre-migration databases."""

from __future__ import annotations

import argparse
import functools
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logging.getLogger("alembic").setLevel(logging.WARNING)  # before alembic loads: its INFO lines would bury labd's own

from alembic import command  # noqa: E402
from alembic.autogenerate import compare_metadata  # noqa: E402
from alembic.config import Config  # noqa: E402
from alembic.runtime.migration import MigrationContext  # noqa: E402
from alembic.script import ScriptDirectory  # noqa: E402
from sqlalchemy import Connection, create_engine, event, inspect, make_url, text  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

log = logging.getLogger("labd.state")

USAGE = """labd calls migrate(url) at start (labd.state.factory.open_store). For developers:
  upgrade URL          what labd does at start
  current URL          the database's revision, and the newest there is
  check URL            exit 1 when the schema differs from labd/state/tables.py
  revision URL -m MSG  autogenerate a revision from tables.py (the database at head; then review the file)"""

SCRIPTS = Path(__file__).with_name("migrations")
BASELINE = "0001_baseline"
PG_LOCK_KEY = 0x6C616264  # "labd": replicas starting together on one PostgreSQL database migrate one at a time


@dataclass(frozen=True)
class Migration:
    """What migrate() found and left behind."""

    before: str | None  # the database's revision before; None for an empty or a pre-migration database
    after: str  # its revision now: the head
    adopted: bool  # it held labd's tables but no alembic_version: made by a release before migrations

    @property
    def changed(self) -> bool:
        return self.before != self.after


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration without an alembic.ini: the scripts ship inside this package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPTS).replace("%", "%%"))
    cfg.set_main_option("file_template", "%%(rev)s")
    cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def scripts() -> ScriptDirectory:
    """The migration scripts (read once per process)."""
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    rev = scripts().get_current_head()
    if rev is None:
        raise RuntimeError(f"no migration scripts in {SCRIPTS / 'versions'}")
    return rev


def context(conn: Connection) -> MigrationContext:
    # Transactional DDL on SQLite too: connect() runs everything in one BEGIN IMMEDIATE transaction.
    return MigrationContext.configure(conn, opts={"compare_type": True, "transactional_ddl": True})


def current(conn: Connection) -> str | None:
    """The revision recorded in the database's alembic_version table; None when it has none."""
    return context(conn).get_current_revision()


def schema_drift(conn: Connection) -> list[Any]:
    """What `alembic check` would report: differences between the database and tables.py; [] when none."""
    from sqlmodel import SQLModel

    import labd.state.tables  # noqa: F401 - registers the tables

    return list(compare_metadata(context(conn), SQLModel.metadata))


@contextmanager
def connect(url: str) -> Iterator[Connection]:
    """One transaction on a private engine. On SQLite it is BEGIN IMMEDIATE: DDL commits or rolls back whole
    (pysqlite would otherwise run it outside any transaction) and other writers wait for the migration."""
    parsed = make_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite and parsed.database in (None, "", ":memory:"):
        raise ValueError(f"labd keeps its state in a file: use sqlite:///PATH, not {url!r}")
    engine = create_engine(url, poolclass=NullPool, **({"connect_args": {"timeout": 30}} if sqlite else {}))
    if sqlite:
        event.listen(engine, "connect", _sqlite_manual_begin)
        event.listen(engine, "begin", lambda c: c.exec_driver_sql("BEGIN IMMEDIATE"))
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def _sqlite_manual_begin(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # SQLAlchemy's "begin" listener emits BEGIN, for DDL too


def baseline_tables() -> set[str]:
    """The tables of the pre-migration schema (revision 0001)."""
    module = scripts().get_revision(BASELINE).module  # type: ignore[union-attr]
    return set(module.baseline_metadata().tables)


def migrate(url: str) -> Migration:
    """Upgrade the database at url to the head revision, in one transaction; a no-op when it is there already.

    A database without alembic_version that holds labd's tables was made by the release before migrations
    (SQLModel's create_all): the baseline revision keeps its tables and rows, then later revisions apply."""
    with connect(url) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
        ctx = context(conn)
        before = ctx.get_current_revision()
        found = baseline_tables() & set(inspect(conn).get_table_names()) if before is None else set()
        if before is not None and before not in {s.revision for s in scripts().walk_revisions()}:
            raise RuntimeError(f"the database is at schema revision {before!r}, which this labd does not know: a newer "
                               "labd migrated it; run that version (labd never downgrades a database by itself)")
        if found:
            log.info("adopting a database made before schema migrations (%d of labd's tables, no alembic_version)",
                     len(found))
        if before != head():
            command.upgrade(alembic_config(conn), "head")
        after = ctx.get_current_revision()
        if after is None:
            raise RuntimeError("the migrations left no revision in alembic_version")
        drift = schema_drift(conn) if found else []
        if drift:
            log.warning("the adopted database differs from labd's schema: %s", drift)
    result = Migration(before=before, after=after, adopted=bool(found))
    if result.changed:  # a new database is not news; upgrading an operator's existing one is
        log.log(logging.INFO if before is not None or found else logging.DEBUG,
                "database schema migrated from %s to %s", before or "(none)", after)
    return result


def _revision(conn: Connection, message: str) -> None:
    if current(conn) != head():
        raise SystemExit("upgrade the database to the head revision first: autogenerate compares it with tables.py")
    number = len(list(scripts().walk_revisions())) + 1
    slug = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")
    rev_id = f"{number:04d}_{slug}"[:32].rstrip("_")  # alembic_version.version_num is VARCHAR(32)
    command.revision(alembic_config(conn), message=message, autogenerate=True, rev_id=rev_id)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m labd.state.migrate", description=__doc__, epilog=USAGE,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["upgrade", "current", "check", "revision"])
    p.add_argument("url", help="database URL: sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB")
    p.add_argument("-m", "--message", default="", help="what the new revision does (revision only)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.action == "upgrade":
        print(migrate(args.url))
        return 0
    with connect(args.url) as conn:
        if args.action == "current":
            print(f"current {current(conn) or '(none)'}; head {head()}")
        elif args.action == "check":
            drift = schema_drift(conn)
            for diff in drift:
                print(diff)
            return 1 if drift else 0
        else:
            if not args.message:
                raise SystemExit("revision needs -m MESSAGE")
            _revision(conn, args.message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
