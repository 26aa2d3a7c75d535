"""The lab's own artifact store, trusted only as far as checked: a file is served or dispatched only while it hashes
to the digest it is registered under. Each version of a file (its size, mtime, ctime, inode) is hashed once and
remembered; a file that changes is hashed again (as git does, a version changed within RACY_NS of its hashing is not
remembered: a write in the same clock tick would not show in its times). A corrupt or missing file is the lab's
fault, never the device's."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import weakref
from collections import OrderedDict
from pathlib import Path

from labd.state import Store
from pilotlab import domain as d
from pilotlab.tasks import TaskSpec

log = logging.getLogger("labd.artifacts")

Version = tuple[int, int, int, int, int]  # size, mtime_ns, ctime_ns, inode, device
RACY_NS = 2_000_000_000  # file times are as coarse as the kernel's clock tick; 2 s covers every filesystem's
RESTORE = "restarting labd re-imports its suites, which stores it again from the suite's file"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _version(st: os.stat_result) -> Version:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


class DigestMemo:
    """sha256 of files by version: hashed once per version, again when the file changes (or when forced). Bounded;
    one file is hashed by one thread at a time."""

    def __init__(self, max_entries: int = 4096, racy_ns: int = RACY_NS) -> None:
        self._known: OrderedDict[str, tuple[Version, str]] = OrderedDict()
        self._lock = threading.Lock()
        self._file_locks: dict[str, threading.Lock] = {}
        self._max = max_entries
        self._racy_ns = racy_ns
        self.hashed = 0  # files hashed so far (what the memo saved is the rest)

    def _cached(self, path: str, version: Version) -> str | None:
        with self._lock:
            got = self._known.get(path)
            if got is None or got[0] != version:
                return None
            self._known.move_to_end(path)
            return got[1]

    def _store(self, path: str, version: Version, digest: str) -> None:
        if time.time_ns() - max(version[1], version[2]) < self._racy_ns:
            return  # changed just now: another write in the same tick would keep these times; hash it next time too
        with self._lock:
            self._known[path] = (version, digest)
            self._known.move_to_end(path)
            while len(self._known) > self._max:
                self._known.popitem(last=False)

    def digest(self, path: str, force: bool = False) -> tuple[str, bool]:
        """The file's sha256 and whether it was hashed just now; OSError (FileNotFoundError) when it is gone."""
        if not force and (known := self._cached(path, _version(os.stat(path)))) is not None:
            return known, False
        with self._lock:
            file_lock = self._file_locks.setdefault(path, threading.Lock())
        with file_lock:
            before = _version(os.stat(path))
            if not force and (known := self._cached(path, before)) is not None:
                return known, False  # another thread hashed this version meanwhile
            digest = sha256_file(path)
            self.hashed += 1
            if _version(os.stat(path)) == before:  # changed while hashed: hash it again next time
                self._store(path, before, digest)
            return digest, True

    def remember(self, path: str | Path, digest: str) -> None:
        """A file whose content was just hashed (e.g. copied into the store and checked), as it is now."""
        self._store(str(path), _version(os.stat(path)), digest)


MEMO = DigestMemo()
_reported: dict[str, str] = {}  # path -> what was logged about it ("missing", the digest it had), until it is intact


def _report(path: str, state: str, line: str, *args: object) -> None:
    """Log one line when a stored file turns bad, or bad in another way; nothing while it stays the same."""
    if _reported.get(path) != state:
        _reported[path] = state
        log.error(line, *args)


def fault(art: d.ArtifactRecord, force: bool = False, memo: DigestMemo = MEMO) -> str:
    """'' while the stored file hashes to the digest it is registered under; else what is wrong and what to do (the
    reason a task ends with), logged once per bad state of the file."""
    what = f"{art.kind} {art.name}" if art.name else art.kind or "artifact"
    try:
        got, _ = memo.digest(art.path, force)
    except FileNotFoundError:
        _report(art.path, "missing", "stored artifact %s (%s) is missing: %s; %s", art.sha256, what, art.path,
                RESTORE)
        return (f"the lab's stored artifact {art.sha256} ({what}) is missing ({art.path}): a fault of the lab, not "
                f"of the device; restore it ({RESTORE}), then resubmit")
    except OSError as e:
        _report(art.path, "unreadable", "stored artifact %s (%s) cannot be read: %s: %s", art.sha256, what,
                art.path, e.strerror)
        return (f"the lab's stored artifact {art.sha256} ({what}) cannot be read ({e.strerror}): a fault of the "
                f"lab, not of the device; restore {art.path} ({RESTORE}), then resubmit")
    if got == art.sha256:
        _reported.pop(art.path, None)
        return ""
    _report(art.path, got, "stored artifact %s (%s) is corrupt: expected sha256 %s, got %s (%s); %s", art.sha256,
            what, art.sha256, got, art.path, RESTORE)
    return (f"the lab's stored artifact {art.sha256} ({what}) is corrupt (expected sha256 {art.sha256}, got {got}): "
            f"a fault of the lab, not of the device; restore {art.path} ({RESTORE}), then resubmit")


def check(art: d.ArtifactRecord, force: bool = False) -> d.ArtifactRecord:
    """The artifact, when its stored file is intact; LabFault saying what is wrong otherwise."""
    why = fault(art, force)
    if why:
        raise d.LabFault(why)
    return art


# Artifact records by store and sha256, as last read from the store: an artifact is immutable by its sha256, so every
# assignment need not read its row again. Only a record whose file is intact is taken from here; one whose file is
# not is read again before the task is failed (re-registering an artifact may have moved its file), and so is
# every record when forced (an agent's failed download).
_RECORDS: weakref.WeakKeyDictionary[Store, dict[str, d.ArtifactRecord]] = weakref.WeakKeyDictionary()
_MAX_RECORDS = 4096


def _registered(store: Store, sha256: str, fresh: bool) -> d.ArtifactRecord:
    """store.get_artifact(sha256), from _RECORDS unless fresh; NotFound (never remembered) when not registered."""
    known = _RECORDS.get(store)
    if known is None:
        known = _RECORDS.setdefault(store, {})
    if not fresh and (art := known.get(sha256)) is not None:
        return art
    art = store.get_artifact(sha256)
    if len(known) >= _MAX_RECORDS:
        known.clear()
    known[sha256] = art
    return art


def task_fault(store: Store, spec: TaskSpec | None, force: bool = False) -> str:
    """'' when every artifact the task needs (model, dataset, golden outputs) is registered and intact in the lab's
    store; else the reason, for the first that is not."""
    if spec is None:
        return ""
    for role, ref in [("model", spec.model), *spec.data_refs()]:
        sha256 = ref.sha256.lower()
        try:
            art = _registered(store, sha256, fresh=force)
            why = fault(art, force)
            # a remembered record whose file is not intact: read it again, it may have moved since
            if why and not force and (now := _registered(store, sha256, fresh=True)) != art:
                why = fault(now, force)
        except d.NotFound:
            return (f"the lab's stored artifact {ref.sha256} ({role} {ref.name}) is not registered in this lab: a "
                    f"fault of the lab, not of the device; re-import the suite ({RESTORE}), then resubmit")
        if why:
            return why
    return ""
