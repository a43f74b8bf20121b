"""Objects on a real one-machine cluster: put/get, the shared-memory object store
(zero-copy, read-only, freed on the last reference), large arguments and returns,
and ``wait``."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import microray as ray
from microray.exceptions import GetTimeoutError
from microray.testing.processes import wait_for

np = pytest.importorskip("numpy")

pytestmark = pytest.mark.timeout(120)

MB = 1_000_000


def _store():
    return ray.api._worker.object_store


def _shm_mapping_of(address: int, maps_text: str | None = None) -> str | None:
    """The /proc/self/maps line whose range holds ``address``, if it maps a /dev/shm file."""
    text = maps_text if maps_text is not None else Path("/proc/self/maps").read_text()
    for line in text.splitlines():
        parts = line.split()
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        if lo <= address < hi:
            return line if len(parts) >= 6 and parts[5].startswith("/dev/shm/") else None
    return None


def _data_address(arr) -> int:
    return arr.__array_interface__["data"][0]


@ray.remote
def identity(x):
    return x


@ray.remote
def array_info(arr):
    """Sum, writeability and whether the worker reads the array from /dev/shm."""
    return float(arr.sum()), bool(arr.flags.writeable), _shm_mapping_of(_data_address(arr)) is not None


@ray.remote
def make_array(n, fill):
    return np.full(n, fill, dtype=np.uint8)


# -- put / get ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [
        0,
        -12345678901234567890,
        3.5,
        True,
        None,
        "",
        "héllo wörld",
        b"\x00\x01bytes",
        [1, "two", 3.0, None],
        (1, (2, (3,))),
        {"a": 1, "b": [1, 2, {"c": (3, 4)}], 5: None},
        {1, 2, 3},
        frozenset({"x"}),
        "x" * 300_000,
        list(range(100_000)),
    ],
    ids=lambda v: type(v).__name__ + (f"-{len(v)}" if hasattr(v, "__len__") else ""),
)
def test_put_get_roundtrip(cluster, value):
    ref = ray.put(value)
    assert isinstance(ref, ray.ObjectRef)
    got = ray.get(ref)
    assert got == value
    assert type(got) is type(value)


def test_put_get_custom_class(cluster):
    from fractions import Fraction

    value = {"f": Fraction(1, 3), "nested": [Fraction(2, 7)]}
    assert ray.get(ray.put(value)) == value


def test_get_list_keeps_order(cluster):
    refs = [ray.put(i) for i in range(100)]
    assert ray.get(refs) == list(range(100))
    assert ray.get(refs[::-1]) == list(range(99, -1, -1))
    # the same ref twice in one get
    assert ray.get([refs[3], refs[3]]) == [3, 3]


def test_put_of_a_ref_is_a_type_error(cluster):
    ref = ray.put(1)
    with pytest.raises(TypeError):
        ray.put(ref)
    # a ref wrapped in a list is allowed, and comes back as a ref
    outer = ray.put([ref])
    inner = ray.get(outer)
    assert isinstance(inner[0], ray.ObjectRef)
    assert ray.get(inner[0]) == 1


def test_task_can_put_and_return_a_ref(cluster):
    @ray.remote
    def put_inside():
        return [ray.put("made in a task"), ray.put(np.arange(200_000))]

    refs = ray.get(put_inside.remote(), timeout=30)
    assert ray.get(refs[0], timeout=30) == "made in a task"
    assert np.array_equal(ray.get(refs[1], timeout=30), np.arange(200_000))


def test_ref_put_by_one_task_read_by_another(cluster):
    @ray.remote
    def producer():
        return [ray.put("from the producer"), ray.put(np.arange(300_000))]

    @ray.remote
    def consumer(refs):
        return ray.get(refs[0]) + "!", int(ray.get(refs[1]).sum())

    assert ray.get(consumer.remote(ray.get(producer.remote(), timeout=30)), timeout=60) == (
        "from the producer!", int(np.arange(300_000).sum()))


def test_objectref_future_and_await(cluster):
    import asyncio

    ref = identity.remote({"k": 1})
    assert ref.future().result(timeout=30) == {"k": 1}

    @ray.remote
    def fails():
        raise KeyError("missing")

    with pytest.raises(KeyError):
        fails.remote().future().result(timeout=30)

    async def main():
        one = await identity.remote(1)
        many = await asyncio.gather(identity.remote(2), identity.remote(3))
        return one, many

    assert asyncio.run(main()) == (1, [2, 3])


# -- large objects: zero-copy, read-only -----------------------------------------------------
def test_large_array_is_zero_copy_and_read_only(cluster):
    original = np.random.default_rng(0).random(50 * MB // 8)
    ref = ray.put(original)
    a = ray.get(ref)
    b = ray.get(ref)
    assert a.dtype == original.dtype and a.shape == original.shape
    assert np.array_equal(a, original)
    assert a.flags.writeable is False
    with pytest.raises(ValueError):
        a[0] = 1.0
    # two gets share one mapping of the store
    assert np.shares_memory(a, b)
    assert _data_address(a) == _data_address(b)
    # and that memory is a /dev/shm file of this session's object store
    line = _shm_mapping_of(_data_address(a))
    assert line is not None, "the array's data is not in a /dev/shm mapping"
    assert cluster.namespace in line
    assert _store().contains(ref.binary())


def test_large_object_is_in_the_store_small_is_not(cluster):
    small = ray.put(np.zeros(10))
    large = ray.put(np.zeros(1 * MB))
    assert not _store().contains(small.binary())
    assert _store().contains(large.binary())


def test_array_in_a_task_is_read_only_shared_memory(cluster):
    arr = np.arange(5 * MB // 8, dtype=np.float64)
    total, writeable, in_shm = ray.get(array_info.remote(ray.put(arr)), timeout=60)
    assert total == float(arr.sum())
    assert writeable is False
    assert in_shm is True


def test_large_task_return_goes_through_the_store(cluster):
    ref = make_array.remote(300 * 1024, 7)
    value = ray.get(ref, timeout=60)
    assert value.shape == (300 * 1024,)
    assert (value == 7).all()
    assert value.flags.writeable is False
    assert _store().contains(ref.binary())
    assert _shm_mapping_of(_data_address(value)) is not None
    # a small return stays inline
    small = make_array.remote(1000, 1)
    assert ray.get(small).sum() == 1000
    assert not _store().contains(small.binary())


def test_large_array_argument_to_many_tasks(cluster):
    arr = np.arange(20 * MB // 8, dtype=np.int64)
    expected = float(arr.sum())
    ref = ray.put(arr)
    results = ray.get([array_info.remote(ref) for _ in range(20)], timeout=120)
    assert results == [(expected, False, True)] * 20


def test_large_array_passed_by_value_to_many_tasks_is_freed(cluster):
    base = _store().usage().used_bytes
    arr = np.arange(4 * MB // 8, dtype=np.int64)
    expected = float(arr.sum())
    results = ray.get([array_info.remote(arr) for _ in range(10)], timeout=120)
    assert results == [(expected, False, True)] * 10
    # each call put a copy into the store; all are freed once the tasks finished
    wait_for(lambda: _store().usage().used_bytes <= base + MB, timeout=20,
             what=f"store usage back to {base} (now {_store().usage()})")


def test_large_return_passed_on_to_another_task(cluster):
    ref = make_array.remote(2 * MB, 3)
    total, writeable, in_shm = ray.get(array_info.remote(ref), timeout=60)
    assert total == 6.0 * MB
    assert writeable is False and in_shm is True


# -- freeing ----------------------------------------------------------------------------------
def test_dropping_the_last_reference_frees_the_object(cluster):
    ref = ray.put(np.ones(10 * MB, dtype=np.uint8))
    oid = ref.binary()
    assert _store().contains(oid)
    del ref
    wait_for(lambda: not _store().contains(oid), timeout=10, what="the object to be freed")


def test_value_outlives_its_ref_and_is_not_overwritten(cluster):
    ref = ray.put(np.full(20 * MB, 5, dtype=np.uint8))
    value = ray.get(ref)
    del ref
    # fresh objects of the same size may recycle freed segments, never a mapped one
    for fill in range(3):
        other = ray.put(np.full(20 * MB, fill, dtype=np.uint8))
        assert ray.get(other)[0] == fill
        del other
    assert value[0] == 5 and value[-1] == 5 and int(value.sum()) == 5 * 20 * MB


def test_freed_task_return_values(cluster):
    refs = [make_array.remote(5 * MB, i) for i in range(4)]
    ray.get(refs, timeout=60)
    oids = [r.binary() for r in refs]
    assert all(_store().contains(o) for o in oids)
    del refs
    wait_for(lambda: not any(_store().contains(o) for o in oids), timeout=10,
             what="task return values to be freed")


def test_put_and_drop_many_large_objects_never_fills_the_store(make_cluster):
    make_cluster(num_cpus=2, object_store_memory=1_000_000_000)
    store = _store()
    base = store.usage()
    assert base.capacity_bytes == 1_000_000_000
    big = np.ones(100 * MB, dtype=np.uint8)
    for i in range(40):  # 4 GB through a 1 GB store
        ref = ray.put(big)
        if i % 10 == 0:
            assert ray.get(ref)[-1] == 1
        del ref
    wait_for(lambda: store.usage().used_bytes <= base.used_bytes + MB, timeout=20,
             what=f"store usage back near {base.used_bytes} (now {store.usage()})")
    usage = store.usage()
    assert usage.num_spilled == 0
    assert usage.num_objects == base.num_objects


def test_object_passed_nested_in_a_list_survives_the_drivers_del(cluster, tmp_path):
    # the task borrows the ref: the object must outlive the driver's last reference
    @ray.remote
    def sum_later(refs, release):
        deadline = time.monotonic() + 60
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.02)
        value = ray.get(refs[0])
        return int(value.sum()), bool(value.flags.writeable)

    release = tmp_path / "release"
    ref = ray.put(np.ones(10 * MB, dtype=np.uint8))
    oid = ref.binary()
    out = sum_later.remote([ref], str(release))
    del ref
    try:
        assert _store().contains(oid)
    finally:
        release.touch()
    assert ray.get(out, timeout=60) == (10 * MB, False)
    # once the borrower is done, the object goes
    wait_for(lambda: not _store().contains(oid), timeout=15, what="the borrowed object to be freed")


# -- a small store: spilling and full errors ------------------------------------------------------
def test_objects_beyond_capacity_spill_and_come_back(make_cluster):
    make_cluster(num_cpus=2, object_store_memory=100 * MB)
    refs = [ray.put(np.full(40 * MB, i, dtype=np.uint8)) for i in range(5)]  # 200 MB
    usage = _store().usage()
    assert usage.num_spilled >= 3
    assert usage.used_bytes <= 100 * MB
    for i, ref in enumerate(refs):
        value = ray.get(ref)
        assert value[0] == i and value[-1] == i
        del value
    # tasks read spilled objects too
    assert ray.get([array_info.remote(r) for r in refs], timeout=120) == [
        (float(i * 40 * MB), False, True) for i in range(5)
    ]


def test_object_larger_than_the_store_is_object_store_full_error(make_cluster):
    from microray.exceptions import ObjectStoreFullError

    make_cluster(num_cpus=2, object_store_memory=100 * MB)
    with pytest.raises(ObjectStoreFullError) as info:
        ray.put(np.ones(150 * MB, dtype=np.uint8))
    assert isinstance(info.value, MemoryError)
    assert "capacity" in str(info.value)
    # nothing half-written is left, and the store still works
    assert _store().usage().used_bytes < MB
    assert ray.get(ray.put(np.ones(10 * MB, dtype=np.uint8))).sum() == 10 * MB


@pytest.mark.parametrize("backend", ["shm", "lmdb"])
def test_holding_more_values_than_the_store_holds(make_cluster, backend):
    """shm restores what fits and maps the rest read-only from the spill files (Ray falls
    back to a disk-backed allocation); lmdb's views are always of its file on disk."""
    make_cluster(num_cpus=2, object_store_memory=100 * MB, object_store=backend)
    refs = [ray.put(np.full(40 * MB, i, dtype=np.uint8)) for i in range(4)]  # 160 MB
    values = [ray.get(r) for r in refs]
    assert [int(v[0]) for v in values] == [0, 1, 2, 3]
    assert [int(v[-1]) for v in values] == [0, 1, 2, 3]
    assert not any(v.flags.writeable for v in values)


