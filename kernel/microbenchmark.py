"""``microray microbenchmark``: Ray-named throughput figures on a fresh embedded cluster.

Each figure: one warm-up, then the median of several timed repetitions.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger(__name__)


def _timeit(fn: Callable[[], float], reps: int) -> tuple[float, float]:
    fn()  # warm-up
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates), (statistics.pstdev(rates) if len(rates) > 1 else 0.0)


def run(quick: bool = False, only: set[str] | None = None, as_json: bool = False) -> dict[str, Any]:
    import numpy as np
    from rich.console import Console
    from rich.progress import Progress

    import microray as ray

    scale = 0.2 if quick else 1.0
    reps = 3 if quick else 5
    n_tasks = int(1000 * scale) or 1
    n_async = int(10000 * scale) or 1
    n_small = int(10000 * scale) or 1

    @ray.remote
    def noop():
        return None

    class _Ping:
        def ping(self):
            return None

        async def aping(self):
            return None

    Ping: Any = ray.remote(_Ping)

    arr = np.zeros(100 * 1024 * 1024 // 8, dtype=np.float64)
    results: dict[str, Any] = {}
    started = time.perf_counter()
    # no dashboard: the output is the figures only (no login URL, no port warning)
    ray.init(num_cpus=2, ignore_reinit_error=True, include_dashboard=False)
    results["init_to_ready_s"] = round(time.perf_counter() - started, 4)

    def tasks_sync() -> int:
        for _ in range(n_tasks):
            ray.get(noop.remote())
        return n_tasks

    def tasks_async() -> int:
        ray.get([noop.remote() for _ in range(n_async)])
        return n_async

    def put_calls() -> int:
        for i in range(n_small):
            ray.put(i)
        return n_small

    small_refs = [ray.put(i) for i in range(n_small)]

    def get_calls() -> int:
        for r in small_refs:
            ray.get(r)
        return n_small

    def put_gb() -> int:
        ref = ray.put(arr)
        del ref
        return arr.nbytes // 10**9 or 1

    big = {"ref": ray.put(arr)}

    def get_gb() -> int:
        ray.get(big["ref"])
        return arr.nbytes // 10**9 or 1

    actor: dict[str, Any] = {}

    def actor_sync() -> int:
        a = actor.setdefault("a", Ping.remote())
        for _ in range(n_tasks):
            ray.get(a.ping.remote())
        return n_tasks

    def actor_async() -> int:
        a = actor.setdefault("a", Ping.remote())
        ray.get([a.ping.remote() for _ in range(n_async)])
        return n_async

    figures: list[tuple[str, Callable[[], float], float]] = [
        ("single client tasks sync", tasks_sync, 1),
        ("single client tasks async", tasks_async, 1),
        ("single client put calls", put_calls, 1),
        ("single client get calls", get_calls, 1),
        ("single client put gigabytes", lambda: _gb(put_gb), 1),
        ("single client get gigabytes", lambda: _gb(get_gb), 1),
        ("1:1 actor calls sync", actor_sync, 1),
        ("1:1 actor calls async", actor_async, 1),
    ]
    console = Console(stderr=True)
    try:
        with Progress(console=console, transient=True) as progress:
            bar = progress.add_task("microbenchmark", total=len(figures))
            for name, fn, _ in figures:
                if only and not any(o in name for o in only):
                    progress.advance(bar)
                    continue
                progress.update(bar, description=name)
                try:
                    median, sd = _timeit(fn, reps)
                    results[name] = (round(median, 2), round(sd, 2))
                except Exception as exc:  # noqa: BLE001 -- one figure must not stop the others
                    results[name] = f"failed: {type(exc).__name__}: {exc}"
                progress.advance(bar)
    finally:
        del big
        ray.shutdown()
    if as_json:
        console.print_json(json.dumps(results))
    else:
        out = Console()
        for name, value in results.items():
            if isinstance(value, tuple):
                unit = "GB per second" if "gigabytes" in name else "per second"
                out.print(f"{name} {unit} {value[0]} +- {value[1]}")
            else:
                out.print(f"{name}: {value}")
    return results


_GB = 100 * 1024 * 1024 / 1e9


def _gb(fn: Callable[[], int]) -> float:
    fn()
    return _GB
