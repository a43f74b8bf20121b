"""``microray.util.ActorPool``: map, map_unordered, submit/get_next/has_next,
get_next_unordered, push/pop_idle, timeouts."""

from __future__ import annotations

import os
import time

import pytest

import microray as ray
from microray.util import ActorPool


@ray.remote
class Worker:
    def __init__(self, tag):
        self.tag = tag
        self.calls = 0

    def double(self, x):
        self.calls += 1
        return 2 * x

    def tagged(self, x):
        return self.tag, x

    def sleep_then(self, pair):
        seconds, value = pair
        time.sleep(seconds)
        return value

    def pid(self):
        return os.getpid()


@pytest.fixture
def workers(cluster):
    actors = [Worker.remote(i) for i in range(2)]
    ray.get([a.pid.remote() for a in actors])
    yield actors
    for a in actors:
        ray.kill(a)


def test_map_returns_results_in_order(workers):
    pool = ActorPool(workers)
    assert list(pool.map(lambda a, v: a.double.remote(v), range(10))) == [2 * i for i in range(10)]
    # both actors did some of the work
    tags = {t for t, _ in pool.map(lambda a, v: a.tagged.remote(v), range(6))}
    assert tags == {0, 1}
    assert not pool.has_next()


def test_map_unordered_yields_as_results_finish(workers):
    pool = ActorPool(workers)
    # the first value is slow: map_unordered does not wait for it before the others
    values = [(1.0, "slow"), (0.0, "a"), (0.0, "b"), (0.0, "c")]
    out = list(pool.map_unordered(lambda a, v: a.sleep_then.remote(v), values))
    assert sorted(out) == ["a", "b", "c", "slow"]
    assert out[-1] == "slow"


def test_submit_get_next_has_next(workers):
    pool = ActorPool(workers)
    assert not pool.has_next()
    for i in range(5):  # more than there are actors: the rest wait in the pool
        pool.submit(lambda a, v: a.double.remote(v), i)
    assert pool.has_next()
    got = []
    while pool.has_next():
        got.append(pool.get_next())
    assert got == [0, 2, 4, 6, 8]
    with pytest.raises(StopIteration):
        pool.get_next()


def test_get_next_unordered(workers):
    pool = ActorPool(workers)
    pool.submit(lambda a, v: a.sleep_then.remote(v), (1.0, "slow"))
    pool.submit(lambda a, v: a.sleep_then.remote(v), (0.0, "fast"))
    assert pool.get_next_unordered() == "fast"
    assert pool.get_next_unordered() == "slow"
    assert not pool.has_next()


def test_get_next_timeout(workers):
    pool = ActorPool(workers)
    pool.submit(lambda a, v: a.sleep_then.remote(v), (1.5, "late"))
    with pytest.raises(TimeoutError):
        pool.get_next(timeout=0.1)
    assert pool.get_next(timeout=30) == "late"
    pool.submit(lambda a, v: a.sleep_then.remote(v), (1.5, "late"))
    with pytest.raises(TimeoutError, match="has been ignored"):  # as Ray: dropped, and said so
        pool.get_next_unordered(timeout=0.1, ignore_if_timedout=True)
    assert not pool.has_next()


def test_push_and_pop_idle(cluster):
    first, second = Worker.remote("first"), Worker.remote("second")
    pool = ActorPool([first])
    assert pool.has_free()
    popped = pool.pop_idle()
    assert popped == first
    assert pool.pop_idle() is None and not pool.has_free()
    pool.push(second)
    assert list(pool.map(lambda a, v: a.tagged.remote(v), [1, 2])) == [("second", 1), ("second", 2)]
    with pytest.raises(ValueError, match="already belongs"):
        pool.push(second)
    # a call waiting for a free actor starts when one is pushed
    busy = ActorPool([])
    busy.submit(lambda a, v: a.double.remote(v), 21)
    assert not busy.has_next()
    busy.push(first)
    assert busy.get_next() == 42
    ray.kill(first)
    ray.kill(second)