# -- wait ----------------------------------------------------------------------------------------
@ray.remote
def run_until(release: str, limit: float = 60.0):
    deadline = time.monotonic() + limit
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.02)
    return "done"


def test_wait_returns_ready_refs_in_input_order(cluster, tmp_path):
    release = tmp_path / "release"
    pending = run_until.options(num_cpus=2).remote(str(release))
    try:
        p1, p2, p3 = ray.put(1), ray.put(2), ray.put(3)
        refs = [pending, p3, p1, p2]
        ready, not_ready = ray.wait(refs, num_returns=2)
        assert ready == [p3, p1]
        assert not_ready == [pending, p2]
        ready, not_ready = ray.wait(refs, num_returns=3, timeout=5)
        assert ready == [p3, p1, p2]
        assert not_ready == [pending]
        # asking for more than are ready times out with what is ready
        t0 = time.monotonic()
        ready, not_ready = ray.wait(refs, num_returns=4, timeout=0.3)
        assert time.monotonic() - t0 >= 0.25
        assert ready == [p3, p1, p2]
        assert not_ready == [pending]
        ready, not_ready = ray.wait([pending], timeout=0)
        assert (ready, not_ready) == ([], [pending])
    finally:
        release.touch()
    ready, not_ready = ray.wait(refs, num_returns=4, timeout=60)
    assert ready == refs and not_ready == []


