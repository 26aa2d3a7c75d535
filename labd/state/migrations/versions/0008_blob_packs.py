"""Result batches stored together: a batch's blob may lie in an append-only pack file (labd.blobs.FsBlobs packs,
DATA_DIR/blobs/packs/*.pack), found through its location, `result_batches.blob_at` ('' for a blob that is a file of
its own or an object in S3, found by its sha256 alone, and for inline rows).

Revision ID: 0008_blob_packs
Revises: 0007_lab_meta
Create Date: 2026-12-02

The upgrade adds the column and moves no data. The downgrade copies each packed blob out into a file of its own
(DATA_DIR/blobs/ab/cdef…, what 0006..0007 read), from PILOTLAB_BLOB_DIR or else the blobs folder beside a SQLite
database, each checked against its sha256; it stops, changing nothing in the database, when one cannot be read.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0008_blob_packs"
down_revision: str | None = "0007_lab_meta"
branch_labels: str | None = None
depends_on: str | None = None

_AT = re.compile(r"^(packs/[0-9a-f]+\.pack):(\d+):(\d+)$")


def upgrade() -> None:
    with op.batch_alter_table("result_batches") as batch:
        batch.add_column(sa.Column("blob_at", sa.String(), nullable=False, server_default=""))


def _blob_dir(conn: sa.Connection) -> Path | None:
    if os.environ.get("PILOTLAB_BLOB_DIR"):
        return Path(os.environ["PILOTLAB_BLOB_DIR"])
    if conn.dialect.name == "sqlite" and conn.engine.url.database:
        return Path(conn.engine.url.database).resolve().parent / "blobs"
    return None


def _read_packed(folder: Path, at: str) -> bytes:
    m = _AT.match(at)
    if m is None:
        return b""
    try:
        with (folder / m.group(1)).open("rb") as f:
            f.seek(int(m.group(2)))
            return f.read(int(m.group(3)))
    except OSError:
        return b""


def _write_file(folder: Path, digest: str, data: bytes) -> None:
    final = folder / digest[:2] / digest[2:]
    if final.is_file():
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{uuid.uuid4().hex}"
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)


def downgrade() -> None:
    conn = op.get_bind()
    found = conn.execute(sa.text("SELECT attempt_id, seq, sha256, blob_at FROM result_batches "
                                 "WHERE blob_at <> ''")).all()
    folder = _blob_dir(conn) if found else None
    for attempt_id, seq, digest, at in found:
        data = _read_packed(folder, at) if folder else b""
        if hashlib.sha256(data).hexdigest() != digest:
            raise RuntimeError(f"cannot downgrade: the blob {digest} of result batch {seq} of attempt {attempt_id} "
                               f"is not readable at {at} in {folder or 'an unknown folder'}; set PILOTLAB_BLOB_DIR "
                               "to the lab's DATA_DIR/blobs")
        assert folder is not None
        _write_file(folder, digest, data)
    with op.batch_alter_table("result_batches") as batch:
        batch.drop_column("blob_at")
