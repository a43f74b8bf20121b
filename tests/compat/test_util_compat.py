"""``ray.util`` as Ray documents it: ``Queue`` raises its own ``Empty``/``Full`` (sync
and async), ``ActorPool.map`` is eager, takes methods with several returns and ignores
results an earlier ``submit`` left unread; and a task error that cannot be pickled still
reaches the caller as a ``RayTaskError`` with the task's traceback."""

from __future__ import annotations

import asyncio
import threading

import pytest

import microray as ray
from microray.exceptions import RaySystemError, RayTaskError
from microray.testing.processes import wait_for
from microray.util import ActorPool
from microray.util.queue import Empty, Full, Queue

DEADLINE = 60


# -- Queue ----------------------------------------------------------------------------------
@pytest.fixture
def queue(cluster):
    q = Queue(maxsize=1)
    yield q
    q.shutdown()


def test_async_get_and_put_raise_empty_and_full_themselves(queue):
    async def main():
        with pytest.raises(Empty) as empty:
            await queue.get_async(block=True, timeout=0.05)
        assert type(empty.value) is Empty  # not a RayTaskError carrying it
        with pytest.raises(Empty) as empty:
            await queue.get_async(block=False)
        assert type(empty.value) is Empty
        await queue.put_async(1)
        with pytest.raises(Full) as full:
            await queue.put_async(2, block=True, timeout=0.05)
        assert type(full.value) is Full
        with pytest.raises(Full) as full:
            await queue.put_async(2, block=False)
        assert type(full.value) is Full
        with pytest.raises(ValueError, match="non-negative"):
            await queue.get_async(timeout=-1)
        return await queue.get_async(timeout=DEADLINE)

    assert asyncio.run(asyncio.wait_for(main(), DEADLINE)) == 1


def test_sync_get_and_put_raise_empty_and_full_themselves(queue):
    with pytest.raises(Empty) as empty:
        queue.get(timeout=0.05)
    assert type(empty.value) is Empty
    queue.put(1)
    with pytest.raises(Full) as full:
        queue.put_nowait(2)
    assert type(full.value) is Full
    with pytest.raises(Full, match="Cannot add 2 items"):
        queue.put_nowait_batch([2, 3])
    with pytest.raises(Empty, match="Cannot get 2 items"):
        queue.get_nowait_batch(2)
    with pytest.raises(TypeError, match="must be an int"):
        queue.get_nowait_batch("2")
    with pytest.raises(ValueError, match="nonnegative"):
        queue.get_nowait_batch(-1)
    assert queue.get_nowait() == 1


# -- ActorPool ------------------------------------------------------------------------------
@ray.remote
class Worker:
    def __init__(self):
        self.seen = []
        self.release = threading.Event()

    def double(self, v):
        self.seen.append(v)
        return 2 * v

    @ray.method(num_returns=2)
    def split(self, v):
        return v, -v

    def seen_values(self):
        return list(self.seen)

    def wait_for_release(self, v):
        self.release.wait(DEADLINE)
        return v

    def let_go(self):
        self.release.set()


@pytest.fixture
def workers(cluster):
    actors = [Worker.options(max_concurrency=2).remote() for _ in range(2)]
    yield actors
    for actor in actors:
        ray.kill(actor)


def test_map_submits_every_value_before_it_is_iterated(workers):
    pool = ActorPool(workers)
    results = pool.map(lambda a, v: a.double.remote(v), [1, 2, 3, 4])
    # nothing iterated yet, and yet each actor has its first value (the rest wait in the pool)

    def seen():
        return sorted(sum(ray.get([a.seen_values.remote() for a in workers], timeout=DEADLINE), []))

    wait_for(lambda: seen() == [1, 2], timeout=DEADLINE, what="the first values to reach the actors")
    assert list(results) == [2, 4, 6, 8]


def test_map_with_several_returns_per_call(workers):
    pool = ActorPool(workers)
    assert list(pool.map(lambda a, v: a.split.remote(v), [1, 2, 3])) == [[1, -1], [2, -2], [3, -3]]
    assert sorted(pool.map_unordered(lambda a, v: a.split.remote(v), [4, 5])) == [[4, -4], [5, -5]]
    pool.submit(lambda a, v: a.split.remote(v), 6)
    assert pool.get_next(timeout=DEADLINE) == [6, -6]


def test_map_ignores_a_result_an_earlier_submit_left_unread(workers):
    # Ray issue 23107: a submit whose result was never read must not show up in map's results
    pool = ActorPool(workers)
    pool.submit(lambda a, v: a.wait_for_release.remote(v), "left over")
    assert list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3, 4, 5])) == [2, 4, 6, 8, 10]
    assert not pool.has_next()
    for actor in workers:
        actor.let_go.remote()


def test_map_drops_results_that_finished_unread(workers):
    pool = ActorPool(workers)
    pool.submit(lambda a, v: a.double.remote(v), 100)
    ray.get([a.seen_values.remote() for a in workers], timeout=DEADLINE)
    assert list(pool.map(lambda a, v: a.double.remote(v), [1])) == [2]


def test_get_next_that_times_out_keeps_the_task_unless_told_to_ignore_it(workers):
    pool = ActorPool(workers)
    pool.submit(lambda a, v: a.wait_for_release.remote(v), "slow")
    with pytest.raises(TimeoutError):
        pool.get_next(timeout=0.05)
    assert pool.has_next()
    with pytest.raises(TimeoutError, match="has been ignored"):
        pool.get_next(timeout=0.05, ignore_if_timedout=True)
    assert not pool.has_next()
    for actor in workers:
        actor.let_go.remote()


def test_a_dead_actor_leaves_the_pool(cluster):
    alive, doomed = Worker.remote(), Worker.remote()
    pool = ActorPool([alive, doomed])
    ray.kill(doomed)
    results = []
    for v in range(4):
        pool.submit(lambda a, v: a.double.remote(v), v)
    while pool.has_next():
        try:
            results.append(pool.get_next())
        except ray.exceptions.ActorDiedError:
            results.append("died")
    assert results.count("died") <= 1 and len(results) == 4
    assert pool.pop_idle() is alive and pool.pop_idle() is None
    ray.kill(alive)


# -- errors that cannot travel --------------------------------------------------------------
class LockedError(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()  # cannot be pickled


@ray.remote
def raise_unpicklable():
    raise LockedError("the lock stays here")


def test_an_unpicklable_task_error_arrives_as_a_task_error_with_its_traceback(cluster):
    with pytest.raises(RayTaskError) as info:
        ray.get(raise_unpicklable.remote(), timeout=DEADLINE)
    assert not isinstance(info.value, RaySystemError)
    text = str(info.value)
    assert "LockedError" in text and "the lock stays here" in text
    assert "Traceback (most recent call last)" in text and ", in raise_unpicklable" in text