def test_wait_blocks_until_a_task_finishes(cluster, tmp_path):
    release = tmp_path / "release"
    ref = run_until.remote(str(release))
    assert ray.wait([ref], timeout=0.2) == ([], [ref])
    release.touch()
    ready, not_ready = ray.wait([ref])  # no timeout: returns when done
    assert ready == [ref] and not_ready == []
    assert ray.get(ref) == "done"


def test_wait_counts_failed_tasks_as_ready(cluster):
    @ray.remote
    def fails():
        raise ValueError("x")

    ref = fails.remote()
    ready, _ = ray.wait([ref], timeout=30)
    assert ready == [ref]
    with pytest.raises(ValueError):
        ray.get(ref)


def test_wait_argument_errors(cluster):
    a, b = ray.put(1), ray.put(2)
    with pytest.raises(ValueError):
        ray.wait([a, a])
    with pytest.raises(ValueError):
        ray.wait([a, b], num_returns=3)
    with pytest.raises(ValueError):
        ray.wait([a], num_returns=0)
    with pytest.raises(TypeError):
        ray.wait(a)
    with pytest.raises(TypeError):
        ray.wait([a, 1])


def test_wait_on_an_empty_list(cluster):
    assert ray.wait([]) == ([], [])


def test_wait_negative_timeout_is_a_value_error(cluster):
    with pytest.raises(ValueError):
        ray.wait([ray.put(1)], timeout=-1)


