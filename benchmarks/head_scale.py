"""The head at scale: the GCS with 10, 100 and 1,000 simulated nodes.

A simulated node does what a raylet does with the GCS and nothing else: ``RegisterNode``
once, then every ``heartbeat_period_s`` a ``Heartbeat`` carrying its available resources,
and the ``WatchNodes`` long-poll the raylet keeps its cluster view with (one call always
in flight, ``wait_s`` = the heartbeat period; ``--watch full`` asks for the whole table in
every reply, as raylets did before deltas), each node on a gRPC channel of its own.
The nodes are asyncio tasks in ``--procs`` processes (so 1,000 fit on a small machine);
the head is a real one (``Cluster`` head: GCS + raylet).

At each level, after ``--settle`` s: the GCS's CPU% (process CPU time over ``--window`` s
of wall time), RSS and PSS, and what the simulated nodes achieved meanwhile (heartbeats/s
answered, WatchNodes replies/s and the node-table bytes they carried). At the last level
one node stops heartbeating (and watching); the time from its last answered heartbeat
until ``GetAllNodes`` lists it DEAD, until a separate ``WatchNodes`` subscriber is told,
and until every other simulated node's watch has been told.

    .venv/bin/python benchmarks/head_scale.py [--levels 10,100,1000] [--procs 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import threading
import time
from typing import Any

import grpc
import psutil


def _stubs():
    from microray.protocol import common_pb2, gcs_pb2, gcs_pb2_grpc

    return common_pb2, gcs_pb2, gcs_pb2_grpc


class SimNode:
    """One simulated raylet: registration, heartbeats and the node-table watch."""

    def __init__(self, gcs_address: str, token: str, period: float, stats: dict[str, float], full: bool) -> None:
        from microray import rpc

        common_pb2, gcs_pb2, gcs_pb2_grpc = _stubs()
        self.node_id = os.urandom(14).hex()
        self.period = period
        self.full = full
        self.stats = stats
        self.channel = rpc.channel(gcs_address, rpc.Credentials(token))  # the token on every call
        self.gcs = gcs_pb2_grpc.GcsStub(self.channel)
        self.total = common_pb2.ResourceMap(amounts={"CPU": 8.0, "memory": 16e9, "object_store_memory": 4e9})
        self.silenced = False
        self.last_heartbeat = 0.0
        self.dead_seen: dict[str, float] = {}  # node id -> when this node's watch first saw it DEAD
        self.tasks: list[asyncio.Task] = []

    async def register(self) -> None:
        common_pb2, _, _ = _stubs()
        info = common_pb2.NodeInfo(
            node_id=self.node_id, ip="127.0.0.1", raylet_port=1, total=self.total, available=self.total,
            state="ALIVE", start_time=time.time(), object_store_namespace=self.node_id[:8],
            object_store_capacity=4_000_000_000, pid=0, labels={"sim": "1"},
        )
        reply = await self.gcs.RegisterNode(info, timeout=60, wait_for_ready=True)
        if reply.refused:
            raise RuntimeError(reply.refused)
        self.tasks = [asyncio.ensure_future(self.heartbeats()), asyncio.ensure_future(self.watch())]

    async def heartbeats(self) -> None:
        common_pb2, gcs_pb2, _ = _stubs()
        await asyncio.sleep(random.uniform(0, self.period))  # raylets start at different times
        while not self.silenced:
            try:
                reply = await self.gcs.Heartbeat(gcs_pb2.HeartbeatRequest(
                    node_id=self.node_id, available=self.total, object_store_used=0, num_workers=0),
                    timeout=max(self.period, 1.0))
                if reply.dead:  # declared dead while alive (its heartbeats were late): a raylet exits
                    self.stats["declared_dead_alive"] += 1
                    self.silenced = True
                    return
                if not self.silenced:
                    self.last_heartbeat = time.time()
                    self.stats["heartbeats"] += 1
            except grpc.aio.AioRpcError:
                self.stats["heartbeat_errors"] += 1
            await asyncio.sleep(self.period)

    async def watch(self) -> None:
        _, gcs_pb2, _ = _stubs()
        version, seq, table_id = -1, 0, ""
        while not self.silenced:
            try:
                reply = await self.gcs.WatchNodes(gcs_pb2.WatchNodesRequest(
                    version=version, wait_s=self.period, seq=0 if self.full else seq, table_id=table_id),
                    timeout=self.period + 5)
            except grpc.aio.AioRpcError:
                self.stats["watch_errors"] += 1
                await asyncio.sleep(self.period)
                continue
            now = time.time()
            version, seq, table_id = reply.version, reply.seq, reply.table_id
            self.stats["watch_replies"] += 1
            self.stats["watch_bytes"] += reply.ByteSize()
            for n in reply.nodes:
                if n.state == "DEAD" and n.node_id not in self.dead_seen:
                    self.dead_seen[n.node_id] = now


async def _simulate(gcs_address: str, token: str, period: float, full: bool, commands: Any, results: Any) -> None:
    stats: dict[str, float] = dict.fromkeys(("heartbeats", "heartbeat_errors", "watch_replies", "watch_bytes",
                                             "watch_errors", "declared_dead_alive"), 0)
    nodes: list[SimNode] = []
    loop = asyncio.get_running_loop()
    while True:
        cmd, arg = await loop.run_in_executor(None, commands.get)
        if cmd == "add":
            new = [SimNode(gcs_address, token, period, stats, full) for _ in range(arg)]
            for i in range(0, len(new), 50):  # a few at a time, as nodes of a real cluster join
                await asyncio.gather(*(n.register() for n in new[i:i + 50]))
            nodes += new
            results.put([n.node_id for n in new])
        elif cmd == "stats":
            results.put(dict(stats))
            for k in stats:
                if k != "declared_dead_alive":
                    stats[k] = 0
        elif cmd == "alive":
            results.put([n.node_id for n in nodes if not n.silenced])
        elif cmd == "silence":
            node = next(n for n in nodes if n.node_id == arg)
            node.silenced = True
            for t in node.tasks:
                t.cancel()
            results.put(node.last_heartbeat)
        elif cmd == "dead_seen":
            seen = [n.dead_seen.get(arg) for n in nodes if not n.silenced]
            results.put(seen)
        elif cmd == "quit":
            for n in nodes:
                for t in n.tasks:
                    t.cancel()
                await n.channel.close()
            results.put("bye")
            return


def simulator(gcs_address: str, token: str, period: float, full: bool, commands: Any, results: Any) -> None:
    import uvloop

    uvloop.run(_simulate(gcs_address, token, period, full, commands, results))


class Sims:
    """The simulator processes, driven from here."""

    def __init__(self, gcs_address: str, token: str, period: float, procs: int, full: bool) -> None:
        ctx = mp.get_context("spawn")
        self.pipes = [(ctx.Queue(), ctx.Queue()) for _ in range(procs)]
        self.procs = [ctx.Process(target=simulator, args=(gcs_address, token, period, full, c, r), daemon=True)
                      for c, r in self.pipes]
        for p in self.procs:
            p.start()
        self.where: dict[str, int] = {}
        self.count = 0

    def ask_all(self, cmd: str, arg: Any = None, timeout: float = 600) -> list[Any]:
        for c, _ in self.pipes:
            c.put((cmd, arg))
        return [r.get(timeout=timeout) for _, r in self.pipes]

    def add(self, n: int) -> None:
        share = [n // len(self.pipes) + (1 if i < n % len(self.pipes) else 0) for i in range(len(self.pipes))]
        for (c, _), k in zip(self.pipes, share):
            c.put(("add", k))
        for i, (_, r) in enumerate(self.pipes):
            for node_id in r.get(timeout=600):
                self.where[node_id] = i
        self.count += n

    def ask(self, node_id: str, cmd: str) -> Any:
        c, r = self.pipes[self.where[node_id]]
        c.put((cmd, node_id))
        return r.get(timeout=60)

    def stop(self) -> None:
        try:
            self.ask_all("quit", timeout=30)
        finally:
            for p in self.procs:
                p.join(timeout=10)
                if p.is_alive():
                    p.kill()


def rollup_mb(pid: int) -> dict[str, float]:
    """Rss and Pss from one read of /proc/PID/smaps_rollup (one consistent snapshot)."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                out[key.lower()] = round(int(rest.split()[0]) / 1e3, 1)
    return out


