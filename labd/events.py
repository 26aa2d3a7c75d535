"""Run change notifications for watchers inside one labd (other replicas are caught by periodic re-reads)."""

from __future__ import annotations

import asyncio
import contextlib


class RunEvents:
    def __init__(self) -> None:
        self._versions: dict[str, int] = {}
        self._cond = asyncio.Condition()

    def version(self, run_id: str) -> int:
        return self._versions.get(run_id, 0)

    async def notify(self, run_id: str) -> None:
        async with self._cond:
            self._versions[run_id] = self._versions.get(run_id, 0) + 1
            self._cond.notify_all()

    async def wait_change(self, run_id: str, seen: int, timeout: float) -> int:
        """Wait until the run's version passes `seen` or the timeout ends; returns the current version."""
        async with self._cond:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._cond.wait_for(lambda: self.version(run_id) > seen), timeout)
            return self.version(run_id)