def test_wait_on_a_thousand_finished_refs(cluster):
    @ray.remote
    def one(i):
        return i

    refs = [one.remote(i) for i in range(1000)]
    ray.get(refs, timeout=60)
    ready, not_ready = ray.wait(refs, num_returns=1000, timeout=10)
    assert ready == refs and not_ready == []
    ready, not_ready = ray.wait(refs, num_returns=10)
    assert ready == refs[:10] and not_ready == refs[10:]


def test_get_timeout_with_one_ready_and_one_pending_ref(cluster, tmp_path):
    release = tmp_path / "release"
    ref = run_until.remote(str(release))
    try:
        with pytest.raises(GetTimeoutError):
            ray.get([ray.put(1), ref], timeout=0.2)
    finally:
        release.touch()
    assert ray.get(ref, timeout=60) == "done"


@ray.remote
def _big_return(i):
    import numpy as np

    return np.full(200_000, i, dtype=np.int64)  # 1.6 MB: in the store, so its task is kept to rebuild it


def test_the_lineage_of_freed_returns_is_let_go(cluster):
    """A task whose return is in the store is kept (to run again if a node loses the
    return) while a ref to the return lives; refs dropped together, from the user's
    thread, release all of it."""
    from microray import ids
    from microray.core import context

    objects = context.worker.objects
    for _ in range(3):  # each round's refs are let go of in a batch of their own
        refs = [_big_return.remote(i) for i in range(20)]
        assert [int(a[0]) for a in ray.get(refs)] == list(range(20))
        kept = {ids.task_of(ref.binary()) for ref in refs}
        assert wait_for(lambda: kept <= set(objects.lineage.entries), 10), "returns in the store keep their task"
        del refs
        assert wait_for(lambda: not kept & set(objects.lineage.entries), 10), "freed returns keep their task"


def test_a_ref_pickled_out_of_band_keeps_its_object(cluster):
    """A ref pickled outside microray (``ray.cloudpickle.dumps(ref)``) can be read back
    after every other ref is gone: the object is kept while its owner lives, as in Ray.
    A ref that travels inside a task's arguments is not kept that way."""
    import gc

    from microray import cloudpickle

    big = np.arange(200_000, dtype=np.int64)  # in the shared-memory store
    kept = ray.put(big)
    pickled = cloudpickle.dumps(kept)
    oid = kept.binary()
    del kept
    gc.collect()
    assert np.array_equal(ray.get(cloudpickle.loads(pickled), timeout=30), big)
    assert ray.get(cloudpickle.loads(pickled), timeout=30)[-1] == 199_999

    passed = ray.put(big)
    assert ray.get(echo_len.remote([passed]), timeout=30) == 200_000
    from microray.core import context

    pinned = context.worker.refs._pinned
    assert oid in pinned and passed.binary() not in pinned


@ray.remote
def echo_len(refs):
    return len(ray.get(refs[0]))
