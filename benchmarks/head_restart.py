"""How long a head (GCS) restart takes, per GCS store, and what the stores cost the task path.

Starts its own ``redis-server`` and ``etcd`` (``microray.testing.servers``), then per store:

restart timings (``--reps`` kill -9 / restart cycles, medians), measured from the kill:
  ``restart``      ``node.restart_gcs`` issued right after the kill, until the new GCS
                   serves (it has opened the store and loaded the cluster's state);
  ``first_call``   the driver's first call that needs the GCS (``get_actor`` of a detached
                   actor) has succeeded — with ``memory``: has raised the "restarted
                   without the cluster's state" error instead;
  ``heartbeat``    the restarted GCS has recorded a heartbeat of the node (the raylet
                   heartbeats every ``heartbeat_period_s`` = 1 s).
Two kinds of head: ``embedded`` (``init()`` started it; the new GCS is forked by the
driver's launcher) and ``started`` (``microray start --head``; the new GCS is a fresh
interpreter, as with ``microray restart-gcs``).

task throughput with each store selected (embedded head; ``--rounds`` rounds that take the
stores in turn, each on a fresh cluster, medians):
  ``tasks_sync``   ``get(noop.remote())`` one at a time (``--tasks-sync`` tasks);
  ``tasks_async``  ``--tasks-async`` tasks submitted, then one ``get`` of all.

Usage::

    .venv/bin/python benchmarks/head_restart.py                       # everything
    .venv/bin/python benchmarks/head_restart.py --stores redis --reps 5 --json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import microray as ray
from microray import node
from microray.exceptions import RaySystemError
from microray.process import pid_alive
from microray.testing.servers import EtcdServer, RedisServer, running
from microray.util.state import list_nodes

MICRORAY_CLI = str(Path(sys.executable).with_name("microray"))


def log(*args: Any) -> None:
    print("[head_restart]", *args, file=sys.stderr, flush=True)


@ray.remote
def noop() -> None:
    return None


@ray.remote
class Holder:
    def __init__(self, value: int = 0) -> None:
        self.value = value

    def get(self) -> int:
        return self.value


@contextlib.contextmanager
def store_options(name: str) -> Iterator[dict[str, Any]]:
    """The ``gcs_store_options`` of a fresh namespace on a real server of ``name``."""
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    if name == "memory":
        yield {}
    elif name == "redis":
        with running(RedisServer()) as server:
            yield {"url": server.url, "namespace": namespace}
    elif name == "etcd":
        with running(EtcdServer()) as server:
            yield {"url": server.url, "namespace": namespace}
    else:
        raise SystemExit(f"unknown store {name!r}")


def fresh(options: dict[str, Any]) -> dict[str, Any]:
    """The same server, a namespace of its own: every cluster of the benchmark starts empty."""
    return {**options, "namespace": f"bench-{uuid.uuid4().hex[:8]}"} if options else {}


def _wait(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.005) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except Exception:  # noqa: BLE001 -- e.g. the GCS is still coming up
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout}s")
        time.sleep(interval)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- restart cycles ---------------------------------------------------------------------------
def restart_cycle(store: str, handle: node.NodeHandle, gcs_address: str) -> dict[str, float]:
    """kill -9 the GCS of ``handle``, restart it, time the recovery (seconds from the kill)."""
    pid = handle.pids["gcs"]
    os.kill(pid, signal.SIGKILL)
    _wait(lambda: not pid_alive(pid), 10, "dead GCS")
    t_kill = time.perf_counter()
    wall_kill = time.time()
    node.restart_gcs(handle)
    t_serving = time.perf_counter()
    if store == "memory":
        try:
            ray.get_actor("bench-holder")
        except RaySystemError as exc:
            assert "restarted without the cluster's state" in str(exc), exc
        else:
            raise AssertionError("a memory-store GCS restart went unnoticed")
    else:
        holder = ray.get_actor("bench-holder")
        assert ray.get(holder.get.remote(), timeout=60) == 7
    t_call = time.perf_counter()

    def heartbeat() -> bool:
        rows = list_nodes(address=gcs_address)
        return any(n["state"] == "ALIVE" and n["last_heartbeat"] > wall_kill for n in rows)

    _wait(heartbeat, 30, "heartbeat", interval=0.01)
    t_heartbeat = time.perf_counter()
    return {
        "restart_s": t_serving - t_kill,
        "first_call_s": t_call - t_kill,
        "heartbeat_s": t_heartbeat - t_kill,
    }


def _summary(cycles: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in cycles[0]:
        values = [c[key] for c in cycles]
        out[key] = {"median": round(median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}
    return out


def _init_embedded(store: str, options: dict[str, Any]) -> None:
    # launcher_idle_s: keep the driver's fork launcher through the "started" phases, so that
    # every embedded head is a forked one (as a driver's own head is)
    ray.init(num_cpus=2, include_dashboard=False, namespace="bench", gcs_store=store, gcs_store_options=options,
             log_to_driver=False, launcher_idle_s=3600)


def _prepare_state(actors: int) -> list[Any]:
    """What a restarted GCS must recover: a detached named actor, some more live actors."""
    holder = Holder.options(name="bench-holder", lifetime="detached").remote(7)
    extra = [Holder.remote(i) for i in range(actors)]
    ray.get([holder.get.remote()] + [a.get.remote() for a in extra], timeout=120)
    return [holder, *extra]


def store_requests(store: str, options: dict[str, Any]) -> int | None:
    """Requests the store's server has handled so far (a server-wide counter), or None."""
    if store == "redis":
        import redis

        with redis.Redis.from_url(options["url"]) as client:
            return int(client.info("stats")["total_commands_processed"])
    if store == "etcd":
        import urllib.request

        with urllib.request.urlopen(options["url"] + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
        return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
                   if line.startswith("grpc_server_started_total") and 'grpc_service="etcdserverpb.KV"' in line)
    return None


