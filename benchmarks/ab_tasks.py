"""Interleaved A/B of the task figures of two or more microray trees, in one sitting.

On a machine others load, whole benchmark runs one after the other differ by more
than the changes they are meant to show. This starts one driver per tree (each with
its own interpreter, e.g. each worktree's venv), keeps them all up, and asks them in
turn for one batch at a time, so every round measures every tree within a second or
two of the others (the order flips each round):

    .venv/bin/python benchmarks/ab_tasks.py --rounds 40 \\
        base=/work/base/.venv/bin/python new=.venv/bin/python

Figures, as ``peer_bench`` measures them (``--figures`` picks some): ``tasks_sync_per_s``
(``--sync`` times ``get(noop.remote())``), ``tasks_async_per_s`` (``--async-tasks``
``noop.remote()`` then one ``get``), ``actor_calls_sync_per_s`` (``--sync`` times
``get(actor.ping.remote())``), ``get_gb_per_s`` (10 ``get`` of a 100 MB array),
``pass_large_arg_per_s`` (10 tasks given that array, submitted together) and
``nested_tasks_per_s`` (5 tasks in turn, each running 100 no-op tasks and waiting for
them). For each it prints every tree's median and quartiles and, for each tree after
the first, the median of its per-round ratio to the first tree (the
steadiest figure of a change). Prints one JSON object on stdout; progress on stderr.
The other trees' idle clusters are up while one is measured, for every tree alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def serve() -> None:
    """One driver: init, then answer ``sync N`` / ``async N`` lines with a rate."""
    import microray as ray

    @ray.remote
    def noop():
        return None

    @ray.remote
    def shape_of(a):
        return tuple(a.shape)

    @ray.remote
    def nested_parent(n):
        ray.get([noop.remote() for _ in range(n)])
        return n

    @ray.remote
    class Pinger:
        def ping(self):
            return None

    ray.init(num_cpus=2)
    ray.get(noop.remote())
    pinger = Pinger.remote()
    ray.get(pinger.ping.remote())
    import numpy as np

    big = ray.put(np.zeros(12_500_000))  # 100 MB: a get is a zero-copy view, so this is call cost
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        n = int(words[1])
        t = time.perf_counter()
        if words[0] == "sync":
            for _ in range(n):
                ray.get(noop.remote())
            rate = n / (time.perf_counter() - t)
        elif words[0] == "actor":
            for _ in range(n):
                ray.get(pinger.ping.remote())
            rate = n / (time.perf_counter() - t)
        elif words[0] == "large":
            ray.get([shape_of.remote(big) for _ in range(n)])
            rate = n / (time.perf_counter() - t)
        elif words[0] == "nested":
            for _ in range(n):
                ray.get(nested_parent.remote(100))
            rate = n * 100 / (time.perf_counter() - t)
        elif words[0] == "getgb":
            for _ in range(n):
                x = ray.get(big)
                del x
            rate = n * 1e8 / 1e9 / (time.perf_counter() - t)
        else:
            refs = [noop.remote() for _ in range(n)]
            ray.get(refs)
            rate = n / (time.perf_counter() - t)
            del refs
        print(rate, flush=True)
    ray.shutdown()


def _quartiles(values: list[float]) -> dict[str, float]:
    q1, med, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0],) * 3
    return {"median": round(statistics.median(values)), "q1": round(q1), "q3": round(q3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", help="LABEL=PYTHON: a label and the interpreter of a tree's venv")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--sync", type=int, default=1000, help="tasks per sync batch")
    parser.add_argument("--async-tasks", type=int, default=10000, help="tasks per async batch")
    parser.add_argument("--figures", default="tasks_sync_per_s,tasks_async_per_s",
                        help="comma-separated: tasks_sync_per_s, tasks_async_per_s, actor_calls_sync_per_s, get_gb_per_s, "
                             "pass_large_arg_per_s, nested_tasks_per_s")
    args = parser.parse_args()
    commands = {"tasks_sync_per_s": f"sync {args.sync}", "tasks_async_per_s": f"async {args.async_tasks}",
                "actor_calls_sync_per_s": f"actor {args.sync}", "get_gb_per_s": "getgb 10",
                "pass_large_arg_per_s": "large 10", "nested_tasks_per_s": "nested 5"}
    unknown = [f for f in args.figures.split(",") if f not in commands]
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(unknown)}; expected some of {', '.join(commands)}")
    drivers: dict[str, subprocess.Popen] = {}
    try:
        for spec in args.trees:
            label, sep, python = spec.partition("=")
            if not sep or not python:
                parser.error(f"a tree is LABEL=PYTHON, got {spec!r}")
            proc = subprocess.Popen([python, os.path.abspath(__file__), "--serve"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd="/tmp")
            drivers[label] = proc
            if proc.stdout is None or proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the driver of {label} ({python}) did not start")

        def ask(label: str, command: str) -> float:
            proc = drivers[label]
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(command + "\n")
            proc.stdin.flush()
            return float(proc.stdout.readline())

        figures = {f: commands[f] for f in args.figures.split(",")}
        for label in drivers:  # warm-up
            for command in figures.values():
                ask(label, command)
        rates: dict[str, dict[str, list[float]]] = {f: {label: [] for label in drivers} for f in figures}
        for r in range(args.rounds):
            order = list(drivers) if r % 2 == 0 else list(drivers)[::-1]
            for figure, command in figures.items():
                for label in order:
                    rates[figure][label].append(ask(label, command))
            sys.stderr.write(f"round {r + 1}/{args.rounds}\n")
        first = next(iter(drivers))
        out: dict[str, dict] = {}
        for figure, by_label in rates.items():
            out[figure] = {label: _quartiles(values) for label, values in by_label.items()}
            for label, values in by_label.items():
                if label != first:
                    ratios = [v / b for v, b in zip(values, by_label[first])]
                    out[figure][label]["ratio_to_" + first] = round(statistics.median(ratios), 3)
        print(json.dumps(out))
    finally:
        for proc in drivers.values():
            if proc.stdin is not None and proc.poll() is None:
                try:
                    proc.stdin.write("quit\n")
                    proc.stdin.flush()
                except OSError:
                    pass
        for proc in drivers.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        main()
