"""Async actors (one event loop), threaded actors (``max_concurrency``) and plain
actors (one call at a time). Wall-clock bounds are overlap proofs with wide margins,
not benchmarks."""

from __future__ import annotations

import asyncio
import threading
import time

import microray as ray


@ray.remote
class AsyncSleeper:
    def __init__(self):
        self.running = 0
        self.peak = 0

    async def nap(self, seconds):
        self.running += 1
        self.peak = max(self.peak, self.running)
        await asyncio.sleep(seconds)
        self.running -= 1
        return threading.get_ident()

    def peak_seen(self):  # a sync method of an async actor runs on its loop too
        return self.peak


@ray.remote
class Sleeper:
    def __init__(self):
        self.lock = threading.Lock()
        self.spans = []

    def nap(self, seconds):
        start = time.monotonic()
        time.sleep(seconds)
        end = time.monotonic()
        with self.lock:
            self.spans.append((start, end))
        return threading.get_ident()

    def spans_seen(self):
        return sorted(self.spans)


def _max_overlap(spans):
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    cur = peak = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    return peak


def test_async_actor_overlaps_calls(cluster):
    a = AsyncSleeper.remote()
    ray.get(a.peak_seen.remote())  # created
    t0 = time.monotonic()
    threads = ray.get([a.nap.remote(1.0) for _ in range(20)])
    elapsed = time.monotonic() - t0
    assert elapsed < 10, f"20 x asyncio.sleep(1) took {elapsed:.1f}s: calls did not overlap"
    assert len(set(threads)) == 1, "an async actor runs every call on its one event loop thread"
    assert ray.get(a.peak_seen.remote()) > 1


def test_async_actor_max_concurrency_limits_overlap(cluster):
    a = AsyncSleeper.options(max_concurrency=2).remote()
    ray.get([a.nap.remote(0.3) for _ in range(6)])
    assert ray.get(a.peak_seen.remote()) == 2


def test_threaded_actor_runs_max_concurrency_calls_at_once(cluster):
    a = Sleeper.options(max_concurrency=5).remote()
    ray.get(a.spans_seen.remote())
    t0 = time.monotonic()
    threads = ray.get([a.nap.remote(1.0) for _ in range(10)])
    elapsed = time.monotonic() - t0
    assert elapsed < 6, f"10 x time.sleep(1) with max_concurrency=5 took {elapsed:.1f}s"
    spans = ray.get(a.spans_seen.remote())
    assert 2 <= _max_overlap(spans) <= 5
    assert 1 < len(set(threads)) <= 5


def test_plain_actor_runs_one_call_at_a_time(cluster):
    a = Sleeper.remote()
    threads = ray.get([a.nap.remote(0.05) for _ in range(10)])
    spans = ray.get(a.spans_seen.remote())
    assert len(spans) == 10
    assert _max_overlap(spans) == 1
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, f"calls overlapped: {spans}"
    assert len(set(threads)) == 1
