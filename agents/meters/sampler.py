"""Background sampling of meters on the harness clock (time.perf_counter_ns).

Each meter gets its own daemon thread, so that a slow or silent meter (a bench meter waiting out
its timeout) cannot delay the others. A sample is stamped with the midpoint of the read call.
Samples go into preallocated numpy arrays per meter, doubled when full, so that sampling does not
allocate per reading.

Guarantees the energy arithmetic relies on:

* start() returns once every meter has been read once (or has failed), so a window opened after
  start() returns begins after each working meter's first sample;
* stop() makes every still-working meter take one more sample after stop() was called, so a
  window closed before stop() ends before each working meter's last sample.

A meter that fails (MeterError) stops being read: its error time and message are kept in
``errors`` and its samples so far are still returned. The other meters keep going.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from agents.meters.base import Meter, MeterError

Trace = tuple[np.ndarray, np.ndarray]


class _Channel:
    """The samples of one meter."""

    def __init__(self, meter: Meter, capacity: int) -> None:
        self.meter = meter
        self.t = np.empty(capacity, dtype=np.int64)
        self.v = np.empty(capacity, dtype=np.float64)
        self.n = 0
        self.first = threading.Event()
        self.dead = False  # failed, or given up on by the controller: no more samples
        self.thread: threading.Thread | None = None

    def append(self, t_ns: int, value: float) -> None:
        if self.n == self.t.size:
            self.t = np.concatenate((self.t, np.empty_like(self.t)))
            self.v = np.concatenate((self.v, np.empty_like(self.v)))
        self.t[self.n] = t_ns
        self.v[self.n] = value
        self.n += 1


class Sampler:
    """Reads meters in the background at their sample rates; stop() returns each meter's (t_ns, values)."""

    def __init__(self, meters: Sequence[Meter], expected_duration_s: float = 60.0,
                 clock: Callable[[], int] = time.perf_counter_ns, join_timeout_s: float = 5.0) -> None:
        names = [m.info.name for m in meters]
        if len(set(names)) != len(names):
            raise ValueError(f"meter names must be unique: {names}")
        self.clock = clock
        self.join_timeout_s = join_timeout_s
        self._channels = {
            m.info.name: _Channel(m, max(16, math.ceil(m.info.sample_rate_hz * expected_duration_s * 1.25) + 2))
            for m in meters
        }
        self.errors: dict[str, tuple[int, str]] = {}
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._state = "new"

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Starts one thread per meter and returns when each has taken (or failed) its first sample."""
        if self._state != "new":
            raise RuntimeError("a Sampler can be started once")
        self._state = "running"
        for name, ch in self._channels.items():
            ch.thread = threading.Thread(target=self._run, args=(ch,), name=f"sampler:{name}", daemon=True)
            ch.thread.start()
        for name, ch in self._channels.items():
            if not ch.first.wait(self.join_timeout_s):
                self._fail(ch, self.clock(), f"{name} did not answer its first read within {self.join_timeout_s:g} s")

    def stop(self) -> dict[str, Trace]:
        """Takes a last sample of each working meter, stops the threads, returns {name: (t_ns, values)}."""
        if self._state == "new":
            raise RuntimeError("the Sampler was never started")
        if self._state == "running":
            self._stop.set()
            for name, ch in self._channels.items():
                assert ch.thread is not None
                ch.thread.join(self.join_timeout_s)
                if ch.thread.is_alive():
                    self._fail(ch, self.clock(), f"{name} did not answer within {self.join_timeout_s:g} s of stop")
            self._state = "stopped"
        return self.traces()

    def traces(self) -> dict[str, Trace]:
        """Copies of the samples recorded so far (complete once stop() has returned)."""
        with self._changed:
            return {name: (ch.t[: ch.n].copy(), ch.v[: ch.n].copy()) for name, ch in self._channels.items()}

    # -- observation -------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """How many samples each meter has recorded so far."""
        with self._changed:
            return {name: ch.n for name, ch in self._channels.items()}

    def wait_until(self, predicate: Callable[[Sampler], bool], timeout_s: float) -> bool:
        """Blocks until predicate(self) holds (checked after every sample and error); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout=timeout_s)

    def wait_for_samples(self, n: int, timeout_s: float = 10.0, names: Sequence[str] | None = None) -> bool:
        """Waits until each named meter (default: every meter without an error) has at least n samples."""
        def enough(s: Sampler) -> bool:
            wanted = names if names is not None else [k for k in s._channels if k not in s.errors]
            return all(s._channels[k].n >= n for k in wanted)
        return self.wait_until(enough, timeout_s)

    # -- the sampling threads ----------------------------------------------------------------------
    def _fail(self, ch: _Channel, t_ns: int, message: str) -> None:
        with self._changed:
            ch.dead = True
            self.errors.setdefault(ch.meter.info.name, (t_ns, message))
            self._changed.notify_all()

    def _sample(self, ch: _Channel) -> bool:
        t0 = self.clock()
        try:
            value = float(ch.meter.read())
        except MeterError as exc:
            self._fail(ch, self.clock(), str(exc))
            return False
        except Exception as exc:  # a broken meter must not end the run silently
            self._fail(ch, self.clock(), f"{type(exc).__name__}: {exc}")
            return False
        t1 = self.clock()
        with self._changed:
            if ch.dead:
                return False
            ch.append((t0 + t1) // 2, value)
            self._changed.notify_all()
        return True

    def _run(self, ch: _Channel) -> None:
        period_ns = max(1, round(1e9 / ch.meter.info.sample_rate_hz))
        due = self.clock()
        stopping = False
        try:
            while True:
                ok = self._sample(ch)
                ch.first.set()
                if not ok or stopping:
                    return
                due += period_ns
                now = self.clock()
                if due < now:  # fell behind (a slow read): skip the missed slots rather than burst
                    due = now
                stopping = self._stop.wait((due - now) / 1e9)
        finally:
            ch.first.set()
