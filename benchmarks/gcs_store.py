"""GCS store throughput and watch latency, per backend, against real servers.

Starts its own ``redis-server`` and ``etcd`` (``microray.testing.servers``),
then for each backend measures:

- ``put`` / ``get`` ops/s, sequential (one request in flight) and with
  ``--concurrency`` requests in flight;
- ``get_all`` calls/s on a table of ``--keys`` keys;
- watch latency: time from just before a ``put`` to the watcher receiving its
  event, one change at a time (median and p95).

Usage::

    .venv/bin/python benchmarks/gcs_store.py                 # all backends
    .venv/bin/python benchmarks/gcs_store.py --backends redis,etcd --ops 2000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from microray.testing.contracts.gcs_store import start_watch
from microray.testing.servers import EtcdServer, RedisServer, running


def _registration(name: str) -> Any:
    module = __import__(f"microray.backends.gcs.{name}", fromlist=["microray_gcs_stores"])
    (registration,) = module.microray_gcs_stores()
    return registration


@contextlib.contextmanager
def _backend(name: str) -> Iterator[Callable[[], Any]]:
    """Yield a factory of fresh clients (one namespace) for backend ``name``."""
    registration = _registration(name)
    namespace = f"bench-{uuid.uuid4().hex[:8]}"

    def make(url: str | None) -> Callable[[], Any]:
        options: dict[str, Any] = {"namespace": namespace}
        if url:
            options["url"] = url
        valid = registration.validate_options("gcs_store", options)
        return lambda: registration.factory(**valid)

    if name == "memory":
        yield make(None)
    elif name == "redis":
        with running(RedisServer()) as server:
            yield make(server.url)
    elif name == "etcd":
        with running(EtcdServer()) as server:
            yield make(server.url)
    else:
        raise SystemExit(f"unknown backend {name!r}; expected memory, redis or etcd")


async def _rate(n: int, concurrency: int, op: Callable[[int], Awaitable[Any]]) -> float:
    """Ops/s for ``n`` calls of ``op(i)`` with ``concurrency`` in flight."""
    next_i = 0

    async def lane() -> None:
        nonlocal next_i
        while next_i < n:
            i = next_i
            next_i += 1
            await op(i)

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return n / (time.perf_counter() - started)


async def _measure(store: Any, args: argparse.Namespace) -> dict[str, float]:
    value = b"v" * args.value_size
    n, c = args.ops, args.concurrency
    out: dict[str, float] = {}
    out["put_seq"] = await _rate(n, 1, lambda i: store.put("bench", b"k%08d" % (i % args.keys), value))
    out["put_conc"] = await _rate(n, c, lambda i: store.put("bench", b"k%08d" % (i % args.keys), value))
    out["get_seq"] = await _rate(n, 1, lambda i: store.get("bench", b"k%08d" % (i % args.keys)))
    out["get_conc"] = await _rate(n, c, lambda i: store.get("bench", b"k%08d" % (i % args.keys)))
    for i in range(args.keys):  # make sure the table is full
        await store.put("scan", b"k%08d" % i, value)
    rounds = max(3, 50_000 // args.keys)
    out["get_all"] = await _rate(rounds, 1, lambda i: store.get_all("scan"))
    return out


async def _watch_latency(store: Any, writer: Any, samples: int) -> list[float]:
    reader = await start_watch(store, "wlat")
    latencies: list[float] = []
    try:
        for i in range(samples):
            key = b"k%06d" % i
            started = time.perf_counter()
            await writer.put("wlat", key, b"x")
            while (await reader.next(10)).key != key:
                pass
            latencies.append(time.perf_counter() - started)
    finally:
        await reader.close()
    return latencies


def _bench(name: str, args: argparse.Namespace) -> dict[str, float]:
    with _backend(name) as open_client:
        store = open_client()
        writer = open_client() if name != "memory" else store.open_client()

        async def main() -> dict[str, float]:
            try:
                await store.ping()
                result = await _measure(store, args)
                lat = sorted(await _watch_latency(store, writer, args.watch_samples))
                result["watch_p50_ms"] = statistics.median(lat) * 1e3
                result["watch_p95_ms"] = lat[int(0.95 * (len(lat) - 1))] * 1e3
                return result
            finally:
                await writer.close()
                await store.close()

        return asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="memory,redis,etcd")
    parser.add_argument("--ops", type=int, default=2000, help="calls per put/get measurement")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--keys", type=int, default=1000, help="distinct keys (and get_all table size)")
    parser.add_argument("--value-size", type=int, default=100)
    parser.add_argument("--watch-samples", type=int, default=300)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)

    results = {name: _bench(name, args) for name in args.backends.split(",") if name}
    if args.json:
        json.dump({"params": vars(args), "results": results}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    cols = [
        ("put/s seq", "put_seq"), (f"put/s x{args.concurrency}", "put_conc"),
        ("get/s seq", "get_seq"), (f"get/s x{args.concurrency}", "get_conc"),
        (f"get_all/s ({args.keys} keys)", "get_all"),
        ("watch p50 ms", "watch_p50_ms"), ("watch p95 ms", "watch_p95_ms"),
    ]  # fmt: skip
    sys.stdout.write("| backend | " + " | ".join(c for c, _ in cols) + " |\n")
    sys.stdout.write("|---" * (len(cols) + 1) + "|\n")
    for name, res in results.items():
        cells = [f"{res[k]:,.2f}" if k.endswith("_ms") else f"{res[k]:,.0f}" for _, k in cols]
        sys.stdout.write(f"| {name} | " + " | ".join(cells) + " |\n")
    sys.stdout.write(
        f"\n{args.ops} ops per put/get figure, {args.value_size}-byte values; "
        f"watch latency over {args.watch_samples} changes, one at a time.\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
