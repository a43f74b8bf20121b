"""Spilling at runtime, with both backends, through ``ray.init``: more live objects than
the store's memory, read back by the driver and by tasks, spill files deleted on free;
bad input (``put(ref)``, an object larger than everything, unknown options); and what
``shutdown`` leaves behind.

shm spills least-recently-used objects to ``<session>/spill/<namespace>/shm-<namespace>/``
above ``spill_threshold`` (0.8) of ``object_store_memory`` and restores them on ``get``.
lmdb has no separate spill step: its environment is a file on disk in the same spill
folder (``lmdb-<namespace>/data.mdb``), the page cache holds the hot part, and
``object_store_memory`` is only the map's starting size; the cap is ``map_size``. So
with lmdb ``usage().spilled_bytes`` stays 0 and nothing is deleted from disk on free
(LMDB reuses the pages; the file does not shrink); the whole folder goes at shutdown.
"""

from __future__ import annotations

import gc
import os
import re

import pytest

import microray as ray
from microray.exceptions import ConfigError, ObjectStoreFullError
from microray.testing.contracts.object_store import mapping_of

from .conftest import (
    _mark_baseline,
    MB,
    assert_no_leaks,
    files_under,
    shm_folder,
    spill_dir,
    store_usage,
    store_used,
    stray_processes,
    wait_for,
    wait_used,
)

np = pytest.importorskip("numpy")

pytestmark = pytest.mark.timeout(240)

N_OBJECTS = 8
OBJ = 100 * MB
STORE = 300 * MB
LMDB_MAP = 2 * 1024**3


def fill_of(i: int) -> int:
    return 11 * (i + 1)


