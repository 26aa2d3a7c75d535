"""One process per directory: labd per data dir, lab-agent per work dir, each holding an exclusive lock file."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path


class DirUnusable(Exception):
    """The directory cannot be claimed; the message is one line saying why and what to do."""


def claim_dir(directory: Path, lock_name: str, flag: str, program: str, in_use_advice: str) -> int:
    """Create `directory` if needed and hold an exclusive lock on directory/lock_name for the life of the process
    (the returned descriptor, which holds this process's pid). Raises DirUnusable naming `flag` when the path is a
    file, cannot be written, or another process holds the lock."""
    try:
        if directory.exists() and not directory.is_dir():
            raise DirUnusable(f"{flag} {directory} is a file, not a directory; "
                              f"choose a directory ({program} creates it if missing)")
        directory.mkdir(parents=True, exist_ok=True)
        if not os.access(directory, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        fd = os.open(directory / lock_name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise DirUnusable(f"cannot write to {flag} {directory} ({e.strerror}); "
                          f"check the path and its permissions, or choose another {flag}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        pid = f" (pid {holder})" if holder.isdigit() else ""
        raise DirUnusable(f"{flag} {directory} is in use by another {in_use_advice.format(pid=pid)}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
