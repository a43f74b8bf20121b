"""What the cluster has and did, read from its GCS: ``nodes()``, ``cluster_resources()``,
``available_resources()`` (Ray's names; ``microray.api`` exports them) and ``timeline()``,
the ended tasks of the task history as Chrome trace events, which ``microray timeline``
and the dashboard's Timeline view use too."""

from __future__ import annotations

import json
import os
import pickle
import time
from collections.abc import Callable
from typing import Any

from microray.core import context


# -- cluster info -------------------------------------------------------------------
def nodes() -> list[dict[str, Any]]:
    """Every node the GCS knows, in Ray's format."""
    out = []
    for n in context.current_worker().get_all_nodes():
        out.append(
            {
                "NodeID": n.node_id,
                "Alive": n.state == "ALIVE",
                "NodeManagerAddress": n.ip,
                "NodeManagerHostname": n.ip,
                "NodeManagerPort": n.raylet_port,
                "ObjectStoreSocketName": n.object_store_namespace,
                "Resources": dict(n.total.amounts) if n.state == "ALIVE" else {},
                "Labels": dict(n.labels),
                "IsHead": n.is_head,
            }
        )
    return out


def cluster_resources() -> dict[str, float]:
    from microray.interfaces.scheduling import sum_resources

    return sum_resources(n.total.amounts for n in context.current_worker().get_all_nodes() if n.state == "ALIVE")


def available_resources() -> dict[str, float]:
    """Resources free now, summed over live nodes. ``CPU`` is always present (0 when
    every CPU is in use), as in Ray; other resources appear only while some is free."""
    avail: dict[str, float] = {"CPU": 0.0}
    for n in context.current_worker().get_all_nodes():
        if n.state == "ALIVE":
            for k, v in n.available.amounts.items():
                if v > 0:
                    avail[k] = avail.get(k, 0.0) + v
    return avail


# -- timeline -------------------------------------------------------------------------
TIMELINE_STATES = ("FINISHED", "FAILED")
_TIMELINE_LIMIT = 2_000_000  # per state: more than the GCS task history ever holds

TaskFilter = tuple[str, str, Any]


def timeline(filename: str | os.PathLike[str] | None = None) -> list[dict[str, Any]] | None:
    """Ray's ``ray.timeline``: the ended tasks of the cluster's task history as Chrome
    trace events (``timeline_events``), oldest first; open them in chrome://tracing or
    Perfetto. With ``filename`` they are written there as a JSON list and None is
    returned. Tasks that ended before the call are in it: this process sends its own
    task events first and waits one report period for other processes' (tasks that
    tasks submitted)."""
    worker = context.worker
    if worker is None:
        raise RuntimeError("microray is not initialized: timeline() reads the task history of the cluster "
                           "this process is connected to; call microray.init() first")
    from microray.core.task_events import FLUSH_PERIOD_S
    from microray.protocol import gcs_pb2

    others_reported = time.monotonic() + FLUSH_PERIOD_S + 0.1
    worker.run(worker.submitter.events.flush())
    time.sleep(max(0.0, others_reported - time.monotonic()))

    def read(filters: list[TaskFilter], limit: int) -> list[dict[str, Any]]:
        request = gcs_pb2.GetTaskEventsRequest(filters=pickle.dumps(filters), limit=limit)
        return pickle.loads(worker.call(worker.gcs.GetTaskEvents, request).tasks)

    events = chrome_trace(read)
    if filename is None:
        return events
    write_timeline(events, filename)
    return None


def chrome_trace(read_tasks: Callable[[list[TaskFilter], int], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The trace events of every ended task; ``read_tasks(filters, limit)`` returns task
    rows of the GCS history (``StateClient.tasks``' rows). Shared by ``timeline()`` and
    ``microray timeline``."""
    tasks: list[dict[str, Any]] = []
    for state in TIMELINE_STATES:
        tasks += read_tasks([("state", "=", state)], _TIMELINE_LIMIT)
    return timeline_events(tasks)


def timeline_events(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chrome trace events ("ph": "X", times in microseconds) of the ended tasks among
    ``tasks`` (task rows of the GCS history), oldest first: pid = node, tid = worker.
    ``timeline()`` returns them, ``microray timeline`` writes them, the dashboard's
    Timeline view draws them."""
    events = []
    for t in tasks:
        start, end = t.get("start_time"), t.get("end_time")
        if t.get("state") not in TIMELINE_STATES or not start or not end:
            continue
        events.append({
            "name": t.get("name") or t.get("func_or_class_name") or "?",
            "cat": t.get("type") or "task",
            "ph": "X",
            "ts": start * 1e6,
            "dur": max(0.0, (end - start) * 1e6),
            "pid": f"node {str(t.get('node_id') or '?')[:8]}",
            "tid": f"worker {t.get('worker_pid') or str(t.get('worker_id') or '?')[:8]}",
            "args": {"task_id": t.get("task_id"), "state": t.get("state"), "attempt": t.get("attempt", 0),
                     "job_id": t.get("job_id"), "node_id": t.get("node_id"), "worker_id": t.get("worker_id"),
                     "worker_pid": t.get("worker_pid")},
        })
    events.sort(key=lambda e: e["ts"])
    return events


def write_timeline(events: list[dict[str, Any]], filename: str | os.PathLike[str]) -> None:
    """Write trace events as Ray does: one JSON list (chrome://tracing and Perfetto open it)."""
    with open(filename, "w") as out:
        json.dump(events, out)