def measure_throughput(store: str, options: dict[str, Any], args: argparse.Namespace) -> dict[str, float]:
    """One round: a fresh embedded cluster on ``store``, warm-up, one sync and one async
    figure, and how many requests the store served meanwhile (the GCS's own background
    reads included)."""
    _init_embedded(store, options)
    try:
        ray.get([noop.remote() for _ in range(200)])
        before = store_requests(store, options)
        t0 = t = time.perf_counter()
        for _ in range(args.tasks_sync):
            ray.get(noop.remote())
        sync = args.tasks_sync / (time.perf_counter() - t)
        t = time.perf_counter()
        refs = [noop.remote() for _ in range(args.tasks_async)]
        ray.get(refs)
        async_ = args.tasks_async / (time.perf_counter() - t)
        elapsed = time.perf_counter() - t0
        after = store_requests(store, options)
        del refs
        out = {"sync": sync, "async": async_, "seconds": elapsed}
        if before is not None and after is not None:
            out["store_requests"] = after - before - (1 if store == "redis" else 0)  # minus our INFO
        return out
    finally:
        ray.shutdown()


def bench_embedded(store: str, options: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    _init_embedded(store, options)
    try:
        cycles = []
        keep = _prepare_state(args.actors)
        for rep in range(args.reps):
            if store == "memory" and rep:
                ray.shutdown()
                _init_embedded(store, options)
                keep = _prepare_state(args.actors)
            cycles.append(restart_cycle(store, ray.api._head, ray.api._worker.gcs_address))
            log(store, "embedded restart", {k: round(v, 3) for k, v in cycles[-1].items()})
        del keep
        return {"restart": _summary(cycles)}
    finally:
        ray.shutdown()


def bench_started(store: str, options: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    root = tempfile.mkdtemp(prefix="microray-bench-sessions-")
    env = dict(os.environ, MICRORAY_SESSION_ROOT=root)
    env.pop("MICRORAY_ADDRESS", None)
    start = [MICRORAY_CLI, "start", "--head", "--num-cpus", "2", f"--gcs-store={store}"]
    for key, value in options.items():
        start += ["--gcs-store-option", f"{key}={value}"]
    old_root = os.environ.get("MICRORAY_SESSION_ROOT")
    os.environ["MICRORAY_SESSION_ROOT"] = root
    handle = None
    try:
        done = subprocess.run(start, env=env, capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise RuntimeError(f"microray start failed: {done.stderr}")
        handle = node.current_cluster(root)
        cycles = []
        for rep in range(args.reps):
            ray.init(address="auto", namespace="bench", log_to_driver=False)
            keep = _prepare_state(args.actors) if (rep == 0 or store == "memory") else None
            cycles.append(restart_cycle(store, handle, handle.gcs_address))
            log(store, "started restart", {k: round(v, 3) for k, v in cycles[-1].items()})
            del keep
            ray.shutdown()
        return {"restart": _summary(cycles)}
    finally:
        if ray.is_initialized():
            ray.shutdown()
        subprocess.run([MICRORAY_CLI, "stop"], env=env, capture_output=True, timeout=60)
        if handle is not None:
            for pid in handle.pids.values():
                with contextlib.suppress(ProcessLookupError):
                    if pid_alive(pid):
                        os.kill(pid, signal.SIGKILL)
        if old_root is None:
            os.environ.pop("MICRORAY_SESSION_ROOT", None)
        else:
            os.environ["MICRORAY_SESSION_ROOT"] = old_root
        if not args.keep_sessions:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
        else:
            log("sessions of the started head kept in", root)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", default="memory,redis,etcd")
    parser.add_argument("--heads", default="embedded,started", help="embedded, started or both")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--actors", type=int, default=4, help="live actors besides the detached one")
    parser.add_argument("--rounds", type=int, default=5, help="throughput rounds (each store once per round)")
    parser.add_argument("--tasks-sync", type=int, default=1000)
    parser.add_argument("--tasks-async", type=int, default=5000)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--keep-sessions", action="store_true", help="keep the started head's session folder")
    args = parser.parse_args(argv)
    from microray import log as log_setup

    log_setup.configure_for_console("warning")  # stdout is for the figures (--json)

    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    heads = [h.strip() for h in args.heads.split(",") if h.strip()]
    results: dict[str, Any] = {store: {} for store in stores}
    throughput: dict[str, dict[str, list[float]]] = {
        store: {"sync": [], "async": [], "store_requests": [], "seconds": []} for store in stores}
    with contextlib.ExitStack() as servers:
        all_options = {store: servers.enter_context(store_options(store)) for store in stores}
        # task throughput: rounds that go through the stores in turn, so that a noisy
        # machine's drift hits every store alike
        for round_ in range(args.rounds):
            for store in stores:
                figures = measure_throughput(store, fresh(all_options[store]), args)
                for key, value in figures.items():
                    throughput[store][key].append(value)
                log(store, f"round {round_ + 1} throughput", {k: round(v) for k, v in figures.items()})
        for store in stores:
            results[store]["tasks_sync_per_s"] = round(median(throughput[store]["sync"]))
            results[store]["tasks_async_per_s"] = round(median(throughput[store]["async"]))
            results[store]["tasks_sync_rounds"] = [round(v) for v in throughput[store]["sync"]]
            results[store]["tasks_async_rounds"] = [round(v) for v in throughput[store]["async"]]
            if throughput[store]["store_requests"]:
                results[store]["store_requests_rounds"] = throughput[store]["store_requests"]
                results[store]["loop_seconds_rounds"] = [round(v, 2) for v in throughput[store]["seconds"]]
            if "embedded" in heads:
                results[store]["embedded"] = bench_embedded(store, fresh(all_options[store]), args)
            if "started" in heads:
                results[store]["started"] = bench_started(store, fresh(all_options[store]), args)
    meta = {"reps": args.reps, "rounds": args.rounds, "actors": args.actors + 1, "tasks_sync": args.tasks_sync,
            "tasks_async": args.tasks_async, "cpus": os.cpu_count(), "load": os.getloadavg()[0]}
    if args.json:
        print(json.dumps({"meta": meta, "results": results}, indent=2))
        return
    print(f"head restart, seconds from kill -9 (median [min-max] of {args.reps}); {meta['actors']} live actors")
    print(f"{'store':8} {'head':9} {'GCS serving':>20} {'first GCS call':>20} {'heartbeat seen':>20}")
    for store, figures in results.items():
        for head in ("embedded", "started"):
            if head not in figures:
                continue
            r = figures[head]["restart"]
            cells = [f"{r[k]['median']:.2f} [{r[k]['min']:.2f}-{r[k]['max']:.2f}]"
                     for k in ("restart_s", "first_call_s", "heartbeat_s")]
            print(f"{store:8} {head:9} {cells[0]:>20} {cells[1]:>20} {cells[2]:>20}")
    print(f"\ntask throughput (embedded head, median [min-max] of {args.rounds} interleaved rounds)")
    print(f"{'store':8} {'tasks_sync/s':>22} {'tasks_async/s':>22}   store requests during the "
          f"{args.tasks_sync + args.tasks_async} tasks (loop seconds)")
    for store, f in results.items():
        cells = [f"{f[k + '_per_s']} [{min(f[k + '_rounds'])}-{max(f[k + '_rounds'])}]"
                 for k in ("tasks_sync", "tasks_async")]
        requests = ", ".join(f"{n} ({sec}s)" for n, sec in zip(f.get("store_requests_rounds", []),
                                                                f.get("loop_seconds_rounds", [])))
        print(f"{store:8} {cells[0]:>22} {cells[1]:>22}   {requests or '-'}")


if __name__ == "__main__":
    main()
