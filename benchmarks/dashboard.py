"""The web dashboard at scale: API latency with 100,000 tasks recorded, and the
dashboard process's memory after 1,000,000 tasks.

1. Runs ``--tasks`` real no-op tasks (default 100,000) on an embedded cluster with
   ``task_history_cap=200000`` so that every one of them is kept in the GCS task
   history (``--synthetic`` reports them through ``ReportTaskEvents`` instead),
   then measures ``GET /api/v0/tasks?limit=100`` (p50/p95 over ``--requests``
   calls), plus a filtered query, a deep page and ``/metrics``.
2. Reports synthetic task events (three per task: PENDING_NODE_ASSIGNMENT,
   SUBMITTED_TO_WORKER, FINISHED, the rows an owner sends) through the GCS
   ``ReportTaskEvents`` RPC in batches until ``--report`` tasks (default 1,000,000)
   have been recorded in all, polling the dashboard's API as it goes, and records
   the dashboard process's RSS (and the GCS's, whose history is capped) along the way.

Ray's own release test for comparison: p50 ~ 70 ms, p95 ~ 370 ms for its task list
with 100,000 tasks; its dashboard used 1.28 GB after 1,000,000 tasks.

Usage::

    .venv/bin/python benchmarks/dashboard.py                       # the figures above
    .venv/bin/python benchmarks/dashboard.py --tasks 20000 --report 200000 --json
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import sys
import time
import urllib.request
from typing import Any

import psutil

import microray as ray


@ray.remote
def noop() -> None:
    return None


def _get(url: str) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as resp:
        body = resp.read()
    return time.perf_counter() - t0, body


def _latency(url: str, n: int) -> dict[str, float]:
    _get(url)  # warm
    times = sorted(_get(url)[0] for _ in range(n))
    return {
        "p50_ms": round(1e3 * statistics.median(times), 1),
        "p95_ms": round(1e3 * times[int(0.95 * (len(times) - 1))], 1),
        "max_ms": round(1e3 * times[-1], 1),
        "n": n,
    }


def _rss_mb(pid: int) -> float:
    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


def _counts(base: str) -> dict[str, int]:
    return json.loads(_get(f"{base}/api/v0/tasks?limit=1")[1])["counts"]


def _wait_recorded(base: str, n: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while sum(_counts(base).get(s, 0) for s in ("FINISHED", "FAILED")) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"the GCS did not record {n} tasks within {timeout}s")
        time.sleep(0.5)


def run_real(n: int) -> float:
    t0 = time.perf_counter()
    batch = 5000
    for start in range(0, n, batch):
        ray.get([noop.remote() for _ in range(min(batch, n - start))])
    return time.perf_counter() - t0


def _synthetic_batch(start: int, count: int, job: str, node: str) -> bytes:
    now = time.time()
    rows: list[dict[str, Any]] = []
    for i in range(start, start + count):
        task_id = f"{0xbe:02x}{i:030x}"
        rows.append({"task_id": task_id, "state": "PENDING_NODE_ASSIGNMENT", "time": now, "name": f"synthetic_{i % 7}",
                     "func_or_class_name": f"synthetic_{i % 7}", "job_id": job, "type": "NORMAL_TASK",
                     "actor_id": None, "required_resources": {"CPU": 1.0}, "parent_task_id": None, "owner": "bench",
                     "attempt": 0, "args_summary": [repr(i)], "submit_time": now})
        rows.append({"task_id": task_id, "state": "SUBMITTED_TO_WORKER", "time": now, "worker_id": "w" * 28,
                     "node_id": node, "worker_pid": 1, "attempt": 0})
        rows.append({"task_id": task_id, "state": "FINISHED", "time": now + 0.001, "duration_s": 0.001})
    return pickle.dumps(rows)


def report_synthetic(gcs_address: str, start: int, count: int, node: str, on_progress: Any, batch: int = 5000) -> float:
    from microray import rpc
    from microray.core import context
    from microray.protocol import gcs_pb2, gcs_pb2_grpc

    t0 = time.perf_counter()
    with rpc.blocking_channel(gcs_address, context.worker.credentials) as ch:
        stub = gcs_pb2_grpc.GcsStub(ch)
        done = 0
        while done < count:
            k = min(batch, count - done)
            stub.ReportTaskEvents(gcs_pb2.TaskEventBatch(events=_synthetic_batch(start + done, k, "ff000000", node)),
                                  timeout=120)
            done += k
            on_progress(start + done)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=100_000, help="tasks recorded before the latency figures")
    ap.add_argument("--report", type=int, default=1_000_000, help="tasks recorded in all for the RSS figure")
    ap.add_argument("--requests", type=int, default=200, help="requests per latency figure")
    ap.add_argument("--cap", type=int, default=200_000, help="task_history_cap of the cluster")
    ap.add_argument("--synthetic", action="store_true", help="report the first --tasks synthetically too")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    ray.init(num_cpus=2, dashboard="web", dashboard_port=0, task_history_cap=args.cap, log_to_driver=False)
    head = ray.api._head
    base = head.dashboard_url
    dash_pid, gcs_pid = head.pids["dashboard"], head.pids["gcs"]
    node = ray.api._worker.node_id
    out: dict[str, Any] = {"tasks": args.tasks, "report": args.report, "history_cap": args.cap, "cpus": os.cpu_count()}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _get(f"{base}/api/v0/cluster")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        out["rss_mb_start"] = {"dashboard": _rss_mb(dash_pid), "gcs": _rss_mb(gcs_pid)}

        # -- 1. latency with --tasks recorded ------------------------------------------------
        if args.synthetic:
            secs = report_synthetic(head.gcs_address, 0, args.tasks, node, lambda _n: None)
            out["recorded_how"] = "synthetic events through ReportTaskEvents"
        else:
            secs = run_real(args.tasks)
            out["recorded_how"] = "real no-op tasks"
        _wait_recorded(base, args.tasks)
        out["record_seconds"] = round(secs, 1)
        kept = json.loads(_get(f"{base}/api/v0/tasks?limit=1")[1])["total"]
        out["history_kept"] = kept
        out["latency_at_tasks"] = {
            "/api/v0/tasks?limit=100": _latency(f"{base}/api/v0/tasks?limit=100", args.requests),
            "/api/v0/tasks?limit=100&state=FINISHED&name=noop": _latency(
                f"{base}/api/v0/tasks?limit=100&state=FINISHED&name=noop", max(20, args.requests // 4)),
            "/api/v0/tasks?limit=100&offset=50000": _latency(f"{base}/api/v0/tasks?limit=100&offset=50000",
                                                             max(20, args.requests // 4)),
            "/metrics": _latency(f"{base}/metrics", max(20, args.requests // 4)),
            "/api/v0/cluster": _latency(f"{base}/api/v0/cluster", max(20, args.requests // 4)),
        }
        out["rss_mb_at_tasks"] = {"dashboard": _rss_mb(dash_pid), "gcs": _rss_mb(gcs_pid)}

        # -- 2. RSS up to --report tasks ---------------------------------------------------------
        trace: list[dict[str, Any]] = []
        next_mark = [0]

        def progress(total: int) -> None:
            recorded = total
            if recorded >= next_mark[0]:
                _get(f"{base}/api/v0/tasks?limit=100")  # keep the dashboard busy meanwhile
                _get(f"{base}/metrics")
                _get(f"{base}/api/v0/timeseries")
                trace.append({"tasks": recorded, "dashboard_rss_mb": _rss_mb(dash_pid), "gcs_rss_mb": _rss_mb(gcs_pid)})
                next_mark[0] = recorded + 100_000

        more = max(0, args.report - args.tasks)
        secs = report_synthetic(head.gcs_address, args.tasks, more, node, progress)
        out["report_seconds"] = round(secs, 1)
        for _ in range(5):  # the sampler and a few scrapes with the full history
            _get(f"{base}/api/v0/tasks?limit=100")
            _get(f"{base}/metrics")
            time.sleep(0.2)
        counts = _counts(base)
        out["recorded_in_all"] = sum(counts.get(s, 0) for s in ("FINISHED", "FAILED"))
        out["rss_trace"] = trace
        out["rss_mb_end"] = {"dashboard": _rss_mb(dash_pid), "gcs": _rss_mb(gcs_pid)}
        out["latency_at_end"] = {
            "/api/v0/tasks?limit=100": _latency(f"{base}/api/v0/tasks?limit=100", max(20, args.requests // 2)),
        }
    finally:
        ray.shutdown()
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"dashboard benchmark ({out['cpus']} CPUs, task_history_cap={out['history_cap']})")
    print(f"1. {out['tasks']:,} tasks recorded ({out['recorded_how']}, {out['record_seconds']} s); "
          f"kept in history: {out['history_kept']:,}")
    for path, lat in out["latency_at_tasks"].items():
        print(f"   {path:48s} p50 {lat['p50_ms']:7.1f} ms   p95 {lat['p95_ms']:7.1f} ms   (n={lat['n']})")
    print(f"2. {out['recorded_in_all']:,} tasks recorded in all ({out['report_seconds']} s of synthetic reports)")
    for row in out["rss_trace"]:
        print(f"   after {row['tasks']:>9,} tasks: dashboard RSS {row['dashboard_rss_mb']:6.1f} MB, "
              f"GCS RSS {row['gcs_rss_mb']:7.1f} MB")
    print(f"   dashboard RSS: start {out['rss_mb_start']['dashboard']} MB, at {out['tasks']:,} tasks "
          f"{out['rss_mb_at_tasks']['dashboard']} MB, end {out['rss_mb_end']['dashboard']} MB")
    lat = out["latency_at_end"]["/api/v0/tasks?limit=100"]
    print(f"   /api/v0/tasks?limit=100 with the history full: p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms")


if __name__ == "__main__":
    sys.exit(main())