def cpu_s(procs: list[psutil.Process]) -> float:
    return sum(t.user + t.system for t in (p.cpu_times() for p in procs))


def gcs_sample(proc: psutil.Process, window: float, others: list[psutil.Process] = ()) -> dict[str, float]:
    """The GCS's CPU% over ``window`` s (and the simulator processes', summed), then its
    RSS and PSS, sampled every second of the window and averaged."""
    t0, c0, o0 = time.monotonic(), cpu_s([proc]), cpu_s(list(others))
    mem = []
    end = t0 + window
    while time.monotonic() < end:
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))
        mem.append(rollup_mb(proc.pid))
    t1, c1, o1 = time.monotonic(), cpu_s([proc]), cpu_s(list(others))
    out = {"gcs_cpu_pct": round(100 * (c1 - c0) / (t1 - t0), 1),
           "gcs_rss_mb": round(sum(m["rss"] for m in mem) / len(mem), 1),
           "gcs_pss_mb": round(sum(m["pss"] for m in mem) / len(mem), 1)}
    if others:
        out["sims_cpu_pct"] = round(100 * (o1 - o0) / (t1 - t0), 1)
    return out


def time_to_dead(gcs_address: str, token: str, sims: Sims, victim: str, dead_after: float) -> dict[str, Any]:
    from microray import rpc

    common_pb2, gcs_pb2, gcs_pb2_grpc = _stubs()
    channel = rpc.blocking_channel(gcs_address, rpc.Credentials(token))
    gcs = gcs_pb2_grpc.GcsStub(channel)
    told: dict[str, float] = {}

    def subscriber() -> None:  # one WatchNodes subscriber, as a raylet keeps it
        version = gcs.GetAllNodes(common_pb2.Empty(), timeout=30).version
        while "t" not in told:
            reply = gcs.WatchNodes(gcs_pb2.WatchNodesRequest(version=version, wait_s=5), timeout=30)
            version = reply.version
            if any(n.node_id == victim and n.state == "DEAD" for n in reply.nodes):
                told["t"] = time.time()

    watcher = threading.Thread(target=subscriber, daemon=True)
    watcher.start()
    last = sims.ask(victim, "silence")
    deadline = time.time() + dead_after + 120
    listed = None
    while time.time() < deadline:
        nodes = gcs.GetAllNodes(common_pb2.Empty(), timeout=30).nodes
        if any(n.node_id == victim and n.state == "DEAD" for n in nodes):
            listed = time.time()
            break
        time.sleep(0.05)
    watcher.join(timeout=30)
    time.sleep(dead_after)  # the other simulated nodes' watches come round at least once a period
    seen = [s for per_proc in sims.ask_all("dead_seen", victim) for s in per_proc]
    channel.close()
    told_all = [s for s in seen if s is not None]
    return {
        "node_dead_after_s": dead_after,
        "dead_in_get_all_nodes_s": round(listed - last, 2) if listed else None,
        "dead_told_watch_subscriber_s": round(told["t"] - last, 2) if "t" in told else None,
        "dead_told_all_sim_nodes_s": round(max(told_all) - last, 2) if len(told_all) == len(seen) else None,
        "sim_nodes_told": f"{len(told_all)}/{len(seen)}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="10,100,1000")
    parser.add_argument("--procs", type=int, default=4, help="simulator processes")
    parser.add_argument("--watch", choices=("delta", "full"), default="delta",
                        help="delta: WatchNodes as raylets call it (changes since the last reply); full: "
                             "the whole table in every reply, as before deltas")
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--window", type=float, default=10.0)
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    import microray
    from microray.cluster_utils import Cluster

    common_pb2, gcs_pb2, gcs_pb2_grpc = _stubs()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    sims = None
    out: dict[str, Any] = {"version": microray.__version__, "procs": args.procs, "watch": args.watch, "levels": []}
    try:
        gcs_address = cluster.address
        token = cluster.token
        from microray import rpc

        gcs = gcs_pb2_grpc.GcsStub(rpc.blocking_channel(gcs_address, rpc.Credentials(token)))
        proc = psutil.Process(cluster.head_node.pids["gcs"])
        cfg = json.loads(gcs.GetClusterConfig(common_pb2.Empty(), timeout=30).config_json)
        period, dead_after = cfg["heartbeat_period_s"], cfg["node_dead_after_s"]
        out.update(heartbeat_period_s=period, node_dead_after_s=dead_after)
        out["idle_head"] = gcs_sample(proc, args.window)
        sims = Sims(gcs_address, token, period, args.procs, args.watch == "full")
        for level in levels:
            t = time.perf_counter()
            sims.add(level - sims.count)
            joined = time.perf_counter() - t
            time.sleep(args.settle)
            sims.ask_all("stats")  # reset
            t = time.monotonic()
            row: dict[str, Any] = {"nodes": level, "join_s": round(joined, 1), **gcs_sample(proc, args.window, [psutil.Process(p.pid) for p in sims.procs])}
            span = time.monotonic() - t
            got = sims.ask_all("stats")
            total = {k: sum(s[k] for s in got) for k in got[0]}
            table = gcs.GetAllNodes(common_pb2.Empty(), timeout=30)
            alive = sum(n.state == "ALIVE" for n in table.nodes) - 1  # the head's own node is real
            row.update(
                heartbeats_per_s=round(total["heartbeats"] / span), heartbeats_expected_per_s=round(level / period),
                heartbeat_errors=total["heartbeat_errors"], watch_replies_per_s=round(total["watch_replies"] / span),
                watch_mb_per_s=round(total["watch_bytes"] / span / 1e6, 2), watch_errors=total["watch_errors"],
                node_table_kb=round(table.ByteSize() / 1e3, 1), sim_nodes_alive=alive,
                declared_dead_while_alive=total["declared_dead_alive"],
            )
            out["levels"].append(row)
            print(json.dumps(row), flush=True)
        alive = [n for ids in sims.ask_all("alive") for n in ids]
        out["death"] = (time_to_dead(gcs_address, token, sims, random.choice(alive), dead_after) if alive
                        else {"skipped": "no simulated node is alive (all were declared dead)"})
        print(json.dumps(out))
    finally:
        if sims is not None:
            sims.stop()
        cluster.shutdown()


if __name__ == "__main__":
    main()
