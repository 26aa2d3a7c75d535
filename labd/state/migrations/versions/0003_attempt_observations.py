"""Attempts keep what the device observed about a run (onnxruntime session options, energy sampling) apart from
the effective settings they used to be mixed into.

Revision ID: 0003_attempt_observations
Revises: 0002_tasks_expiry_index
Create Date: 2026-12-01

Rows written before this revision carried the observations inside effective_settings_json: "energy" moves to
observations_json.energy, and the session options (which had the settings' own names) are copied to
observations_json.session_options.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision: str = "0003_attempt_observations"
down_revision: str | None = "0002_tasks_expiry_index"
branch_labels: str | None = None
depends_on: str | None = None

SESSION_KEYS = ("intra_op_threads", "inter_op_threads", "graph_optimization")  # what onnxruntime was given


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("observations_json", sa.Text(), nullable=False, server_default="{}"))
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, effective_settings_json FROM attempts "
                                "WHERE effective_settings_json LIKE '%\"energy\"%'")).fetchall()
    for attempt_id, settings_json in rows:
        settings = json.loads(settings_json or "{}")
        energy = settings.pop("energy", {}) or {}
        session = {k: settings[k] for k in SESSION_KEYS if k in settings}  # they are settings too: kept there
        conn.execute(sa.text("UPDATE attempts SET effective_settings_json = :s, observations_json = :o WHERE id = :i"),
                     {"s": json.dumps(settings, sort_keys=True),
                      "o": json.dumps({"energy": energy, "session_options": session}, sort_keys=True),
                      "i": attempt_id})


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("observations_json")
