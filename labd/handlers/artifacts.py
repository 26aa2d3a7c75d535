"""Serving the lab's content-addressed artifacts (models, datasets, golden outputs) to devices."""

from __future__ import annotations

from pathlib import Path

from labd.state import Store
from pilotlab import domain as d


def find_artifact(store: Store, sha256: str, offset: int = 0) -> d.ArtifactRecord:
    """The registered artifact with this digest (any case), when its file is still in the lab's store and the
    offset to read from lies inside it."""
    art = store.get_artifact(sha256.lower())
    if not Path(art.path).exists():
        raise d.NotFound(f"artifact {sha256} is registered but its file is gone from the lab's store; "
                         "restart labd so it reloads its suites")
    if not 0 <= offset <= art.size:
        raise d.Invalid(f"offset {offset} is outside artifact {art.sha256} of {art.size} bytes")
    return art


def read_chunk(path: str, offset: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)
