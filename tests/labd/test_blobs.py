"""Result batches as immutable blobs (labd.blobs, labd.state.batches): the filesystem backend, what the store keeps
of a batch, and reading batches stored inline before revision 0006 beside blobs."""

from __future__ import annotations

import errno
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update

from labd.blobs import BlobMissing, FsBlobs, open_blobs
from labd.state.batches import SignedBatch, columns, concat
from labd.state.factory import open_store
from labd.state.sql import SqlStore
from labd.state.tables import ResultBatchRow
from labd.storage import why_full
from pilotlab import domain as d
from pilotlab.samples import batch_signing_bytes
from pilotlab.v1 import agent_pb2
from tests.labd.conftest import _psycopg_url, _sqlalchemy_url, spec_of

NOW = 1_700_000_000_000


def test_fs_blobs_are_content_addressed_whole_and_checked(tmp_path: Path) -> None:
    blobs = FsBlobs(tmp_path / "blobs")
    data = b"pilotlab" * 1000
    digest = blobs.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    path = tmp_path / "blobs" / digest[:2] / digest[2:]
    assert path.read_bytes() == data and blobs.exists(digest)
    assert blobs.put(data) == digest  # the same bytes again: one blob
    assert [p.name for p in path.parent.iterdir()] == [digest[2:]]  # no temporary file left behind
    assert blobs.get(digest) == data
    with blobs.open(digest) as f:
        assert f.read() == data
    path.write_bytes(data[:-1] + b"X")
    with pytest.raises(BlobMissing, match="corrupt"):
        blobs.get(digest)
    with pytest.raises(BlobMissing, match="missing"):
        blobs.get("0" * 64)
    with pytest.raises(ValueError):
        blobs.path("../etc/passwd")
    assert isinstance(open_blobs(tmp_path / "x"), FsBlobs)
    with pytest.raises(ValueError, match="unsupported blob store"):
        open_blobs("gs://bucket/prefix")  # s3:// is S3Blobs: tests/labd/test_blobs_s3.py


