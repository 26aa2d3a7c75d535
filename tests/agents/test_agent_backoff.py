"""Exponential backoff with full jitter in the agent's lab client."""

from __future__ import annotations

import pytest

from agents import lab_client
from agents.lab_client import Backoff


def test_delays_within_half_cap_to_cap() -> None:
    b = Backoff(initial_s=0.5, max_s=4.0)
    caps = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    for cap in caps:
        delay = b.next_delay()
        assert cap / 2 <= delay <= cap


def test_cap_doubles_to_max_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    bounds: list[tuple[float, float]] = []
    monkeypatch.setattr(lab_client.random, "uniform", lambda a, b: bounds.append((a, b)) or b)
    b = Backoff(initial_s=0.25, max_s=3.0)
    got = [b.next_delay() for _ in range(7)]
    assert got == [0.25, 0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert bounds == [(c / 2, c) for c in got]


def test_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab_client.random, "uniform", lambda a, b: b)
    b = Backoff(initial_s=1.0, max_s=30.0)
    assert [b.next_delay() for _ in range(4)] == [1.0, 2.0, 4.0, 8.0]
    b.reset()
    assert b.attempt == 0
    assert b.next_delay() == 1.0


def test_many_attempts_stay_at_max() -> None:
    b = Backoff()
    delays = [b.next_delay() for _ in range(200)]
    assert all(0.25 <= x <= 30.0 for x in delays)
    assert all(15.0 <= x <= 30.0 for x in delays[10:])


def test_defaults() -> None:
    b = Backoff()
    assert (b.initial, b.max, b.attempt) == (0.5, 30.0, 0)


def test_long_outage_does_not_overflow() -> None:
    # The worker's reconnect loop keeps one Backoff for as long as the lab is unreachable; 2**1024 * 0.5 once
    # raised OverflowError after ~1024 attempts (some hours of outage) and killed the agent.
    b = Backoff(initial_s=0.5, max_s=30.0)
    for _ in range(1100):
        delay = b.next_delay()
    assert 15.0 <= delay <= 30.0
