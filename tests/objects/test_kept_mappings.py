"""The shm store keeps a writer's mapping of a large object (unpinned) so that the next
object the writer places in the same recycled segment skips page-table setup. Such a
mapping must never show stale data, hand out writable views, pin the object against
spilling, or outlive the segment for long."""

from __future__ import annotations

import os

import numpy as np

import microray as ray

from .conftest import MB


def _kept(store) -> list:
    return store._kept.entries()  # the backend's kept writer mappings: [(mapping, fd)]


def test_a_recycled_segment_written_through_a_kept_mapping_reads_back_new_bytes(make_cluster):
    make_cluster(num_cpus=1, object_store_memory=400 * MB)
    store = ray.api._worker.object_store
    first = ray.put(np.full(32 * MB, 7, dtype=np.uint8))
    assert len(_kept(store)) == 1
    del first  # the segment goes back to the pool
    second = ray.put(np.full(32 * MB, 9, dtype=np.uint8))  # reuses it, through the kept mapping
    assert len(_kept(store)) == 1
    value = ray.get(second)
    assert value.min() == 9 and value.max() == 9
    assert not value.flags.writeable


def test_kept_mappings_do_not_pin_objects_against_spilling(make_cluster):
    # a 200 MB store: the driver keeps its mapping of A (45 MB), yet B (170 MB) fits only
    # once A is spilled -- a pinned A would make this put fail
    make_cluster(num_cpus=1, object_store_memory=200 * MB)
    store = ray.api._worker.object_store
    a = ray.put(np.full(45 * MB, 1, dtype=np.uint8))
    assert len(_kept(store)) == 1
    b = ray.put(np.full(170 * MB, 2, dtype=np.uint8))
    assert store.usage().spilled_bytes >= 45 * MB
    for ref, want in ((a, 1), (b, 2)):
        value = ray.get(ref)
        assert int(value[0]) == want and int(value[-1]) == want
        del value


def test_a_kept_mapping_is_dropped_once_its_segment_is_gone(make_cluster):
    make_cluster(num_cpus=1, object_store_memory=400 * MB)
    store = ray.api._worker.object_store
    ref = ray.put(np.full(32 * MB, 1, dtype=np.uint8))
    ((_mapping, fd),) = _kept(store)
    del ref
    assert store._space.evict_pool_segment(max(store_pool(store)))  # as another process would
    assert os.fstat(fd).st_nlink == 0  # kept, but its segment is gone
    ray.put(np.full(20 * MB, 2, dtype=np.uint8))  # the next large put prunes kept mappings
    assert len(_kept(store)) == 1  # only the new object's
    assert all(os.fstat(f).st_nlink > 0 for _, f in _kept(store))


def store_pool(store) -> list:
    from microray.backends.object_store import _segments as seg

    with store._lock.held():
        return seg.pool_entries(store._space.free)
