"""A full disk or database, seen as one state of the lab rather than an error per write: what says the storage is
full (SQLite "database or disk is full", PostgreSQL "disk full", ENOSPC, EDQUOT), one log line each time the lab
becomes full and each time it has space again, and the run errors the store could not record while full, kept in
memory (and shown by GetRun and WatchRun) until it can."""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from pilotlab import domain as d

log = logging.getLogger("labd.storage")

MIN_FREE_BYTES = 1 << 20  # below this much free space in the database's directory the lab counts as full
CLEAR_MARGIN_BYTES = 8 << 20  # after a failed write: the space needed beyond what was free then, to try again
RETRY_S = 10.0  # after a failed write where free space cannot be read (PostgreSQL): when to try again
_FULL_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}
_FULL_TEXTS = ("database or disk is full", "no space left on device", "disk quota exceeded", "disk full")


def why_full(exc: BaseException | None) -> str:
    """What in exc (or the errors behind it) says the storage is full; '' when nothing does."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _FULL_ERRNOS:
            return _FULL_ERRNOS[e.errno]
        if getattr(e, "sqlstate", None) == "53100":  # PostgreSQL disk_full
            return "disk full"
        text = str(e).lower()
        for t in _FULL_TEXTS:
            if t in text:
                return t
        orig = getattr(e, "orig", None)  # SQLAlchemy's DBAPIError wraps the driver's error
        stack += [orig if isinstance(orig, BaseException) else None, e.__cause__, e.__context__]
    return ""


@dataclass(frozen=True)
class Unrecorded:
    """A lab fault (storage full) that ended an attempt, which the store could not record yet."""

    attempt_id: str
    task_id: str
    run_id: str
    reason: str


class StorageWatch:
    """Whether the lab's storage is full, re-read on every check (a statvfs of the database's directory), so the lab
    recovers by itself once space is freed. Thread-safe."""

    def __init__(self, dirs: list[Path] | None = None, where: str = "") -> None:
        self.dirs = list(dirs or [])
        self.where = where or (str(self.dirs[0]) if self.dirs else "the database")
        self._why = ""
        self._clear_at_free = MIN_FREE_BYTES
        self._retry_at = 0.0
        self._lock = threading.Lock()
        self._unrecorded: dict[str, Unrecorded] = {}

    @classmethod
    def for_db(cls, db_url: str) -> StorageWatch:
        """Watching the directory of a SQLite database file; a server database (PostgreSQL) only by its errors."""
        from sqlalchemy import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(db_url)
        except ArgumentError:
            return cls([], "the lab's database")
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            folder = Path(url.database).resolve().parent
            return cls([folder], f"the lab's data dir ({folder})")
        return cls([], "the lab's database")

    # --- the state -----------------------------------------------------------------------------------------
    def _free(self) -> tuple[int, Path] | None:
        """The least free space (bytes, directory) among the watched directories; None when none can be read."""
        found = []
        for folder in self.dirs:
            try:
                st = os.statvfs(folder)
            except OSError:
                continue
            found.append((st.f_bavail * st.f_frsize, folder))
        return min(found) if found else None

    def message(self, why: str) -> str:
        return f"lab storage full ({why}): free space in {self.where}, then resubmit"

    def _set(self, why: str, clear_at_free: int, retry_at: float) -> None:
        with self._lock:
            was = self._why
            self._why, self._clear_at_free, self._retry_at = why, clear_at_free, retry_at
        if not was:
            log.error("lab storage full (%s): new runs and result batches are refused and running attempts end in "
                      "error until space is freed in %s", why, self.where)

    def _clear(self, free: tuple[int, Path] | None) -> None:
        with self._lock:
            was, self._why = self._why, ""
        if was:
            shown = f" ({free[0] / 2**20:.0f} MiB free in {free[1]})" if free else ""
            log.warning("lab storage has space again%s: accepting runs and results", shown)

    def full_reason(self) -> str:
        """'' while the lab can write; else the one-line message (what is full, what to do)."""
        free = self._free()
        if free is not None and free[0] < MIN_FREE_BYTES:
            self._set(f"{free[0] // 1024} KiB free", MIN_FREE_BYTES, time.monotonic() + RETRY_S)
        elif self._why:
            room = free[0] >= self._clear_at_free if free is not None else time.monotonic() >= self._retry_at
            if room:
                self._clear(free)
        why = self._why
        return self.message(why) if why else ""

    def check(self) -> None:
        """StorageFull while the lab's storage is full."""
        why = self.full_reason()
        if why:
            raise d.StorageFull(why)

    def noted(self, exc: BaseException) -> d.StorageFull | None:
        """exc as StorageFull when it says the storage is full (the lab is full from now on), else None."""
        if isinstance(exc, d.StorageFull):
            return exc
        why = why_full(exc)
        free = self._free()
        if not why and free is not None and free[0] < MIN_FREE_BYTES and "disk i/o error" in str(exc).lower():
            why = "disk I/O error on a full disk"  # what SQLite may say when the disk fills under its shared memory
        if not why:
            return None
        self._set(why, max(MIN_FREE_BYTES, (free[0] if free else 0) + CLEAR_MARGIN_BYTES),
                  time.monotonic() + RETRY_S)
        return d.StorageFull(self.message(why))

    # --- what the store could not record ----------------------------------------------------------------------
    def remember(self, fault: Unrecorded) -> None:
        with self._lock:
            self._unrecorded[fault.attempt_id] = fault

    def forget(self, attempt_id: str) -> None:
        with self._lock:
            self._unrecorded.pop(attempt_id, None)

    def fault_of(self, attempt_id: str) -> str:
        """The reason an attempt ended in a lab fault that is not recorded yet; ''."""
        with self._lock:
            got = self._unrecorded.get(attempt_id)
        return got.reason if got is not None else ""

    def unrecorded(self) -> list[Unrecorded]:
        with self._lock:
            return list(self._unrecorded.values())

    def overlay(self, run: d.Run) -> d.Run:
        """The run as the lab knows it: with its tasks that ended in faults not recorded yet in error, and the run
        itself in error once every task has ended."""
        with self._lock:
            faults = {u.task_id: u.reason for u in self._unrecorded.values() if u.run_id == run.id}
        if not faults:
            return run
        tasks = [replace(t, status=d.Status.ERROR, reason=faults[t.id], verdict=None, phase="done")
                 if t.id in faults and not t.status.terminal else t for t in run.tasks]
        if run.status.terminal or not all(t.status.terminal for t in tasks):
            return replace(run, tasks=tasks)
        reason = next(t.reason for t in tasks if t.status == d.Status.ERROR)
        return replace(run, tasks=tasks, status=d.Status.ERROR, verdict=None, reason=reason)
