"""Immutable blobs addressed by their sha256: where labd keeps each result batch exactly as its device signed it.

One interface (BlobStore), two backends, chosen by open_blobs (labd serve --blobs):
- FsBlobs, the default (DATA_DIR/blobs), keeps blobs in two ways:
  - packs (put_many, what labd's ingest uses): the result batches of one group commit are appended, each as a
    self-describing record, to this process's current pack file DATA_DIR/blobs/packs/<uuid4 hex>.pack, with ONE
    fdatasync for the whole group. One file per small blob (a few KiB to ~1 MiB) cost labd most of its ingest CPU
    in inode creation (openat O_CREAT) and fsyncs; an append and one fdatasync per group costs neither. Each
    FsBlobs (one per labd process) appends to a pack of its own, so replicas sharing one folder never interleave,
    and starts a new pack when the current one would grow past pack_bytes. A record is b"PLBLOB1\n", the 32 raw
    bytes of the data's sha256, its length (8 bytes, little-endian), then the data, so a pack can be scanned
    without the database. put_many returns where each blob went, "packs/<name>.pack:<offset of the data>:<length>",
    which the database keeps beside the sha256 and passes back to get(digest, at). Crashes: a record is referenced
    by the database only after its fdatasync returned, and a pack whose write or fdatasync failed is abandoned (the
    next group starts a new one), so a torn tail is unreferenced garbage, never read.
  - a file per blob (put: migrations, and parity with S3Blobs), DATA_DIR/blobs/ab/cdef…, each written atomically (a
    temporary file, fsync, rename, fsync of the folder), so a blob that exists is whole.
  A full disk surfaces, either way, as the OSError (ENOSPC) that labd.storage recognises.
- S3Blobs (s3://BUCKET/PREFIX, the `s3` extra: boto3) keeps them as objects PREFIX/ab/cdef… in an S3-compatible
  object store, endpoint and credentials from the standard AWS_* environment variables. An S3 PUT is atomic, and
  each carries the blob's sha256 (x-amz-checksum-sha256) for the server to check the bytes it stores. Its put_many
  is a put per blob, and its locations are all '' (the digest alone finds an object).
Both check every blob read whole against its name.
"""
from __future__ import annotations

import base64
import errno
import hashlib
import io
import os
import re
import struct
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, cast

from pilotlab import domain as d

PUT_CONCURRENCY = 16  # S3Blobs.put_many's PUTs in flight at once (boto3's pool holds 32 connections)
_DIGEST = re.compile(r"^[0-9a-f]{64}$")

PACK_MAGIC = b"PLBLOB1\n"
# A pack record's header: magic, the data's sha256 (32 raw bytes), the data's length (little-endian); then the data.
PACK_HEADER = struct.Struct("<8s32sQ")
# Where put_many put a blob: packs/<uuid4 hex>.pack:<offset of the data>:<length>, nothing else (no other folder, no
# '..', no absolute path, no sign).
_AT = re.compile(r"packs/([0-9a-f]{32}\.pack):(0|[1-9][0-9]{0,18}):(0|[1-9][0-9]{0,18})")
_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


def _iov_max() -> int:
    try:
        return max(2, int(os.sysconf("SC_IOV_MAX")))
    except (AttributeError, ValueError, OSError):
        return 1024


_IOV_MAX = _iov_max()


def _write_all(fd: int, bufs: list[memoryview]) -> None:
    """Every byte of bufs to fd, in order, in as few writev calls as the kernel allows (it may write less than asked:
    the rest goes in the next call). Errors (ENOSPC) are the OSError the kernel gave."""
    i = 0
    while i < len(bufs):
        n = os.writev(fd, bufs[i:i + _IOV_MAX])
        if n == 0 and any(b.nbytes for b in bufs[i:i + _IOV_MAX]):
            raise OSError(errno.EIO, "write made no progress")
        while i < len(bufs) and n >= bufs[i].nbytes:
            n -= bufs[i].nbytes
            i += 1
        if n:
            bufs[i] = bufs[i][n:]


