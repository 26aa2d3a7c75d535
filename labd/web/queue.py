"""The queue as people ask about it: how many tasks wait, and for how long the oldest has, per device class and per
device tag."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pilotlab import domain as d


@dataclass
class QueueLine:
    group: str  # "class" or "tag"
    key: str  # the class, or KEY=VALUE of the tag
    depth: int
    oldest_ms: int  # when the oldest waiting task was queued (Unix ms)

    def wait_ms(self, now_ms: int) -> int:
        return max(0, now_ms - self.oldest_ms)


def queue_lines(runs: Iterable[d.Run], fleet: Iterable[d.Device]) -> list[QueueLine]:
    """Queued tasks of these runs, per class of their device and per tag it carries; deepest first. A task queued
    on a device that is gone counts under class "unknown"."""
    by_id = {dev.id: dev for dev in fleet}
    lines: dict[tuple[str, str], QueueLine] = {}

    def add(group: str, key: str, queued_ms: int) -> None:
        line = lines.setdefault((group, key), QueueLine(group, key, 0, queued_ms))
        line.depth += 1
        line.oldest_ms = min(line.oldest_ms, queued_ms)

    for run in runs:
        if run.status.terminal:
            continue
        for t in run.tasks:
            if t.status != d.Status.QUEUED:
                continue
            queued = t.queued_ms or run.submitted_ms
            dev = by_id.get(t.device_id)
            add("class", dev.device_class if dev else "unknown", queued)
            for k, v in sorted((dev.tags if dev else {}).items()):
                add("tag", f"{k}={v}", queued)
    return sorted(lines.values(), key=lambda x: (x.group != "class", -x.depth, x.oldest_ms, x.key))
