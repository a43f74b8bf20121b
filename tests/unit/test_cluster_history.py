"""The GCS's ring of cluster samples (microray.gcs.history), without a cluster."""

from __future__ import annotations

from microray.gcs.history import ClusterHistory
from microray.protocol import common_pb2


def _node(state: str, cpu_total: float, cpu_free: float, used: int, cap: int) -> common_pb2.NodeInfo:
    n = common_pb2.NodeInfo(state=state, object_store_used=used, object_store_capacity=cap)
    n.total.amounts["CPU"] = cpu_total
    n.available.amounts["CPU"] = cpu_free
    return n


def test_a_sample_sums_alive_nodes_and_counts_tasks():
    nodes = [_node("ALIVE", 4, 1, 100, 1000), _node("ALIVE", 2, 2, 50, 500), _node("DEAD", 8, 0, 7, 7)]
    counts = {"FINISHED": 10, "FAILED": 2, "RUNNING": 3, "SUBMITTED_TO_WORKER": 2, "PENDING_NODE_ASSIGNMENT": 4,
              "PENDING_ARGS_AVAIL": 1}
    s = ClusterHistory(lambda: nodes, lambda: counts, 1.0, 10).sample()
    assert (s["cpu_total"], s["cpu_used"]) == (6, 3)
    assert (s["store_used"], s["store_capacity"]) == (150, 1500)
    # tasks queued at a worker (SUBMITTED_TO_WORKER) are pending, not running
    assert (s["running"], s["pending"], s["finished_total"], s["failed_total"]) == (3, 7, 10, 2)
    assert s["tasks_per_s"] == 0.0  # no earlier sample to compare with


def test_rate_comes_from_terminal_tasks_between_samples_and_the_ring_is_bounded(monkeypatch):
    import microray.gcs.history as history

    clock = iter([100.0, 102.0, 103.0, 104.0])
    monkeypatch.setattr(history.time, "time", lambda: next(clock))
    counts = {"FINISHED": 0}
    h = ClusterHistory(lambda: [], lambda: counts, 1.0, 2)
    h.sample()
    counts.update(FINISHED=8, CANCELLED=2)
    assert h.sample()["tasks_per_s"] == 5.0  # 10 done in 2 s
    h.sample()
    h.sample()
    assert [s["time"] for s in h.samples] == [103.0, 104.0]
    assert [s["time"] for s in h.since(103.0)] == [104.0]
