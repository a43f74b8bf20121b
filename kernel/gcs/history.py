"""The GCS's ring of cluster samples: what the dashboard's charts draw.

Every ``metrics_sample_period_s`` the GCS takes one sample of the cluster from
what it holds anyway (node heartbeats, task counts by state) into a ring of
``metrics_history_points``. Keeping the history here, not in the dashboard,
means a dashboard started on demand (or restarted) still shows the last
minutes, and a second dashboard plugin gets it for free through the state API
(``StateClient.timeseries``). The ring lives in memory: a restarted GCS starts a
new one.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import structlog

log = structlog.get_logger(__name__)

TERMINAL = ("FINISHED", "FAILED", "CANCELLED")
PENDING = ("PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "SUBMITTED_TO_WORKER")  # the last: queued at a worker
RUNNING = "RUNNING"


class ClusterHistory:
    """Samples ``nodes()`` (NodeInfo messages) and ``counts()`` (tasks by state)."""

    def __init__(self, nodes: Callable[[], Iterable[Any]], counts: Callable[[], dict[str, int]],
                 period_s: float, points: int) -> None:
        self._nodes = nodes
        self._counts = counts
        self.period_s = period_s
        self.samples: deque[dict[str, Any]] = deque(maxlen=points)
        self._prev: tuple[float, int] | None = None

    def sample(self) -> dict[str, Any]:
        """Take one sample now, append it to the ring and return it."""
        now = time.time()
        counts = self._counts()
        done = sum(counts.get(s, 0) for s in TERMINAL)
        rate = 0.0
        if self._prev is not None and now > self._prev[0]:
            rate = max(0.0, (done - self._prev[1]) / (now - self._prev[0]))
        self._prev = (now, done)
        store_used = store_capacity = 0
        cpu_total = cpu_available = 0.0
        for n in self._nodes():
            if n.state != "ALIVE":
                continue
            store_used += n.object_store_used
            store_capacity += n.object_store_capacity
            cpu_total += n.total.amounts.get("CPU", 0.0)
            cpu_available += n.available.amounts.get("CPU", 0.0)
        sample = {
            "time": now,
            "tasks_per_s": round(rate, 3),
            "running": counts.get(RUNNING, 0),
            "pending": sum(counts.get(s, 0) for s in PENDING),
            "finished_total": counts.get("FINISHED", 0),
            "failed_total": counts.get("FAILED", 0),
            "store_used": store_used,
            "store_capacity": store_capacity,
            "cpu_used": round(cpu_total - cpu_available, 3),
            "cpu_total": cpu_total,
        }
        self.samples.append(sample)
        return sample

    def since(self, t: float) -> list[dict[str, Any]]:
        """The samples taken after unix time ``t``, oldest first."""
        return [s for s in self.samples if s["time"] > t]

    async def run(self) -> None:
        """Sample every ``period_s`` until cancelled."""
        while True:
            t0 = time.monotonic()
            try:
                self.sample()
            except Exception as exc:  # noqa: BLE001 -- a bad sample must not end the sampler
                log.warning("history_sample_failed", error=repr(exc))
            await asyncio.sleep(max(0.05, self.period_s - (time.monotonic() - t0)))
