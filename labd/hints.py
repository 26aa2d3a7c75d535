"""Wake-up hints between labd replicas on one PostgreSQL, over NATS (`labd serve --nats URL`).

A replica assigns work only to the agents connected to it, so what happens on one replica can concern another: a
run submitted here whose devices are held there, a cancel of attempts running there, a run a watcher there follows.
Each replica publishes such events as hints and wakes on the hints of the others. A hint carries no state: the
database is the source of truth, and every replica also re-reads it every poll interval (labd.scheduler.dispatcher),
so a lost hint (NATS down, a message dropped) delays the work by at most that interval and loses nothing.

Hints are coalesced: what happens within FLUSH_S goes out as one message on `pilotlab.<namespace>.hints`, where
namespace names the database (labd.state.sql.cluster), so labs sharing a NATS server never wake each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("labd.hints")
FLUSH_S = 0.02
CONNECT_S = 10.0  # how long labd waits for NATS at start


class HintsUnavailable(Exception):
    """NATS could not be reached at start; the message says what to do."""


@dataclass
class Pending:
    work: bool = False
    cancels: set[str] = field(default_factory=set)
    runs: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return self.work or bool(self.cancels) or bool(self.runs)

    def to_bytes(self) -> bytes:
        return json.dumps({"work": self.work, "cancel": sorted(self.cancels), "run": sorted(self.runs)}).encode()


@dataclass
class HintHandlers:
    """What a replica does with the others' hints: wake its dispatcher, stop cancelled attempts it holds, tell its
    watchers that a run changed."""

    work: Callable[[], None]
    cancel: Callable[[str], Awaitable[None]]
    run: Callable[[str], Awaitable[None]]


class Hints:
    """This replica's end of the hints: publish (coalesced, never blocking the caller) and receive. With no URL it
    does nothing: a single labd, or replicas that rely on polling alone."""

    def __init__(self, url: str | None, namespace: str) -> None:
        self.url, self.subject = url, f"pilotlab.{namespace}.hints"
        self._nc: Any = None
        self._pending = Pending()
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self.sent = self.received = self.lost = 0

    @property
    def enabled(self) -> bool:
        return self.url is not None

    async def start(self, handlers: HintHandlers) -> None:
        if self.url is None:
            return
        import nats
        from nats.errors import Error as NatsError
        from nats.errors import NoServersError

        async def quiet(e: Exception) -> None:  # reconnects are the client's business; say it once, briefly
            log.warning("NATS: %s", e)

        try:
            # Reconnects without end once connected; the first connection is bounded (with unlimited reconnects
            # nats-py would retry an unreachable server at start forever).
            self._nc = await asyncio.wait_for(
                nats.connect(self.url, name="labd", no_echo=True, connect_timeout=5, allow_reconnect=True,
                             max_reconnect_attempts=-1, reconnect_time_wait=1, error_cb=quiet), CONNECT_S)
        except (NoServersError, NatsError, OSError, TimeoutError) as e:
            why = f"no answer within {CONNECT_S:.0f} s" if isinstance(e, TimeoutError) else f"{type(e).__name__}: {e}"
            raise HintsUnavailable(f"cannot reach NATS at {self.url} ({why}); start it, fix "
                                   "--nats, or leave --nats out (replicas then see each other's work within the "
                                   "poll interval)") from None

        async def on_message(m: Any) -> None:
            self.received += 1
            try:
                h = json.loads(m.data)
                if h.get("work"):
                    handlers.work()
                for run_id in h.get("cancel", []):
                    await handlers.cancel(str(run_id))
                for run_id in h.get("run", []):
                    await handlers.run(str(run_id))
            except Exception:  # a bad hint is dropped: the next poll reads the truth anyway
                log.exception("could not act on a hint")

        await self._nc.subscribe(self.subject, cb=on_message)
        self._flusher = asyncio.create_task(self._flush_loop())
        log.info("wake-up hints on NATS %s, subject %s", self.url, self.subject)

    def work(self) -> None:
        """New work that another replica's agents may take: a run submitted, a task requeued, a device released."""
        self._add(lambda p: setattr(p, "work", True))

    def cancel(self, run_id: str) -> None:
        self._add(lambda p: p.cancels.add(run_id))

    def run(self, run_id: str) -> None:
        self._add(lambda p: p.runs.add(run_id))

    def _add(self, change: Callable[[Pending], None]) -> None:
        if self._nc is None:
            return
        change(self._pending)
        self._wake.set()

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(FLUSH_S)  # coalesce what comes within the window into one message
            self._wake.clear()
            pending, self._pending = self._pending, Pending()
            if not pending:
                continue
            try:
                await self._nc.publish(self.subject, pending.to_bytes())
                self.sent += 1
            except Exception as e:  # lost: the others find the work at their next poll
                self.lost += 1
                log.debug("hint not sent: %s", e)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
            self._nc = None
