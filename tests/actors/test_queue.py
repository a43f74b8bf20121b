"""``microray.util.queue.Queue``: a FIFO shared by the driver, tasks and actors."""

from __future__ import annotations

import asyncio
import time

import pytest

import microray as ray
from microray.util.queue import Empty, Full, Queue


@pytest.fixture
def queue(cluster):
    q = Queue(maxsize=3)
    yield q
    q.shutdown()


def test_put_get_sizes(queue):
    assert queue.empty() and not queue.full() and queue.qsize() == 0 and len(queue) == 0
    for item in ("a", {"b": 1}, [3]):
        queue.put(item)
    assert queue.full() and queue.qsize() == 3 and queue.size() == 3
    assert [queue.get(), queue.get(), queue.get()] == ["a", {"b": 1}, [3]]
    assert queue.empty()


def test_nonblocking_raise_empty_and_full(queue):
    with pytest.raises(Empty):
        queue.get_nowait()
    with pytest.raises(Empty):
        queue.get(block=False)
    queue.put_nowait(1)
    queue.put(2, block=False)
    queue.put_nowait(3)
    with pytest.raises(Full):
        queue.put_nowait(4)
    with pytest.raises(Full):
        queue.put(4, block=False)
    assert queue.get_nowait() == 1
    assert queue.qsize() == 2


def test_blocking_timeouts(queue):
    t0 = time.monotonic()
    with pytest.raises(Empty):
        queue.get(timeout=0.3)
    assert time.monotonic() - t0 >= 0.25
    for i in range(3):
        queue.put(i)
    with pytest.raises(Full):
        queue.put(99, timeout=0.3)
    with pytest.raises(ValueError):
        queue.get(timeout=-1)
    with pytest.raises(ValueError):
        queue.put(1, timeout=-1)
    assert [queue.get(timeout=5) for _ in range(3)] == [0, 1, 2]


def test_batches(queue):
    queue.put_nowait_batch([1, 2])
    with pytest.raises(Full):
        queue.put_nowait_batch([3, 4])  # all or nothing
    assert queue.qsize() == 2
    with pytest.raises(Empty):
        queue.get_nowait_batch(3)
    assert queue.get_nowait_batch(2) == [1, 2]
    with pytest.raises(ValueError):
        queue.get_nowait_batch(-1)


def test_unbounded_queue(cluster):
    q = Queue()
    for i in range(100):
        q.put_nowait(i)
    assert not q.full() and q.qsize() == 100
    assert q.get_nowait_batch(100) == list(range(100))
    q.shutdown()


@ray.remote
def produce(q, items):
    for item in items:
        q.put(item)
    return len(items)


@ray.remote
class Consumer:
    def __init__(self, q):
        self.q = q

    def take(self, n, timeout):
        return [self.q.get(timeout=timeout) for _ in range(n)]


def test_blocked_get_is_woken_by_a_put_from_a_task(queue):
    consumer = Consumer.remote(queue)
    taken = consumer.take.remote(6, 30)  # blocks: nothing there yet, and maxsize=3 < 6
    assert ray.get(produce.remote(queue, list(range(6)))) == 6
    assert ray.get(taken) == list(range(6))
    assert queue.empty()


@ray.remote
class AsyncUser:
    def __init__(self, q):
        self.q = q

    async def roundtrip(self, items):
        for item in items:
            await self.q.put_async(item)
        return [await self.q.get_async(timeout=5) for _ in items]

    async def wait_for_item(self, timeout):
        return await self.q.get_async(timeout=timeout)

    async def try_get_nowait(self):
        try:
            return await self.q.get_async(block=False)
        except Empty:
            return "empty"

    async def ticks_while_waiting(self):
        """Count the loop's ticks during a blocked get: it must not block the loop."""
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.get_running_loop().create_task(tick())
        try:
            await self.q.get_async(timeout=0.5)
        except Empty:
            pass
        ticker.cancel()
        return ticks


def test_async_put_get_inside_an_async_actor(queue):
    user = AsyncUser.remote(queue)
    assert ray.get(user.roundtrip.remote(["x", "y"])) == ["x", "y"]
    assert ray.get(user.try_get_nowait.remote()) == "empty"
    waiting = user.wait_for_item.remote(30)
    queue.put("from the driver")
    assert ray.get(waiting) == "from the driver"
    assert ray.get(user.ticks_while_waiting.remote()) > 5
