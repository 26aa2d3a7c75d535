"""Prometheus metrics of labd: connected agents, tasks by state, dispatch latency, results ingested."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pilotlab import domain as d


class _LiveCollector(Collector):
    def __init__(self, connected: Callable[[], int], task_counts: Callable[[], dict[str, int]]) -> None:
        self._connected = connected
        self._task_counts = task_counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily("labd_connected_agents", "Agents with an open session to this labd")
        g.add_metric([], self._connected())
        yield g
        t = GaugeMetricFamily("labd_tasks", "Tasks by state", labels=["state"])
        counts = self._task_counts()
        for s in d.Status:
            t.add_metric([s.value], counts.get(s.value, 0))
        yield t
        q = GaugeMetricFamily("labd_queue_depth", "Tasks waiting for a device")
        q.add_metric([], counts.get(d.Status.QUEUED.value, 0))
        yield q


class LabMetrics:
    def __init__(self, connected: Callable[[], int], task_counts: Callable[[], dict[str, int]]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_LiveCollector(connected, task_counts))
        self.dispatch_latency = Histogram(
            "labd_dispatch_latency_seconds", "From a task entering the queue to its assignment being sent",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry)
        self.results_ingested = Counter("labd_results_ingested", "Raw samples stored", ["kind"],
                                        registry=self.registry)
        self.batches_duplicate = Counter("labd_result_batches_duplicate",
                                         "Result batches received again and ignored", registry=self.registry)
        self.ingest_group_batches = Histogram(
            "labd_ingest_group_batches", "Result batches stored together in one group (one blob append, one "
            "transaction), from all sessions that sent some meanwhile",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=self.registry)
        self.sessions_opened = Counter("labd_sessions_opened", "Agent sessions opened", registry=self.registry)
        self.lease_expiries = Counter("labd_lease_expiries", "Attempts whose lease expired (agent lost)",
                                      registry=self.registry)
        self.requeues = Counter("labd_requeues", "Tasks put back in the queue after an infrastructure error",
                                registry=self.registry)
        self.quarantines = Counter("labd_quarantines", "Devices quarantined after repeated infrastructure errors",
                                   registry=self.registry)

    def serve(self, host: str, port: int) -> int:
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)
