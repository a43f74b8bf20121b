"""Where the web dashboard's data comes from: the kernel's state API, off the event loop.

Every read goes through ``microray.util.state.StateClient`` (GCS, raylets, owners),
called on a small thread pool so that the aiohttp loop never blocks. Calls to the
GCS are timed into a Prometheus histogram. The Overview charts draw the GCS's own
ring of cluster samples (``StateClient.timeseries``), so a dashboard started on
demand shows the minutes before it started, and its memory does not grow with the
number of tasks run.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog

from microray.interfaces.scheduling import sum_resources
from microray.util.state import StateClient, resource_demands

log = structlog.get_logger(__name__)

TERMINAL = ("FINISHED", "FAILED", "CANCELLED")


class _TimedStub:
    """Wraps a sync gRPC stub: every call's latency goes to ``observe(method, seconds)``."""

    def __init__(self, stub: Any, observe: Callable[[str, float], None]) -> None:
        self._stub = stub
        self._observe = observe

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._stub, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self._observe(name, time.perf_counter() - t0)

        return call


class StateSource:
    """Thread-pooled state reads, one state client per pool thread."""

    def __init__(self, gcs_address: str, observe_rpc: Callable[[str, float], None], *, threads: int = 4,
                 token: str | None = None, tls: dict[str, Any] | None = None) -> None:
        self.gcs_address = gcs_address
        self._token = token  # the cluster token every state call carries
        self._tls = tls
        self._observe = observe_rpc
        self._local = threading.local()
        self._clients: list[StateClient] = []
        self._clients_lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dashboard-state")

    # -- calls ------------------------------------------------------------------------
    def client(self) -> StateClient:
        """The calling thread's state client (one per pool thread; channels are reused)."""
        c = getattr(self._local, "client", None)
        if c is None:
            c = StateClient(self.gcs_address, token=self._token, tls=self._tls)
            c.gcs = _TimedStub(c.gcs, self._observe)
            self._local.client = c
            with self._clients_lock:
                self._clients.append(c)
        return c

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(client, *args)`` on the pool and return its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, lambda: fn(self.client(), *args))

    async def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        with self._clients_lock:
            for c in self._clients:
                c.close()
            self._clients.clear()


def snapshot(client: StateClient) -> dict[str, Any]:
    tasks = client.tasks([], 1)
    return {
        "time": time.time(),
        "nodes": client.nodes(),
        "counts": tasks["counts"],
        "tasks_kept": tasks["total"],
        "dropped": tasks["dropped"],
    }


def cluster_summary(latest: dict[str, Any], actors: list[dict[str, Any]]) -> dict[str, Any]:
    """The Overview's numbers from a snapshot and the actor list."""
    nodes = latest.get("nodes", [])
    alive = [n for n in nodes if n["state"] == "ALIVE"]
    total = sum_resources(n["resources_total"] for n in alive)
    avail = sum_resources(n["resources_available"] for n in alive)
    actor_states: dict[str, int] = {}
    for a in actors:
        actor_states[a["state"]] = actor_states.get(a["state"], 0) + 1
    return {
        "nodes": {"alive": len(alive), "dead": len(nodes) - len(alive)},
        "resources": {
            k: {"total": total[k], "used": round(total[k] - avail.get(k, 0.0), 6)} for k in sorted(total)
        },
        "object_store": {
            "used": sum(n["object_store_used"] for n in alive),
            "capacity": sum(n["object_store_capacity"] for n in alive),
        },
        "tasks": {
            "counts": latest.get("counts", {}),
            "kept_in_history": latest.get("tasks_kept", 0),
            "dropped_from_history": latest.get("dropped", 0),
        },
        "actors": {"total": len(actors), "by_state": actor_states},
        "demands": resource_demands(nodes),
        "sampled_at": latest.get("time"),
    }
