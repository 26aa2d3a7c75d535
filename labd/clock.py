"""labd's one clock: wall time for what is stored and leased, monotonic time for intervals; a fake one for tests."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall time in Unix milliseconds: timestamps stored, leases, queue deadlines."""

    def now_ns(self) -> int:
        """Wall time in Unix nanoseconds: ordering of things queued within one millisecond."""

    def monotonic(self) -> float:
        """Seconds that never go backwards: how often the dispatcher does periodic work, caches' lifetimes."""


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def now_ns(self) -> int:
        return time.time_ns()

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that stands still until a test moves it with advance()."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._ns = start_ms * 1_000_000
        self._mono_ns = 0

    def now_ms(self) -> int:
        return self._ns // 1_000_000

    def now_ns(self) -> int:
        return self._ns

    def monotonic(self) -> float:
        return self._mono_ns / 1e9

    def advance(self, ms: float) -> None:
        step = int(ms * 1_000_000)
        if step < 0:
            raise ValueError("a clock does not go backwards")
        self._ns += step
        self._mono_ns += step


SYSTEM_CLOCK = SystemClock()
