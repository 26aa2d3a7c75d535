"""Facts every labd replica on one database must agree on: `lab_meta`, a row per fact (the public key the lab
signs its reports with, written by the first labd that starts on the database).

Revision ID: 0007_lab_meta
Revises: 0006_result_blobs
Create Date: 2026-12-02

A new table, empty after the upgrade: the next labd to start records its signing key, and later replicas that
bring another key refuse to start (labd/server.py), so one lab never issues reports under two keys.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007_lab_meta"
down_revision: str | None = "0006_result_blobs"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "lab_meta",
        sa.Column("key", sa.String(), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("lab_meta")
