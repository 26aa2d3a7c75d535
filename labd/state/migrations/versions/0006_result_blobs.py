"""Result batches become immutable blobs addressed by their sha256 (the bytes the device signed, kept by
labd.blobs in DATA_DIR/blobs); result_batches keeps their index: attempt, seq, kind, n, signature and the sha256.

Revision ID: 0006_result_blobs
Revises: 0005_audit_log
Create Date: 2026-12-01

Rows written before this revision keep their samples inline in `data` and are read as they are (sha256 = ''): the
upgrade moves no data, so it needs no access to the blob folder and is as quick on a large lab as on an empty one.
The downgrade puts every blob's samples back inline (the columns are the blob's last 48·n bytes), reading the blobs
from PILOTLAB_BLOB_DIR, or else from the blobs folder beside a SQLite database; it stops, changing nothing, when a
blob cannot be read.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0006_result_blobs"
down_revision: str | None = "0005_audit_log"
branch_labels: str | None = None
depends_on: str | None = None

ROW_BYTES = 48  # index, sample_index, t_ns, value, aux (int64) and fvalue (float64) per sample


def upgrade() -> None:
    with op.batch_alter_table("result_batches") as batch:
        batch.add_column(sa.Column("sha256", sa.String(), nullable=False, server_default=""))


def _blob_dir(conn: sa.Connection) -> Path | None:
    if os.environ.get("PILOTLAB_BLOB_DIR"):
        return Path(os.environ["PILOTLAB_BLOB_DIR"])
    if conn.dialect.name == "sqlite" and conn.engine.url.database:
        return Path(conn.engine.url.database).resolve().parent / "blobs"
    return None


def downgrade() -> None:
    conn = op.get_bind()
    found = conn.execute(sa.text("SELECT attempt_id, seq, n, sha256 FROM result_batches WHERE sha256 <> ''")).all()
    folder = _blob_dir(conn) if found else None
    for attempt_id, seq, n, digest in found:
        path = folder / digest[:2] / digest[2:] if folder else None
        try:
            data = path.read_bytes() if path else b""
        except OSError:
            data = b""
        if hashlib.sha256(data).hexdigest() != digest or len(data) < ROW_BYTES * n:
            raise RuntimeError(f"cannot downgrade: the blob {digest} of result batch {seq} of attempt {attempt_id} "
                               f"is not readable in {folder or 'an unknown folder'}; set PILOTLAB_BLOB_DIR to the "
                               "lab's DATA_DIR/blobs")
        conn.execute(sa.text("UPDATE result_batches SET data = :d WHERE attempt_id = :a AND seq = :s"),
                     {"d": data[len(data) - ROW_BYTES * n:], "a": attempt_id, "s": seq})
    with op.batch_alter_table("result_batches") as batch:
        batch.drop_column("sha256")