def check_array(value, fill: int) -> None:
    assert value.shape == (OBJ,) and value.dtype == np.uint8
    assert int(value[0]) == fill and int(value[OBJ // 2]) == fill and int(value[-1]) == fill
    assert int(value.sum()) == fill * OBJ


@ray.remote
def describe(arr):
    """What a task sees of a (possibly spilled) argument: first, middle, last, sum."""
    return int(arr[0]), int(arr[len(arr) // 2]), int(arr[-1]), int(arr.sum())


def numbers_in(text: str) -> set[int]:
    return {int(n) for n in re.findall(r"\d+", text)}


def put_many():
    return [ray.put(np.full(OBJ, fill_of(i), dtype=np.uint8)) for i in range(N_OBJECTS)]


def read_all_back(refs) -> None:
    for i, ref in enumerate(refs):
        value = ray.get(ref)
        check_array(value, fill_of(i))
        del value  # release the view, so the object can be spilled again
    got = ray.get([describe.remote(ref) for ref in refs], timeout=180)
    assert got == [(fill_of(i),) * 3 + (fill_of(i) * OBJ,) for i in range(N_OBJECTS)]


# -- shm --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_shm_eight_100mb_objects_through_a_300mb_store(make_cluster):
    make_cluster(object_store_memory=STORE)
    spill = spill_dir()
    baseline = store_used()
    refs = put_many()

    usage = store_usage()
    assert usage.capacity_bytes == STORE
    assert usage.used_bytes <= STORE
    assert usage.spilled_bytes > 0 and usage.num_spilled >= N_OBJECTS - 3, usage
    assert usage.num_objects + usage.num_spilled >= N_OBJECTS, usage
    spilled_files = files_under(spill)
    assert len(spilled_files) == usage.num_spilled, spilled_files
    assert all(size >= OBJ for size in spilled_files.values())

    read_all_back(refs)  # every object comes back right, spilled or not
    assert store_usage().used_bytes <= STORE

    del refs
    wait_used(baseline, what="all eight objects freed")
    wait_for(lambda: not files_under(spill), timeout=20, what=f"spill files in {spill} deleted on free")
    usage = store_usage()
    assert usage.spilled_bytes == 0 and usage.num_spilled == 0, usage


def test_shm_values_held_past_the_store_are_read_from_the_spill_files(make_cluster):
    """Held values fill a 100 MB store, so a spilled object cannot be restored (nothing is
    left to spill): get() maps its spill file read-only instead, in the driver and in a
    task, and leaves the objects in memory alone. Freeing its ref deletes the spill file
    while the value, still held, stays readable."""
    size = 40 * MB
    make_cluster(object_store_memory=100 * MB)
    spill = spill_dir()
    baseline = store_used()
    refs = [ray.put(np.full(size, fill_of(i), dtype=np.uint8)) for i in range(4)]
    values = [ray.get(ref) for ref in refs]  # the first two are restored, spilling the others

    usage = store_usage()
    assert usage.used_bytes <= 100 * MB
    assert (usage.num_objects, usage.num_spilled) == (2, 2), usage
    mapped = [mapping_of(value.__array_interface__["data"][0]) for value in values]
    from_spill = [i for i, m in enumerate(mapped) if m is not None and m.path.startswith(spill)]
    assert len(from_spill) == 2, mapped
    for i, m in enumerate(mapped):
        assert m is not None and m.perms.startswith("r-") and m.perms[3] == "s", m  # shared, read-only
        assert i in from_spill or m.path.startswith("/dev/shm/"), m
    for i, value in enumerate(values):
        assert not value.flags.writeable
        assert int(value[0]) == int(value[-1]) == fill_of(i) and int(value.sum()) == fill_of(i) * size
    with pytest.raises(ValueError):
        values[from_spill[0]][0] = 0

    # a worker reads a spilled object the same way while the driver holds the memory
    k = from_spill[-1]
    assert ray.get(describe.remote(refs[k]), timeout=60) == (fill_of(k),) * 3 + (fill_of(k) * size,)

    # freeing the ref deletes the spill file; the held value keeps its bytes
    spill_file = os.path.relpath(mapped[k].path, spill)
    assert spill_file in files_under(spill)
    refs[k] = None
    wait_for(lambda: spill_file not in files_under(spill), what=f"spill file {spill_file} deleted on free")
    assert int(values[k].sum()) == fill_of(k) * size
    # nothing else was evicted or changed
    usage = store_usage()
    assert (usage.num_objects, usage.num_spilled) == (2, 1), usage
    for i, value in enumerate(values):
        assert int(value.sum()) == fill_of(i) * size

    del values, refs, value
    wait_used(baseline, what="the four objects freed")
    wait_for(lambda: not files_under(spill), what=f"spill files in {spill} deleted on free")


@pytest.mark.slow
def test_shm_object_larger_than_store_and_bad_input(make_cluster):
    make_cluster(object_store_memory=STORE)
    baseline = store_used()
    too_big = np.zeros(STORE + 50 * MB, dtype=np.uint8)  # calloc'd: no pages touched
    with pytest.raises(ObjectStoreFullError) as info:
        ray.put(too_big)
    message = str(info.value)
    numbers = numbers_in(message)
    assert STORE in numbers, message  # the store's size
    assert any(too_big.nbytes <= n < too_big.nbytes + 4096 for n in numbers), message  # the object's
    assert "spill" in message, message  # and the spill folder's room
    assert isinstance(info.value, MemoryError)
    del too_big
    assert store_used() == baseline  # nothing half-written is left

    # Ray's rule: put() of an ObjectRef is refused; wrapped in a list it is fine
    ref = ray.put(np.ones(10, dtype=np.uint8))
    with pytest.raises(TypeError, match="ObjectRef"):
        ray.put(ref)
    wrapped = ray.put([ref])
    assert int(ray.get(ray.get(wrapped)[0]).sum()) == 10


# -- lmdb -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_lmdb_eight_100mb_objects_through_a_300mb_store(make_cluster):
    make_cluster(object_store="lmdb", object_store_memory=STORE, object_store_options={"map_size": LMDB_MAP})
    spill = spill_dir()
    baseline = store_used()
    refs = put_many()

    usage = store_usage()
    assert usage.capacity_bytes == LMDB_MAP  # the cap is map_size
    assert usage.used_bytes - baseline >= N_OBJECTS * OBJ  # all eight live in the environment...
    assert usage.num_objects == N_OBJECTS
    assert usage.spilled_bytes == 0  # ...which is itself on disk: no separate spill copies
    data = {name: size for name, size in files_under(spill).items() if name.endswith("data.mdb")}
    assert len(data) == 1 and next(iter(data.values())) >= N_OBJECTS * OBJ, files_under(spill)

    read_all_back(refs)

    del refs
    wait_used(baseline, what="all eight objects deleted from the LMDB environment")
    assert store_usage().num_objects == 0


@pytest.mark.slow
def test_lmdb_object_larger_than_map_cap(make_cluster):
    make_cluster(object_store="lmdb", object_store_memory=STORE, object_store_options={"map_size": 1024**3})
    too_big = np.zeros(1024**3 + 10 * MB, dtype=np.uint8)
    with pytest.raises(ObjectStoreFullError) as info:
        ray.put(too_big)
    message = str(info.value)
    numbers = numbers_in(message)
    assert 1024**3 in numbers, message  # the cap
    assert any(too_big.nbytes <= n < too_big.nbytes + 4096 for n in numbers), message  # the object
    del too_big
    assert store_usage().num_objects == 0
    # a normal object still fits afterwards
    assert int(ray.get(ray.put(np.ones(OBJ, dtype=np.uint8))).sum()) == OBJ


# -- configuration errors -------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["shm", "lmdb"])
def test_unknown_object_store_option_fails_at_init_naming_it(backend, _module_guard):
    if ray.is_initialized():
        ray.shutdown()
    _mark_baseline()
    with pytest.raises(ConfigError, match="no_such_option") as info:
        ray.init(num_cpus=1, object_store=backend, object_store_options={"no_such_option": 1})
    assert backend in str(info.value) or "object_store" in str(info.value), str(info.value)
    assert not ray.is_initialized()
    assert not stray_processes(), "init started processes before refusing its options"


# -- what shutdown leaves -------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["shm", "lmdb"])
def test_shutdown_with_spilled_objects_alive_leaves_nothing(backend, _module_guard):
    kwargs = {"num_cpus": 1, "object_store_memory": STORE}
    if backend == "lmdb":
        kwargs.update(object_store="lmdb", object_store_options={"map_size": LMDB_MAP})
    if ray.is_initialized():
        ray.shutdown()
    ray.init(**kwargs)
    w = ray.api._worker
    namespace, session, spill = w.store_namespace, w.session_dir, spill_dir()
    refs = [ray.put(np.full(OBJ, i, dtype=np.uint8)) for i in range(5)]
    assert files_under(spill), "nothing on disk: the test would prove nothing"
    if backend == "shm":
        assert os.path.isdir(shm_folder(namespace)) and store_usage().num_spilled > 0
    ray.shutdown()  # with the objects still referenced (and some spilled)
    del refs
    gc.collect()
    assert_no_leaks(namespace, spill)  # no process, no /dev/shm folder, no file in the spill folder
    assert not os.path.exists(shm_folder(namespace))
    assert not files_under(os.path.join(session, "spill"))


def test_shutdown_removes_the_spill_folder_itself(_module_guard):
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=1, object_store_memory=STORE)
    spill = spill_dir()
    ref = ray.put(np.ones(MB, dtype=np.uint8))
    ray.shutdown()
    del ref
    assert_no_leaks(None, spill)
    assert not os.path.exists(spill), f"{spill} left behind (empty: {not files_under(spill)})"
