"""Moving objects between nodes on this machine (loopback), with ``Cluster``.

1. ``1 GB``: a 1 GB numpy array made by a task on node B is read by a task on node C
   (which only touches one byte: the view is zero-copy, so the time is the transfer).
   GB/s = size / (submit -> result), median of ``--reps`` after a warm-up; meanwhile the
   RSS of B's and C's raylets is sampled every 5 ms and the peak over the baseline is
   reported, private memory (RssAnon: heap, chunk buffers) apart from shared memory
   (RssShmem: the object's pages in the store, which the destination must hold anyway).
2. ``broadcast``: one 100 MB array made on B is read by a task on each of 4 other nodes
   at once; aggregate GB/s = 4 x size / time, and (microray) each node pulled it once.

The same code runs against Ray (``--system ray``, in Ray's venv) with Ray's own
``ray.cluster_utils.Cluster``, so both can be measured in one sitting::

    .venv/bin/python benchmarks/object_transfer.py [--reps 3] [--size-mb 1000]
    /tmp/ray-venv/bin/python benchmarks/object_transfer.py --system ray
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import threading
import time
from typing import Any

import numpy as np

MB = 1_000_000


def status_kb(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("RssAnon:", "RssShmem:", "RssFile:")):
                    key, value = line.split(":")
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


class RssSampler:
    """Peak RssAnon and RssShmem of some processes over a baseline, sampled on a thread."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.base = {pid: status_kb(pid) for pid in pids}
        self.peak = {pid: dict(v) for pid, v in self.base.items()}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.005):
            for pid in self.pids:
                for key, value in status_kb(pid).items():
                    if value > self.peak[pid].get(key, 0):
                        self.peak[pid][key] = value

    def __enter__(self) -> RssSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()

    def extra_mb(self, key: str) -> list[float]:
        return [round((self.peak[p].get(key, 0) - self.base[p].get(key, 0)) / 1000, 1) for p in self.pids]


def raylet_pid(node: Any) -> int:
    if hasattr(node, "raylet_pid"):  # microray's ClusterNode
        return node.raylet_pid
    return node.all_processes["raylet"][0].process.pid  # Ray's node


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", choices=("microray", "ray"), default="microray")
    parser.add_argument("--size-mb", type=int, default=1000)
    parser.add_argument("--broadcast-mb", type=int, default=100)
    parser.add_argument("--broadcast-nodes", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    if args.system == "ray":
        import ray
        from ray.cluster_utils import Cluster
    else:
        import microray as ray
        from microray.cluster_utils import Cluster

    store = int(args.size_mb * MB * 1.5) + 200 * MB
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 300 * MB})
    b = cluster.add_node(num_cpus=1, resources={"b": 100}, object_store_memory=store)
    c = cluster.add_node(num_cpus=1, resources={"c": 100}, object_store_memory=store)
    receivers = [cluster.add_node(num_cpus=1, resources={f"r{i}": 100}, object_store_memory=300 * MB)
                 for i in range(args.broadcast_nodes)]
    cluster.wait_for_nodes()
    if args.system == "ray":
        ray.init(address=cluster.address)
    else:
        cluster.connect()

    @ray.remote(num_cpus=0)
    def make(nbytes: int) -> Any:
        return np.ones(nbytes, dtype=np.uint8)

    @ray.remote(num_cpus=0)
    def touch(arr: Any) -> int:
        return int(arr[len(arr) // 2])  # one byte: a zero-copy view costs nothing more

    result: dict[str, Any] = {"system": args.system, "size_mb": args.size_mb}
    try:
        # a warm-up of every path (workers forked, functions exported, channels open)
        ray.get(touch.options(resources={"c": 1}).remote(make.options(resources={"b": 1}).remote(10 * MB)))
        times, anon, shmem = [], [], []
        for _ in range(args.reps):
            ref = make.options(resources={"b": 1}).remote(args.size_mb * MB)
            ray.wait([ref])
            with RssSampler([raylet_pid(b), raylet_pid(c)]) as rss:
                t0 = time.perf_counter()
                assert ray.get(touch.options(resources={"c": 1}).remote(ref)) == 1
                times.append(time.perf_counter() - t0)
            anon.append(rss.extra_mb("RssAnon"))
            shmem.append(rss.extra_mb("RssShmem"))
            del ref
            gc.collect()
            time.sleep(1.0)  # let both nodes free it before the next one is made
        result["transfer_gb_per_s"] = [round(args.size_mb * MB / t / 1e9, 2) for t in times]
        result["transfer_gb_per_s_median"] = round(args.size_mb * MB / statistics.median(times) / 1e9, 2)
        result["raylet_extra_rss_anon_mb_src_dst"] = anon
        result["raylet_extra_rss_shmem_mb_src_dst"] = shmem

        btimes = []
        for _ in range(args.reps if receivers else 0):
            ref = make.options(resources={"b": 1}).remote(args.broadcast_mb * MB)
            ray.wait([ref])
            t0 = time.perf_counter()
            got = ray.get([touch.options(resources={f"r{i}": 1}).remote(ref) for i in range(len(receivers))])
            btimes.append(time.perf_counter() - t0)
            assert got == [1] * len(receivers)
            del ref
            gc.collect()
            time.sleep(0.5)
        total = args.broadcast_mb * MB * len(receivers)
        if btimes:
            result["broadcast_s"] = [round(t, 3) for t in btimes]
            result["broadcast_aggregate_gb_per_s_median"] = round(total / statistics.median(btimes) / 1e9, 2)
        if args.system == "microray":
            from microray.testing.object_transfer import transfer_stats

            result["pulls_per_receiver"] = [transfer_stats(r).pulls_completed for r in receivers]
            result["pulls_served_by_b"] = transfer_stats(b).pulls_served
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
