"""``ray.util.multiprocessing.Pool`` as Ray documents it (Python's ``multiprocessing.Pool``
API over actors): results in order, chunks of ``chunksize`` arguments run in one actor
call, the function's own exception raised from ``get``, callbacks as the standard
library calls them, lazy ``imap``, ``initializer``, ``maxtasksperchild``, ``close``,
``join``, ``terminate``; and a ``Pool()`` made before ``init()`` starts its own cluster."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import threading
import time

import pytest

import microray as ray
from microray.exceptions import RayActorError
from microray.testing.processes import wait_for
from microray.util.multiprocessing import Pool, TimeoutError

DEADLINE = 60


# -- functions the pool runs (module level: the actors import them) ------------------------
class PoolTestError(Exception):
    pass


def square(x):
    return x * x


def add(a, b=0):
    return a + b


def with_pid(x):
    return x, os.getpid()


def fail_on_three(x):
    if x == 3:
        raise PoolTestError(f"three is not allowed ({x})")
    return x


class UnpicklableError(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()  # cannot be pickled


def raise_unpicklable(x):
    if x:
        raise UnpicklableError("holds a lock")
    return x


def wait_for_file(path, value=None):
    """Return ``value`` once ``path`` exists (the test creates it), within the deadline."""
    deadline = time.monotonic() + DEADLINE
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)
    return value


def gated(item):
    """``(path, value)``: wait for the file; anything else: return it at once."""
    if isinstance(item, tuple):
        return wait_for_file(*item)
    return item


def set_init_value(value):
    os.environ["MICRORAY_POOL_TEST_INIT"] = value


def read_init_value(_):
    return os.environ.get("MICRORAY_POOL_TEST_INIT")


@pytest.fixture
def pool(cluster):
    p = Pool(2)
    yield p
    p.terminate()
    p.join()


# -- results -----------------------------------------------------------------------------------
def test_map_starmap_and_apply_return_values_in_argument_order(pool):
    assert pool.map(square, range(20)) == [x * x for x in range(20)]
    assert pool.map(square, (x for x in range(5)), chunksize=2) == [0, 1, 4, 9, 16]
    assert pool.map(square, []) == []
    assert pool.starmap(add, [(1, 2), (3, 4), (5, 6)], chunksize=1) == [3, 7, 11]
    assert pool.apply(add, (1,), {"b": 5}) == 6
    assert pool.apply(add, (2,), kwds={"b": 5}) == 7  # the standard library's keyword
    assert pool.apply_async(add, (3, 4)).get(DEADLINE) == 7
    assert pool.map_async(square, [2, 3]).get(DEADLINE) == [4, 9]
    assert pool.starmap_async(add, [(1, 1)]).get(DEADLINE) == [2]
    with pytest.raises(ValueError, match="chunksize"):
        pool.map(square, [1], chunksize=0)


def test_a_chunk_of_arguments_runs_in_one_actor_call(pool):
    # chunks go to the two actors in turn: [0, 1, 2] on one, [3, 4, 5] on the other, [6] on the first
    pids = [pid for _, pid in pool.map(with_pid, range(7), chunksize=3)]
    assert pids[0] == pids[1] == pids[2] == pids[6]
    assert pids[3] == pids[4] == pids[5] != pids[0]
    # by default about four chunks per actor, as in Ray: 16 arguments, 2 actors -> chunks of 2
    pids = [pid for _, pid in pool.map(with_pid, range(16))]
    assert all(pids[i] == pids[i + 1] for i in range(0, 16, 2))
    assert len(set(pids)) == 2


def test_processes_default_to_the_clusters_cpus_and_cannot_exceed_them(cluster):
    p = Pool()
    try:
        assert len({pid for _, pid in p.map(with_pid, range(8), chunksize=1)}) == 2
    finally:
        p.terminate()
    with pytest.raises(ValueError, match="only 2 CPUs"):
        Pool(3)
    with pytest.raises(ValueError, match="at least 1"):
        Pool(0)
    with pytest.warns(UserWarning, match="context"):
        Pool(1, context=multiprocessing.get_context("spawn")).terminate()


# -- errors ------------------------------------------------------------------------------------
def test_get_raises_the_functions_own_exception_and_error_callback_gets_it(pool):
    called, errors = [], []
    result = pool.map_async(fail_on_three, range(6), chunksize=2, callback=called.append,
                            error_callback=errors.append)
    with pytest.raises(PoolTestError, match="three is not allowed") as info:
        result.get(DEADLINE)
    assert type(info.value) is PoolTestError
    # as the standard library's pool: the cause shows where the function raised
    assert isinstance(info.value.__cause__, multiprocessing.pool.RemoteTraceback)
    assert "in fail_on_three" in str(info.value.__cause__)
    assert result.ready() and not result.successful()
    assert called == [] and len(errors) == 1 and type(errors[0]) is PoolTestError
    with pytest.raises(PoolTestError):
        pool.apply(fail_on_three, (3,))
    assert pool.map(fail_on_three, [1, 2]) == [1, 2]  # the pool goes on


def test_an_exception_that_cannot_be_pickled_still_says_what_was_raised(pool):
    with pytest.raises(RuntimeError, match="UnpicklableError: holds a lock") as info:
        pool.map(raise_unpicklable, [0, 1], chunksize=2)
    assert "in raise_unpicklable" in str(info.value.__cause__)


def test_callbacks_run_before_get_returns(pool):
    values, lists = [], []
    assert pool.apply_async(square, (7,), callback=values.append).get(DEADLINE) == 49
    assert values == [49]
    assert pool.map_async(square, range(4), callback=lists.append).get(DEADLINE) == [0, 1, 4, 9]
    assert lists == [[0, 1, 4, 9]]
    # Ray's starmap_async(func, iterable, callback, error_callback) order works too
    result = pool.starmap_async(add, [(1, 2)], lists.append)
    assert result.get(DEADLINE) == [3] and lists[-1] == [3]
    # a callback that raises is logged; the result is still ready
    boom = pool.apply_async(square, (2,), callback=lambda _: 1 / 0)
    assert boom.get(DEADLINE) == 4 and boom.successful()


def test_get_times_out_until_the_function_returns(pool, tmp_path):
    gate = tmp_path / "go"
    result = pool.apply_async(wait_for_file, (str(gate), "done"))
    with pytest.raises(TimeoutError):
        result.get(timeout=0.2)
    assert TimeoutError is multiprocessing.TimeoutError
    result.wait(timeout=0.05)  # returns without raising
    assert not result.ready()
    with pytest.raises(ValueError, match="not ready"):
        result.successful()
    gate.touch()
    assert result.get(DEADLINE) == "done"
    assert result.ready() and result.successful()


# -- imap --------------------------------------------------------------------------------------
def test_imap_is_in_order_and_imap_unordered_as_they_finish(pool, tmp_path):
    gate = tmp_path / "go"
    ordered = pool.imap(gated, [(str(gate), "slow"), "a", "b"])
    with pytest.raises(TimeoutError):
        ordered.next(timeout=0.2)  # "a" is back, but "slow" comes first
    gate.touch()
    assert list(ordered) == ["slow", "a", "b"]

    gate2 = tmp_path / "go2"
    unordered = pool.imap_unordered(gated, [(str(gate2), "slow"), "a"])
    assert unordered.next(timeout=DEADLINE) == "a"
    with pytest.raises(TimeoutError):
        unordered.next(timeout=0.1)
    gate2.touch()
    assert list(unordered) == ["slow"]
    assert sorted(pool.imap_unordered(square, range(10), chunksize=3)) == sorted(x * x for x in range(10))


def test_imap_reads_its_iterable_one_chunk_per_actor_ahead(pool):
    read = []

    def source():
        for i in itertools.count():
            read.append(i)
            yield i

    values = pool.imap(square, source())
    assert read == [0, 1]  # one chunk per actor sent so far
    assert [next(values) for _ in range(5)] == [0, 1, 4, 9, 16]
    # then one more chunk for each that came back: at most one per actor in flight, and one
    # held that came back before the chunk before it
    assert len(read) <= 5 + 2 + 1


def test_imap_raises_the_error_in_place_and_goes_on(pool):
    out = []
    values = pool.imap(fail_on_three, range(6), chunksize=2)
    while True:
        try:
            out.append(next(values))
        except StopIteration:
            break
        except PoolTestError:
            out.append("error")
    assert out == [0, 1, 2, "error", 4, 5]


# -- the actors --------------------------------------------------------------------------------
def test_initializer_runs_in_every_actor(cluster):
    with Pool(2, initializer=set_init_value, initargs=("ready",)) as p:
        assert p.map(read_init_value, range(4), chunksize=1) == ["ready"] * 4


def test_maxtasksperchild_replaces_an_actor_after_that_many_chunks(cluster):
    p = Pool(1, maxtasksperchild=2)
    try:
        pids = [p.apply(os.getpid) for _ in range(4)]
    finally:
        p.terminate()
    assert pids[0] == pids[1] != pids[2] == pids[3]


def test_ray_remote_args_give_the_actors_their_options(cluster):
    p = Pool(2, ray_remote_args={"num_cpus": 1})
    try:
        wait_for(lambda: ray.available_resources().get("CPU") == 0, timeout=DEADLINE,
                 what="the pool's actors to hold both CPUs")
        assert p.map(square, [3]) == [9]
    finally:
        p.terminate()
    wait_for(lambda: ray.available_resources().get("CPU") == 2, timeout=DEADLINE,
             what="the CPUs to come back after terminate()")


# -- ending ------------------------------------------------------------------------------------
def test_close_finishes_the_work_sent_and_join_waits_for_it(cluster, tmp_path):
    p = Pool(2)
    gate = tmp_path / "go"
    got = []
    pending = p.apply_async(wait_for_file, (str(gate), "late"), callback=got.append)
    with pytest.raises(ValueError, match="still running"):
        p.join()
    p.close()
    with pytest.raises(ValueError, match="Pool not running"):
        p.map(square, [1])
    with pytest.raises(ValueError, match="Pool not running"):
        p.apply_async(square, (1,))
    gate.touch()
    p.join()
    assert pending.ready() and pending.get(0) == "late" and got == ["late"]


def test_terminate_stops_work_in_progress(cluster, tmp_path):
    with Pool(1) as p:
        stuck = p.apply_async(wait_for_file, (str(tmp_path / "never"),))
        with pytest.raises(TimeoutError):
            stuck.get(timeout=0.1)
    # leaving the block terminated the pool: the call's actor is gone
    with pytest.raises(RayActorError):
        stuck.get(DEADLINE)
    assert not stuck.successful()
    p.join()


# -- a pool made before init() ------------------------------------------------------------------
def test_a_pool_starts_its_own_cluster_when_none_is_connected(no_cluster):
    assert not ray.is_initialized()
    with Pool(2) as p:
        assert ray.is_initialized()
        assert ray.cluster_resources()["CPU"] == 2  # a new cluster of `processes` CPUs, as Ray's
        assert p.map(square, range(6)) == [0, 1, 4, 9, 16, 25]