def test_a_full_disk_leaves_no_partial_blob_and_reads_as_storage_full(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    blobs = FsBlobs(tmp_path / "blobs")
    data = b"x" * 4096
    digest = hashlib.sha256(data).hexdigest()

    def full(_fd: int, _data: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError) as caught:
        blobs.put(data)
    assert why_full(caught.value) == "no space left on device"
    monkeypatch.undo()
    assert not blobs.exists(digest)
    assert list((tmp_path / "blobs" / digest[:2]).iterdir()) == []
    assert blobs.put(data) == digest  # space again: the resend is stored


def _arrays(n: int, start: int = 0) -> dict[str, list[int] | list[float]]:
    idx = list(range(start, start + n))
    return {"index": idx, "sample_index": [i * 3 for i in idx], "t_ns": [10**18 + i for i in idx],
            "value": [2**40 + i for i in idx], "aux": [], "fvalue": [i / 7 for i in idx]}


def test_a_batch_from_the_wire_is_the_bytes_its_device_signed() -> None:
    arrays = _arrays(50)
    pb = agent_pb2.ResultBatch(attempt_id="att-1", seq=3, kind="latency;repeat=1", **arrays)  # type: ignore[arg-type]
    key = Ed25519PrivateKey.generate()
    signed = batch_signing_bytes("att-1", 3, "latency;repeat=1", arrays)
    wire = SignedBatch.of(pb.attempt_id, pb.seq, pb.kind, {c: getattr(pb, c) for c in arrays}, key.sign(signed))
    assert wire.payload == signed and wire.n == 50 and wire.sha256 == hashlib.sha256(signed).hexdigest()
    key.public_key().verify(wire.signature, wire.payload)
    wire.check_framing()
    dom = SignedBatch.from_domain(d.ResultBatch(attempt_id="att-1", seq=3, kind="latency;repeat=1",
                                                **arrays))  # type: ignore[arg-type]
    assert dom.payload == signed
    ints, fvalue = columns(signed, 50)
    assert ints[0].tolist() == arrays["index"] and ints[4].tolist() == [0] * 50
    assert fvalue.tolist() == arrays["fvalue"]
    with pytest.raises(ValueError, match="do not hold"):
        SignedBatch("att-1", 4, "latency;repeat=1", 50, signed).check_framing()  # another batch's bytes


def test_concat_orders_by_index_and_keeps_seq() -> None:
    a = SignedBatch.of("a", 1, "latency", _arrays(3, 3))  # type: ignore[arg-type]
    b = SignedBatch.of("a", 0, "latency", _arrays(3, 0))  # type: ignore[arg-type]
    out = concat([(1, 3, a.payload), (0, 3, b.payload)])
    assert out["index"].tolist() == list(range(6)) and out["seq"].tolist() == [0, 0, 0, 1, 1, 1]
    assert out["fvalue"].dtype == np.float64 and out["value"].dtype == np.int64
    assert {k: v.shape for k, v in concat([]).items()} == {k: (0,) for k in out}


def _claimed(store: SqlStore) -> d.Attempt:
    dev = store.enrol_device("bench-1", "robot", "eu", {}, d.Capabilities(slots=1), b"", NOW)
    task = d.Task(id="run-0-t0", run_id="run-0", name="t0", device_id=dev.id, device_name=dev.name,
                  status=d.Status.QUEUED, spec=spec_of("t0", 0))
    store.create_run(d.Run(id="run-0", suite_id="s", suite_version="1", suite_digest="sha256:s",
                           status=d.Status.QUEUED, priority=0, submitted_ms=NOW, submitted_by="tok", tasks=[task]))
    claimed = store.claim_next_task(dev.id, NOW, 30_000)
    assert claimed is not None
    return claimed[1]


def blob_location(store: SqlStore, attempt_id: str, seq: int) -> tuple[str, str]:
    """(sha256, blob_at) of a stored result batch, as its index row holds them."""
    c = ResultBatchRow.__table__.c  # type: ignore[attr-defined]
    with store.engine.connect() as conn:
        row = conn.execute(select(c.sha256, c.blob_at).where(c.attempt_id == attempt_id, c.seq == seq)).one()
    return str(row[0]), str(row[1])


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLite file, or a fresh PostgreSQL schema (as conftest.py's `store`), for a store with a blob folder."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/lab.db"
        return
    import psycopg

    base = request.getfixturevalue("pg_server")
    schema = f"b_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_psycopg_url(base), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield _sqlalchemy_url(base, schema)
    finally:
        with psycopg.connect(_psycopg_url(base), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_store_keeps_each_batch_as_one_blob_and_reads_inline_rows_beside_them(db_url: str, tmp_path: Path) -> None:
    store = open_store(db_url, blobs=FsBlobs(tmp_path / "blobs"))
    assert isinstance(store, SqlStore)
    try:
        att = _claimed(store)
        first = SignedBatch.of(att.id, 0, "latency", _arrays(4, 0), b"sig0")  # type: ignore[arg-type]
        assert store.add_signed_batch(first, NOW) is True
        assert store.add_signed_batch(first, NOW) is False
        digest, at = blob_location(store, att.id, 0)
        # One record of a pack (labd.blobs): the device-signed bytes, whole, behind their digest; the resend wrote none.
        pack = tmp_path / "blobs" / at.split(":")[0]
        assert digest == first.sha256 and pack.stat().st_size == 48 + len(first.payload)
        assert store.blobs is not None and store.blobs.get(digest, at) == first.payload
        assert pack.read_bytes()[48:] == first.payload and pack.read_bytes()[8:40] == bytes.fromhex(digest)
        # A row as revision 0005 wrote it: the columns inline, no blob.
        old = SignedBatch.of(att.id, 1, "latency", _arrays(4, 4), b"sig1")  # type: ignore[arg-type]
        assert store.add_signed_batch(old, NOW) is True
        with store.engine.begin() as conn:
            conn.execute(update(ResultBatchRow.__table__)  # type: ignore[attr-defined]
                         .where(ResultBatchRow.__table__.c.seq == 1)  # type: ignore[attr-defined]
                         .values(sha256="", data=old.payload[-48 * 4:]))
            rows = conn.execute(select(ResultBatchRow.__table__.c.seq,  # type: ignore[attr-defined]
                                       ResultBatchRow.__table__.c.sha256,  # type: ignore[attr-defined]
                                       ResultBatchRow.__table__.c.data)).all()  # type: ignore[attr-defined]
        assert sorted((s, bool(h), len(b)) for s, h, b in rows) == [(0, True, 0), (1, False, 192)]
        s = store.samples(att.id, "latency")
        assert s["index"].tolist() == list(range(8)) and s["seq"].tolist() == [0] * 4 + [1] * 4
        assert store.all_samples(att.id)["latency"]["value"].tolist() == s["value"].tolist()
        assert store.batches(att.id) == [(0, "latency", 4, b"sig0"), (1, "latency", 4, b"sig1")]
        # A blob that went missing is the lab's fault, named.
        pack.unlink()
        with pytest.raises(BlobMissing, match=first.sha256):
            store.samples(att.id, "latency")
    finally:
        store.close()
