"""Tasks and actors spread over a 4-node cluster on this machine, with ``Cluster``.

1. ``tasks``: 20,000 tiny tasks with ``scheduling_strategy="SPREAD"``, all submitted at
   once; tasks/s = count / (first submit -> last result). Each task returns the id of the
   node it ran on, so the JSON shows how many ran on each node.
2. ``actors``: 200 actors (``num_cpus=0``, SPREAD) created at once; the time from the
   first ``.remote()`` until every actor has answered one call (which returns its node id:
   the count per node is in the JSON). The actors are killed after each rep.

Each figure is the median of ``--reps`` reps (after one warm-up of 200 tasks), all in one
cluster: a head and 3 worker nodes of 1 CPU each. The same code runs against Ray
(``--system ray``, in Ray's venv) with Ray's own ``ray.cluster_utils.Cluster``::

    .venv/bin/python benchmarks/cluster_tasks.py [--reps 3] [--tasks 20000] [--actors 200]
    RAY_AUTH_MODE=disabled /tmp/ray-venv/bin/python benchmarks/cluster_tasks.py --system ray
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import time
from typing import Any


def per_node(node_ids: list[str], order: list[str]) -> list[int]:
    """How many of ``node_ids`` are each node of ``order`` (head first)."""
    counts = collections.Counter(node_ids)
    return [counts.get(n, 0) for n in order] + ([sum(v for k, v in counts.items() if k not in order)]
                                                 if set(counts) - set(order) else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", choices=("microray", "ray"), default="microray")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--actors", type=int, default=200)
    parser.add_argument("--actor-reps", type=int, default=None, help="reps of the actor figure (default: --reps)")
    parser.add_argument("--nodes", type=int, default=4, help="the head and nodes-1 worker nodes")
    args = parser.parse_args()

    if args.system == "ray":
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        import ray
        from ray.cluster_utils import Cluster
    else:
        import microray as ray  # type: ignore[no-redef]
        from microray.cluster_utils import Cluster  # type: ignore[no-redef]

    t = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for _ in range(args.nodes - 1):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    if args.system == "ray":
        ray.init(address=cluster.address)
    else:
        cluster.connect()  # finds the cluster token in the cluster's session root
    start_s = time.perf_counter() - t
    out: dict[str, Any] = {"system": args.system, "version": ray.__version__, "nodes": args.nodes,
                           "cpus_per_node": 1, "tasks": args.tasks, "actors": args.actors,
                           "cluster_start_s": round(start_s, 2)}
    try:
        order = [n["NodeID"] for n in sorted(ray.nodes(), key=lambda n: n["NodeManagerAddress"] + str(n.get("NodeManagerPort", "")))
                 if n["Alive"]]
        head_id = ray.get_runtime_context().get_node_id()
        order = [head_id] + [n for n in order if n != head_id]

        @ray.remote
        def where() -> str:
            return ray.get_runtime_context().get_node_id()

        @ray.remote(num_cpus=0)
        class Member:
            def where(self) -> str:
                return ray.get_runtime_context().get_node_id()

        ray.get([where.options(scheduling_strategy="SPREAD").remote() for _ in range(200)])  # warm-up
        tasks_rate, task_counts, actor_s, actor_counts = [], [], [], []
        actor_reps = args.reps if args.actor_reps is None else args.actor_reps
        for rep in range(args.reps):
            t = time.perf_counter()
            ids = ray.get([where.options(scheduling_strategy="SPREAD").remote() for _ in range(args.tasks)])
            tasks_rate.append(args.tasks / (time.perf_counter() - t))
            task_counts.append(per_node(ids, order))
            print(json.dumps({"rep": rep, "tasks_per_s": round(tasks_rate[-1]), "per_node": task_counts[-1]}),
                  file=sys.stderr, flush=True)
            if rep >= actor_reps:
                continue

            t = time.perf_counter()
            actors = [Member.options(scheduling_strategy="SPREAD").remote() for _ in range(args.actors)]
            ids = ray.get([a.where.remote() for a in actors], timeout=600)
            actor_s.append(time.perf_counter() - t)
            actor_counts.append(per_node(ids, order))
            print(json.dumps({"rep": rep, "actors_s": round(actor_s[-1], 2), "per_node": actor_counts[-1]}),
                  file=sys.stderr, flush=True)
            for a in actors:
                ray.kill(a)
            del actors
            time.sleep(2)  # let the killed actors' processes go before the next rep
        out.update(
            tasks_per_s=round(statistics.median(tasks_rate)), tasks_per_s_reps=[round(r) for r in tasks_rate],
            tasks_per_node=task_counts,
            actors_all_answered_s=round(statistics.median(actor_s), 2), actors_s_reps=[round(s, 2) for s in actor_s],
            actors_per_node=actor_counts,
        )
        print(json.dumps(out))
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main()
