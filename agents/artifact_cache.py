"""Content-addressed artifact cache on the device: resumable download, verified by sha256 before every use."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import grpc

from agents.lab_client import LabClient, is_transient

log = logging.getLogger("agent.cache")


class ArtifactError(Exception):
    """An artifact could not be fetched or does not match its digest."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ArtifactCache:
    def __init__(self, root: Path, client: LabClient, tries: int = 3) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.client = client
        self.tries = tries

    def path(self, sha256: str) -> Path:
        return self.root / sha256

    def get(self, sha256: str, size: int, progress: Callable[[float], None] | None = None) -> Path:
        """The verified local file for sha256, fetching (or refetching) it from the lab as needed."""
        dest = self.path(sha256)
        if dest.exists():
            if sha256_file(dest) == sha256:
                return dest
            log.warning("cached artifact %s is corrupted; refetching it", sha256[:12])
            dest.unlink()
        last = ""
        for attempt in range(1, self.tries + 1):
            part = dest.with_suffix(".part")
            try:
                self._download(sha256, size, part, progress)
            except grpc.RpcError as e:
                last = f"{e.code().name}: {e.details()}"
                if not is_transient(e):
                    raise ArtifactError(f"the lab refused artifact {sha256[:12]}: {last}") from e
                log.warning("fetch of %s interrupted (%s); resuming", sha256[:12], last)
                continue
            got = sha256_file(part)
            if got == sha256 and part.stat().st_size == size:
                part.chmod(0o444)  # read-only, to the executors above all
                part.replace(dest)
                return dest
            last = f"digest {got[:12]} does not match {sha256[:12]}"
            log.warning("artifact %s mismatch on attempt %d (%s); refetching", sha256[:12], attempt, last)
            part.unlink(missing_ok=True)
        raise ArtifactError(f"could not fetch artifact {sha256[:12]} after {self.tries} tries: {last}")

    def _download(self, sha256: str, size: int, part: Path, progress: Callable[[float], None] | None) -> None:
        offset = part.stat().st_size if part.exists() else 0
        if offset > size:
            part.unlink()
            offset = 0
        with part.open("ab") as f:
            for chunk in self.client.artifact_chunks(sha256, offset):
                if chunk.offset != offset:
                    raise ArtifactError(f"artifact {sha256[:12]}: chunk at {chunk.offset}, expected {offset}")
                f.write(chunk.data)
                offset += len(chunk.data)
                if progress and size:
                    progress(offset / size)
