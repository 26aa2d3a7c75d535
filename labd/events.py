"""Run change notifications for watchers inside one labd. A change also goes out as a hint to the other replicas
on the same database (labd.hints), whose watchers are woken by it; without hints they re-read periodically."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class RunEvents:
    def __init__(self) -> None:
        self._versions: dict[str, int] = {}
        self._cond = asyncio.Condition()
        self.on_change: Callable[[str], None] | None = None  # set by labd.server: the hint to the other replicas

    def version(self, run_id: str) -> int:
        return self._versions.get(run_id, 0)

    async def notify(self, run_id: str, *, hinted: bool = False) -> None:
        """The run changed (here, or on another replica when hinted: then it is not hinted back)."""
        async with self._cond:
            self._versions[run_id] = self._versions.get(run_id, 0) + 1
            self._cond.notify_all()
        if self.on_change is not None and not hinted:
            self.on_change(run_id)

    async def wait_change(self, run_id: str, seen: int, timeout: float) -> int:
        """Wait until the run's version passes `seen` or the timeout ends; returns the current version."""
        async with self._cond:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._cond.wait_for(lambda: self.version(run_id) > seen), timeout)
            return self.version(run_id)
