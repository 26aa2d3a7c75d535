"""Alembic's environment for labd: migrates the connection that labd.state.migrate hands over (no alembic.ini)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

import labd.state.tables  # noqa: F401 - registers labd's tables in SQLModel.metadata, autogenerate's target

connection = context.config.attributes.get("connection")
if context.is_offline_mode() or not isinstance(connection, Connection):
    raise RuntimeError("labd's migrations run online, on a connection from labd.state.migrate "
                       "(python -m labd.state.migrate upgrade URL), not from the alembic command line")

# Batch mode: SQLite cannot ALTER most things, so Alembic copies such a table into its new shape.
# Transactional DDL on SQLite too: migrate() runs inside one BEGIN IMMEDIATE transaction, so all revisions
# commit together or not at all (begin_transaction below is a no-op inside it).
context.configure(connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True,
                  compare_type=True, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
