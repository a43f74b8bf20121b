"""``/metrics``: the cluster in Prometheus text format (prometheus-client).

Gathered by the dashboard process at scrape time through the kernel's state API:
nodes (resources, object store, workers) from the GCS's node table, which every
raylet refreshes with its heartbeat; task counts from the GCS task history (which
every owner reports to); actors from the GCS actor table; plus this process's own
GCS call latencies and HTTP latencies. Nothing is pushed; nothing grows per task.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Cluster:
    """A prometheus-client collector over the data gathered for one scrape."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def collect(self):
        d = self.data
        if not d:
            return
        tasks = GaugeMetricFamily(
            "microray_tasks", "Tasks by state in the GCS task history (terminal states count every task ever "
            "reported; the others are the tasks in that state now)", labels=["state"])
        for state, n in sorted(d["task_counts"].items()):
            tasks.add_metric([state], n)
        yield tasks
        yield CounterMetricFamily("microray_task_history_evicted", "Finished tasks evicted from the GCS "
                                  "task history by its cap (their counts are kept)", value=d["dropped"])
        yield GaugeMetricFamily("microray_tasks_finished_per_second", "Tasks ended per second over the last "
                                "sampling period", value=d["tasks_per_s"])
        actors = GaugeMetricFamily("microray_actors", "Actors by state", labels=["state"])
        for state, n in sorted(d["actor_counts"].items()):
            actors.add_metric([state], n)
        yield actors
        nodes = GaugeMetricFamily("microray_nodes", "Nodes by state", labels=["state"])
        states = {"ALIVE": 0, "DEAD": 0}
        for n in d["nodes"]:
            states[n["state"]] = states.get(n["state"], 0) + 1
        for state, count in sorted(states.items()):
            nodes.add_metric([state], count)
        yield nodes
        used = GaugeMetricFamily("microray_object_store_used_bytes", "Object store bytes in use", labels=["node_id"])
        cap = GaugeMetricFamily("microray_object_store_capacity_bytes", "Object store capacity", labels=["node_id"])
        workers = GaugeMetricFamily("microray_node_workers", "Worker processes of a node", labels=["node_id"])
        total = GaugeMetricFamily("microray_node_resource_total", "A node's total resources",
                                  labels=["node_id", "resource"])
        avail = GaugeMetricFamily("microray_node_resource_available", "A node's available resources",
                                  labels=["node_id", "resource"])
        for n in d["nodes"]:
            if n["state"] != "ALIVE":
                continue
            nid = n["node_id"]
            used.add_metric([nid], n["object_store_used"])
            cap.add_metric([nid], n["object_store_capacity"])
            workers.add_metric([nid], n["num_workers"])
            for res, v in sorted(n["resources_total"].items()):
                total.add_metric([nid, res], v)
                avail.add_metric([nid, res], n["resources_available"].get(res, 0.0))
        yield from (used, cap, workers, total, avail)
        jobs = GaugeMetricFamily("microray_jobs", "Jobs submitted through the dashboard, by status", labels=["status"])
        for status, n in sorted(d["job_counts"].items()):
            jobs.add_metric([status], n)
        yield jobs
        drivers = GaugeMetricFamily("microray_drivers", "Driver jobs known to the GCS, by state", labels=["state"])
        for state, n in sorted(d["driver_counts"].items()):
            drivers.add_metric([state], n)
        yield drivers


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.gcs_rpc = Histogram(
            "microray_dashboard_gcs_rpc_seconds", "Latency of the dashboard's calls to the GCS",
            ["method"], registry=self.registry, buckets=_BUCKETS,
        )
        self.http = Histogram(
            "microray_dashboard_http_request_seconds", "Latency of the dashboard's HTTP endpoints",
            ["route", "method"], registry=self.registry, buckets=_BUCKETS,
        )
        self._cluster = _Cluster()
        self.registry.register(self._cluster)

    def observe_rpc(self, method: str, seconds: float) -> None:
        self.gcs_rpc.labels(method).observe(seconds)

    def render(self, data: dict[str, Any]) -> bytes:
        """Text exposition of ``data`` (see ``gather``) plus the histograms. Call from one thread."""
        self._cluster.data = data
        try:
            return generate_latest(self.registry)
        finally:
            self._cluster.data = {}


def gather(client: Any) -> dict[str, Any]:
    """One scrape's data, read through a ``StateClient`` (runs on the state thread pool)."""
    tasks = client.tasks([], 1)
    actor_counts: dict[str, int] = {}
    for a in client.actors():
        actor_counts[a["state"]] = actor_counts.get(a["state"], 0) + 1
    driver_counts: dict[str, int] = {}
    for j in client.jobs():
        driver_counts[j["status"]] = driver_counts.get(j["status"], 0) + 1
    return {
        "task_counts": tasks["counts"],
        "dropped": tasks["dropped"],
        "actor_counts": actor_counts,
        "nodes": client.nodes(),
        "driver_counts": driver_counts,
    }
