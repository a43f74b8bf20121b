"""Actor figures beside Ray: creating many actors, and 1:1 calls sync / async.

Runs the same code against ``microray`` or ``ray`` (``--system``), so run both in one
sitting and compare the ratio (absolute figures move with the machine's load):

    .venv/bin/python benchmarks/actors.py --system microray
    /tmp/ray-venv/bin/python benchmarks/actors.py --system ray

Figures (each the median of ``--reps`` runs after one warm-up):

- ``create_actors_s``: from the first ``.remote()`` of ``--actors`` actors (default 200,
  after ``--create-warmup`` untimed rounds,
  ``num_cpus=0`` each, as Ray's many-actor tests do) until every one has answered a call;
  the actors are killed after each rep and that is not timed;
- ``actor_calls_sync_per_s``: ``get(a.ping.remote())`` one at a time (as ``peer_bench``);
- ``actor_calls_async_per_s``: ``--calls`` calls submitted, then one ``get`` of all.

Prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import time


def _log(*parts: object) -> None:
    sys.stderr.write(" ".join(str(p) for p in parts) + "\n")


def _median(run, reps: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        run()
    return statistics.median(run() for _ in range(reps))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", choices=["microray", "ray"], default="microray")
    parser.add_argument("--actors", type=int, default=200)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--create-warmup", type=int, default=1,
                        help="untimed creations before the timed ones (0 for a slow peer)")
    args = parser.parse_args(argv)

    rt = importlib.import_module(args.system)
    rt.init(num_cpus=args.num_cpus, include_dashboard=False) if args.system == "ray" else rt.init(
        num_cpus=args.num_cpus, dashboard="none")

    @rt.remote(num_cpus=0)
    class Pinger:
        def ping(self) -> int:
            return 1

    def create() -> float:
        t0 = time.perf_counter()
        actors = [Pinger.remote() for _ in range(args.actors)]
        rt.get([a.ping.remote() for a in actors], timeout=600)
        took = time.perf_counter() - t0
        for a in actors:
            rt.kill(a)
        del actors
        _log(f"created {args.actors} actors in {took:.2f} s")
        return took

    one = Pinger.remote()
    rt.get(one.ping.remote())

    def sync_calls() -> float:
        t0 = time.perf_counter()
        for _ in range(args.calls):
            rt.get(one.ping.remote())
        return args.calls / (time.perf_counter() - t0)

    def async_calls() -> float:
        t0 = time.perf_counter()
        rt.get([one.ping.remote() for _ in range(args.calls * 10)])
        return args.calls * 10 / (time.perf_counter() - t0)

    out = {
        "system": args.system,
        "version": getattr(rt, "__version__", "?"),
        "actors": args.actors,
        "actor_calls_sync_per_s": round(_median(sync_calls, args.reps)),
        "actor_calls_async_per_s": round(_median(async_calls, args.reps)),
        "create_actors_s": round(_median(create, args.reps, args.create_warmup), 3),
    }
    rt.shutdown()
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
