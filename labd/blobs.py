"""Immutable blobs addressed by their sha256: where labd keeps each result batch exactly as its device signed it.

One interface (BlobStore) so that a lab could keep them in object storage; the filesystem backend (FsBlobs, the
default: DATA_DIR/blobs/ab/cdef…) writes each blob atomically (a temporary file, fsync, rename, fsync of the
folder), so a blob that exists is whole. A full disk surfaces as the OSError (ENOSPC) that labd.storage recognises.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from typing import BinaryIO

from pilotlab import domain as d

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class BlobMissing(d.LabError):
    """A blob the store names is absent or does not hash to its name: the lab's fault, never the device's."""


def digest_of(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore(ABC):
    """Content-addressed, write-once storage. Implementations MUST make put atomic (a blob is whole or absent) and
    idempotent (the same bytes twice store one blob), and MUST never return bytes that do not hash to the digest."""

    @abstractmethod
    def put(self, data: bytes | memoryview, digest: str = "") -> str:
        """Store data (its sha256, when the caller has it, in digest) durably; returns its sha256 (hex)."""

    @abstractmethod
    def get(self, digest: str) -> bytes:
        """The blob's bytes, checked against digest; BlobMissing when absent or corrupt."""

    @abstractmethod
    def open(self, digest: str) -> BinaryIO:
        """The blob as a stream (for bundles): not re-hashed; BlobMissing when absent."""

    @abstractmethod
    def exists(self, digest: str) -> bool: ...

    @abstractmethod
    def describe(self) -> str:
        """Where the blobs are, for log lines and messages."""


class FsBlobs(BlobStore):
    """Blobs as files under root: ab/cdef… (the first two hex digits name the folder)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._made: set[str] = set()

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

    def get(self, digest: str) -> bytes:
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError:
            raise BlobMissing(f"blob {digest} is missing from {self.root}") from None
        if digest_of(data) != digest:
            raise BlobMissing(f"blob {digest} in {self.root} is corrupt: it hashes to {digest_of(data)}")
        return data

    def open(self, digest: str) -> BinaryIO:
        try:
            return self.path(digest).open("rb")
        except FileNotFoundError:
            raise BlobMissing(f"blob {digest} is missing from {self.root}") from None


def open_blobs(where: Path | str) -> BlobStore:
    """The blob store at where: a folder (the filesystem backend). Object storage (s3://) is not built yet."""
    text = str(where)
    if "://" in text:
        raise ValueError(f"unsupported blob store {text!r}: give a folder (the filesystem backend)")
    return FsBlobs(Path(text))