class BlobMissing(d.LabError):
    """A blob the store names is absent or does not hash to its name: the lab's fault, never the device's."""


class BlobStoreError(d.LabError):
    """The blob store cannot be used as configured, or not now (unreachable, refused, no such bucket). Its message is
    one line: what is wrong and what to do."""


def digest_of(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore(ABC):
    """Content-addressed, write-once storage. Implementations MUST make put atomic (a blob is whole or absent) and
    idempotent (the same bytes twice store one blob), MUST make every blob of put_many durable before it returns, and
    MUST never return bytes that do not hash to the digest."""

    @abstractmethod
    def put(self, data: bytes | memoryview, digest: str = "") -> str:
        """Store data (its sha256, when the caller has it, in digest) durably; returns its sha256 (hex)."""

    def put_many(self, items: Sequence[tuple[str, bytes | memoryview]]) -> list[str]:
        """Store each (digest, data) durably, every one before returning (a backend that can makes it one durable
        write for all); returns each blob's location in order: '' where the digest alone finds it (then get(digest)
        reads it), else a string to pass back as get(digest, at). digest is the caller's sha256 (hex) of data,
        trusted for naming as put's is. This default puts each blob on its own."""
        for digest, data in items:
            self.put(data, digest)
        return [""] * len(items)

    @abstractmethod
    def get(self, digest: str, at: str = "") -> bytes:
        """The blob's bytes, checked against digest; at: where put_many put it ('' for the digest alone);
        BlobMissing when absent or corrupt."""

    def get_many(self, items: Iterable[tuple[str, str]]) -> Generator[bytes, None, None]:
        """get for each (digest, at), one after another as the caller takes them: the same bytes, checks and errors
        as a get each. A backend that can shares work between them (FsBlobs: each pack opened once, until the
        generator ends or is closed: close it, e.g. with contextlib.closing, when not taking every blob). This
        default gets each on its own."""
        for digest, at in items:
            yield self.get(digest, at)

    @abstractmethod
    def open(self, digest: str, at: str = "") -> BinaryIO:
        """The blob as a stream (for bundles), at as for get: not re-hashed; BlobMissing when absent."""

    @abstractmethod
    def exists(self, digest: str) -> bool: ...

    @abstractmethod
    def describe(self) -> str:
        """Where the blobs are, for log lines and messages."""

    def close(self) -> None:  # noqa: B027 (optional: most stores hold nothing to release)
        """Release what the store holds open (FsBlobs: its pack file); idempotent."""


class FsBlobs(BlobStore):
    """Blobs under root: put_many appends them to pack files, packs/<uuid4 hex>.pack (records as in the module's
    docstring; a new pack once the current one would pass pack_bytes, a blob bigger than that alone in one), and put
    writes a file each, ab/cdef… (the first two hex digits name the folder). exists(digest) looks for the file only:
    a packed blob is found through the location put_many returned.

    put_many may be called from several threads (one lock guards the pack being written). Unlike put, put_many does
    not look for the blob first: the same bytes twice are two records, harmless (both read back whole)."""

    def __init__(self, root: Path | str, pack_bytes: int = 256 << 20) -> None:
        if pack_bytes <= 0:
            raise ValueError(f"pack_bytes must be positive, not {pack_bytes}")
        self.root = Path(root)
        self._packs_dir = str(self.root / "packs")
        self.pack_bytes = pack_bytes
        self._made: set[str] = set()
        self._lock = threading.Lock()
        self._fd: int | None = None  # the pack being appended to, when there is one
        self._pack = ""  # its name under root: packs/<uuid4 hex>.pack
        self._offset = 0  # its size: where the next record goes
        self._packs_made = False

    def describe(self) -> str:
        return str(self.root)

    def path(self, digest: str) -> Path:
        if not _DIGEST.match(digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.root / digest[:2] / digest[2:]

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put(self, data: bytes | memoryview, digest: str = "") -> str:
        digest = digest or digest_of(data)
        final = self.path(digest)
        if final.is_file():
            return digest  # content-addressed: the same bytes are already there, whole
        folder = final.parent
        if digest[:2] not in self._made:
            folder.mkdir(parents=True, exist_ok=True)
            self._made.add(digest[:2])
        tmp = folder / f".tmp-{uuid.uuid4().hex}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)  # the rename itself survives a crash
        finally:
            os.close(dfd)
        return digest

    def put_many(self, items: Sequence[tuple[str, bytes | memoryview]]) -> list[str]:
        """Append each (digest, data) to this process's pack, then ONE fdatasync (one more per pack left behind when
        the group fills one); returns each blob's location, packs/<name>.pack:<offset>:<length>, for get(digest, at).
        A failed write or fdatasync (ENOSPC) raises its OSError unchanged, and the pack is abandoned: what the group
        appended to it is never referenced, and the next put_many starts a new pack."""
        records: list[tuple[bytes, memoryview]] = []
        for digest, data in items:
            if not _DIGEST.match(digest):
                raise ValueError(f"not a sha256 digest: {digest!r}")
            view = memoryview(data).cast("B")
            records.append((PACK_HEADER.pack(PACK_MAGIC, bytes.fromhex(digest), view.nbytes), view))
        if not records:
            return []
        ats: list[str] = []
        with self._lock:
            try:
                bufs: list[memoryview] = []
                for header, view in records:
                    size = len(header) + view.nbytes
                    if self._fd is not None and self._offset and self._offset + size > self.pack_bytes:
                        self._seal(bufs)  # full: what this group put there is made durable, then a new pack
                        bufs = []
                    if self._fd is None:
                        self._new_pack()
                    bufs += (memoryview(header), view)
                    ats.append(f"{self._pack}:{self._offset + len(header)}:{view.nbytes}")
                    self._offset += size
                assert self._fd is not None
                _write_all(self._fd, bufs)
                _datasync(self._fd)
            except BaseException:
                self._abandon()
                raise
        return ats

    def _new_pack(self) -> None:
        """Start a pack of this process's own: created, and its name made durable (the folder fsynced)."""
        packs = self.root / "packs"
        if not self._packs_made:
            if not packs.is_dir():
                packs.mkdir(parents=True, exist_ok=True)
                _fsync_dir(packs.parent)  # the packs folder itself survives a crash
            self._packs_made = True
        name = f"packs/{uuid.uuid4().hex}.pack"
        fd = os.open(self.root / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o640)
        self._fd, self._pack, self._offset = fd, name, 0
        _fsync_dir(packs)

    def _seal(self, bufs: list[memoryview]) -> None:
        """Write bufs to the current pack, make it durable and close it: it is full."""
        assert self._fd is not None
        _write_all(self._fd, bufs)
        _datasync(self._fd)
        self._abandon()

    def _abandon(self) -> None:
        fd, self._fd, self._pack, self._offset = self._fd, None, "", 0
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            self._abandon()

    def get(self, digest: str, at: str = "") -> bytes:
        if at:
            packs: dict[str, tuple[int, int]] = {}
            try:
                return self._read_packed(digest, at, packs)
            finally:
                for fd, _ in packs.values():
                    os.close(fd)
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError:
            raise BlobMissing(f"blob {digest} is missing from {self.root}") from None
        if digest_of(data) != digest:
            raise BlobMissing(f"blob {digest} in {self.root} is corrupt: it hashes to {digest_of(data)}")
        return data

    def open(self, digest: str, at: str = "") -> BinaryIO:
        if at:
            return io.BytesIO(self.get(digest, at))  # packed blobs are small: read whole, and checked
        try:
            return self.path(digest).open("rb")
        except FileNotFoundError:
            raise BlobMissing(f"blob {digest} is missing from {self.root}") from None

    def get_many(self, items: Iterable[tuple[str, str]]) -> Generator[bytes, None, None]:
        """Each blob as get reads it, with every check, in order; the packs they lie in opened once each (an
        attempt's result batches are mostly in one or two packs) and closed when the generator ends or is closed."""
        packs: dict[str, tuple[int, int]] = {}  # pack name -> (fd, its size when last looked at)
        try:
            for digest, at in items:
                yield self._read_packed(digest, at, packs) if at else self.get(digest)
        finally:
            for fd, _ in packs.values():
                os.close(fd)

    def _read_packed(self, digest: str, at: str, packs: dict[str, tuple[int, int]]) -> bytes:
        """The packed blob at `at`, checked; packs: the packs this read already opened (name -> fd, size), where it
        adds the one it opens."""
        if not _DIGEST.match(digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        m = _AT.fullmatch(at)
        if m is None:
            raise BlobMissing(f"blob {digest} has a bad location {at[:200]!r}: not packs/<name>.pack:<offset>:<length>")
        name, offset, length = m.group(1), int(m.group(2)), int(m.group(3))
        found = packs.get(name)
        if found is None:
            try:
                fd = os.open(os.path.join(self._packs_dir, name), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except FileNotFoundError:
                raise BlobMissing(f"blob {digest} is missing: no pack {self.root / 'packs' / name}") from None
            try:
                found = packs[name] = (fd, os.fstat(fd).st_size)
            except BaseException:
                os.close(fd)
                raise
        fd, size = found
        if offset + length > size:  # a pack only grows: look again before calling it short
            size = os.fstat(fd).st_size
            packs[name] = (fd, size)
            if offset + length > size:
                raise BlobMissing(f"blob {digest} in {self._where(name, offset)} is missing: the pack ends at {size}, "
                                  f"before the blob's {length} bytes do")
        data = os.pread(fd, length, offset)
        if len(data) < length:
            chunks = [data]
            got = len(data)
            while got < length:
                chunk = os.pread(fd, length - got, offset + got)
                if not chunk:
                    raise BlobMissing(f"blob {digest} in {self._where(name, offset)} is missing: the pack ends at "
                                      f"{offset + got}")
                chunks.append(chunk)
                got += len(chunk)
            data = b"".join(chunks)
        if digest_of(data) != digest:
            raise BlobMissing(f"blob {digest} in {self._where(name, offset)} is corrupt: it hashes to "
                              f"{digest_of(data)}")
        return data

    def _where(self, name: str, offset: int) -> str:
        return f"{self.root / 'packs' / name} at offset {offset}"


def _fsync_dir(folder: Path) -> None:
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class S3Blobs(BlobStore):
    """Blobs as objects PREFIX/ab/cdef… in BUCKET of an S3-compatible object store (boto3).

    The endpoint, region and credentials come from the standard environment variables (env, default os.environ):
    AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3; unset: AWS itself), AWS_REGION (or AWS_DEFAULT_REGION; default
    us-east-1), AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or anything else boto3's credential chain finds:
    AWS_PROFILE, a role), AWS_MAX_ATTEMPTS (tries per request, default 3). Addressing is path-style with an
    endpoint (what S3-compatible servers accept), AWS's default without one.

    put is one unconditional PUT: atomic on the server, idempotent because the key is the content's sha256 (the same
    bytes again make the same object; a damaged object is replaced whole), with the sha256 sent along for the server
    to check the bytes it stores. get checks the bytes it reads against the name. Errors that are not "absent" or
    "corrupt" (BlobMissing) are BlobStoreError, one line naming the endpoint and what to check."""

    def __init__(self, bucket: str, prefix: str = "", env: Mapping[str, str] | None = None,
                 client: Any = None) -> None:
        if not bucket:
            raise ValueError("an s3:// blob store needs a bucket: s3://BUCKET/PREFIX")
        env = os.environ if env is None else env
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or ""
        self.region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.client = client if client is not None else self._client(env)
        self._pool: ThreadPoolExecutor | None = None  # put_many's concurrent PUTs (boto3 clients are thread-safe)
        self._pool_lock = threading.Lock()

    def _client(self, env: Mapping[str, str]) -> Any:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise BlobStoreError("s3:// blobs need boto3: install the lab with its s3 extra "
                                 "(pip install 'pilotlab[lab,s3]')") from None
        config = Config(connect_timeout=5, read_timeout=60, max_pool_connections=32,
                        retries={"mode": "standard", "total_max_attempts": int(env.get("AWS_MAX_ATTEMPTS") or 3)},
                        s3={"addressing_style": "path" if self.endpoint else "auto"},
                        # labd sends the sha256 itself (put) and checks every read whole (get): no CRC32 on top
                        request_checksum_calculation="when_required",
                        response_checksum_validation="when_required")
        session = boto3.session.Session(aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
                                        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
                                        aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
                                        region_name=self.region)
        return session.client("s3", endpoint_url=self.endpoint or None, config=config)

    @classmethod
    def from_url(cls, url: str, env: Mapping[str, str] | None = None) -> S3Blobs:
        """s3://BUCKET or s3://BUCKET/PREFIX."""
        if not url.startswith("s3://"):
            raise ValueError(f"not an s3:// URL: {url!r}")
        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not bucket or "?" in url or "#" in url:
            raise ValueError(f"bad blob store URL {url!r}: give s3://BUCKET/PREFIX (the endpoint and credentials "
                             "come from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION)")
        return cls(bucket, prefix, env)

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" + (f" at {self.endpoint}" if self.endpoint else "")

    def key(self, digest: str) -> str:
        if not _DIGEST.match(digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return f"{self.prefix}{digest[:2]}/{digest[2:]}"

    def check(self) -> None:
        """That the bucket is there and this lab may write and read it (labd's start-up): the empty blob is put
        and read back, so a key that may only read is found now, not at the first result batch."""
        self._call("open", "", self.client.head_bucket, Bucket=self.bucket)
        empty = self.put(b"")
        self.get(empty)

    def put(self, data: bytes | memoryview, digest: str = "") -> str:
        digest = digest or digest_of(data)
        body = data.tobytes() if isinstance(data, memoryview) else data
        self._call("store", digest, self.client.put_object, Bucket=self.bucket, Key=self.key(digest), Body=body,
                   ChecksumSHA256=base64.b64encode(bytes.fromhex(digest)).decode(),
                   ContentType="application/octet-stream")
        return digest

    def put_many(self, items: Sequence[tuple[str, bytes | memoryview]]) -> list[str]:
        """A PUT per blob, up to PUT_CONCURRENCY at once (a group is one round of requests' time, not the sum of
        them); every one stored when it returns, or the first error raised. Locations are all ''."""
        if len(items) <= 1:
            return super().put_many(items)
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(PUT_CONCURRENCY, thread_name_prefix="s3-put")
        for f in [self._pool.submit(self.put, data, digest) for digest, data in items]:
            f.result()
        return [""] * len(items)

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def get(self, digest: str, at: str = "") -> bytes:  # at: always '' here (put_many puts each blob by digest)
        body = self._get(digest)
        try:
            data = cast(bytes, self._call("read", digest, body.read))
        finally:
            body.close()
        if digest_of(data) != digest:
            raise BlobMissing(f"blob {digest} in {self.describe()} is corrupt: it hashes to {digest_of(data)}")
        return data

    def open(self, digest: str, at: str = "") -> BinaryIO:
        return cast(BinaryIO, self._get(digest))  # botocore's StreamingBody: an io.IOBase with read(n), close

    def exists(self, digest: str) -> bool:
        try:
            self._call("look up", digest, self.client.head_object, Bucket=self.bucket, Key=self.key(digest))
        except BlobMissing:
            return False
        return True

    def _get(self, digest: str) -> Any:
        return self._call("read", digest, self.client.get_object, Bucket=self.bucket, Key=self.key(digest))["Body"]

    def _call(self, what: str, digest: str, fn: Callable[..., Any], **kw: Any) -> Any:
        """fn(**kw), its errors as BlobMissing or one-line BlobStoreError; what: a verb (store, read, look up, open),
        of blob digest, or of the bucket when digest is ''."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kw)
        except ClientError as e:
            self._client_error(e, what, digest)
        except BotoCoreError as e:
            self._transport_error(e, what, digest)

    def _subject(self, digest: str) -> str:
        return f"blob {digest}" if digest else f"bucket {self.bucket!r}"

    def _client_error(self, e: Any, what: str, digest: str) -> NoReturn:
        err = e.response.get("Error", {})
        code = str(err.get("Code") or e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or "")
        where = self.describe()
        if code == "NoSuchBucket" or (code in ("404", "NotFound") and not digest):
            raise BlobStoreError(f"bucket {self.bucket!r} does not exist at {self.endpoint or 'AWS S3'}: create it, "
                                 "or name an existing one in --blobs s3://BUCKET/PREFIX") from None
        if code in ("NoSuchKey", "404", "NotFound"):
            raise BlobMissing(f"blob {digest} is missing from {where}") from None
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
                    "ExpiredToken", "AuthorizationHeaderMalformed", "AllAccessDisabled"):
            raise BlobStoreError(f"{where} refused to {what} {self._subject(digest)} ({code}): check "
                                 "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and that this key may read and write "
                                 f"s3://{self.bucket}/{self.prefix}") from None
        if code in ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"):
            raise BlobStoreError(f"{where} refused blob {digest}: the bytes sent do not hash to it ({code})") from None
        message = " ".join(str(err.get("Message") or e).split())
        raise BlobStoreError(f"cannot {what} {self._subject(digest)} in {where} ({code}: {message}); the object "
                             "store's own log says why") from None

    def _transport_error(self, e: Exception, what: str, digest: str) -> NoReturn:
        from botocore.exceptions import NoCredentialsError, PartialCredentialsError

        if isinstance(e, NoCredentialsError | PartialCredentialsError):
            raise BlobStoreError(f"no S3 credentials for {self.describe()}: set AWS_ACCESS_KEY_ID and "
                                 "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)") from None
        reason = " ".join(str(e).split())
        raise BlobStoreError(f"cannot {what} {self._subject(digest)} in {self.describe()} ({reason}): check "
                             "AWS_ENDPOINT_URL and that the object store is running and reachable") from None


def open_blobs(url: str | Path | None, data_dir: Path | str | None = None, *, check: bool = True,
               env: Mapping[str, str] | None = None) -> BlobStore:
    """The blob store labd serve --blobs names: None or '' for DATA_DIR/blobs (the default, data_dir), a folder
    (or file:///folder), or s3://BUCKET/PREFIX with the endpoint and credentials from the AWS_* environment variables
    (env, default os.environ). An s3:// store is checked now (check): bucket there, key may write and read it;
    BlobStoreError says what is wrong when not, ValueError when the URL is not one of these."""
    text = "" if url is None else str(url)
    if not text:
        if data_dir is None:
            raise ValueError("no blob store given and no data dir to keep DATA_DIR/blobs in")
        return FsBlobs(Path(data_dir) / "blobs")
    if text.startswith("s3://"):
        s3 = S3Blobs.from_url(text, env)
        if check:
            s3.check()
        return s3
    if text.startswith("file://"):
        return FsBlobs(Path(text[len("file://"):]))
    if "://" in text:
        raise ValueError(f"unsupported blob store {text!r}: give a folder or s3://BUCKET/PREFIX")
    return FsBlobs(Path(text))
