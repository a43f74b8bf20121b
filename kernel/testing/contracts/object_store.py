"""The contract every ``ObjectStore`` must pass.

Subclass ``ObjectStoreContract`` and provide one fixture, ``registration``,
returning your ``ObjectStoreRegistration``; the suite builds stores from its
factory, reads its ``capabilities`` to decide which tests apply, and opens
more instances of the same namespace (in this process and in child processes)
to check that every process of a node sees the same objects::

    import pytest
    from microray.testing.contracts import ObjectStoreContract

    class TestMyStore(ObjectStoreContract):
        @pytest.fixture
        def registration(self):
            return my_plugin.microray_object_stores()[0]

Fixtures a subclass may use or override:

``store_factory``
    ``store_factory(capacity=None, namespace=None, **options)`` opens an
    instance (same namespace as ``store`` unless told otherwise) and
    ``store_factory.spec(...)`` describes one for a child process. Its teardown
    destroys every namespace it opened and fails the test if anything is left
    in /dev/shm or in the spill folder.
``store``
    A fresh, empty store of ``DEFAULT_CAPACITY`` bytes.
``capacity_options``
    A function ``capacity -> extra options`` for backends whose size limit is
    an option rather than the factory's ``capacity`` (lmdb's ``map_size``).

Capabilities the suite understands: ``zero_copy`` (views point into a shared
file mapping), ``spill`` (the store holds more than ``capacity`` by spilling
to the spill folder, so it is only full when everything in memory is in use,
and even then a spilled object can be read),
``persistence`` (objects survive closing and reopening), ``cross_process``
(other processes open the namespace by name and see the same objects).

The child processes run ``python -m microray.testing.contracts.object_store_support``
with a JSON description of the store, so the factory must be importable
(``module:qualname``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from microray.exceptions import ConfigError, ObjectStoreFullError
from microray.interfaces.object_store import ObjectStore
from microray.registrations import ObjectStoreRegistration
from microray.testing.contracts.object_store_support import (  # noqa: F401 -- re-exported for tests
    StoreSpec,
    StoreFactory,
    files_under,
    _shm_entries,
    pattern,
    crc,
    buffer_address,
    Mapping,
    mapping_of,
    run_child,
    start_child,
    MiB,
    DEFAULT_CAPACITY,
    CHILD_TIMEOUT,
    SHM_ROOT,
)

__all__ = ["ObjectStoreContract", "StoreFactory", "StoreSpec", "DEFAULT_CAPACITY"]


# --------------------------------------------------------------------------- the contract
class ObjectStoreContract:
    """The tests every object store backend must pass (see the module docstring)."""

    # -- fixtures ------------------------------------------------------------
    @pytest.fixture
    def registration(self) -> ObjectStoreRegistration:
        raise NotImplementedError("provide a `registration` fixture returning your ObjectStoreRegistration")

    @pytest.fixture
    def capacity_options(self) -> Callable[[int], dict[str, Any]]:
        return lambda capacity: {}

    @pytest.fixture
    def capabilities(self, registration: ObjectStoreRegistration) -> frozenset[str]:
        return registration.capabilities

    @pytest.fixture
    def store_factory(
        self,
        registration: ObjectStoreRegistration,
        capacity_options: Callable[[int], dict[str, Any]],
        tmp_path: Any,
    ) -> Iterator[StoreFactory]:
        factory = StoreFactory(registration, str(tmp_path), capacity_options)
        yield factory
        factory.cleanup()

    @pytest.fixture
    def store(self, store_factory: StoreFactory) -> ObjectStore:
        return store_factory()

    @staticmethod
    def require(capabilities: frozenset[str], capability: str) -> None:
        if capability not in capabilities:
            pytest.skip(f"backend has no {capability!r} capability")

    # -- round trips -----------------------------------------------------------
    def test_is_an_object_store(self, store: ObjectStore) -> None:
        assert isinstance(store, ObjectStore)

    def test_round_trip_empty_and_small(self, store: ObjectStore) -> None:
        store.put(b"empty", b"")
        store.put(b"small", b"hello object store")
        store.put(b"bytearray", bytearray(b"\x00\x01\x02"))
        assert bytes(store.get(b"empty")) == b""
        assert bytes(store.get(b"small")) == b"hello object store"
        assert bytes(store.get(b"bytearray")) == b"\x00\x01\x02"
        assert store.contains(b"empty")

    def test_round_trip_multidimensional_buffer(self, store: ObjectStore) -> None:
        np = pytest.importorskip("numpy")
        array = np.arange(64 * 1024, dtype=np.float64).reshape(256, 256)
        store.put(b"array", memoryview(array))
        back = np.frombuffer(store.get(b"array"), dtype=np.float64).reshape(256, 256)
        assert np.array_equal(back, array)

    def test_round_trip_500mb(self, store_factory: StoreFactory) -> None:
        np = pytest.importorskip("numpy")
        size = 500 * MiB
        store = store_factory(capacity=640 * MiB)
        buf = store.create(b"big", size)
        target = np.frombuffer(buf, dtype=np.uint64)
        target[:] = np.arange(size // 8, dtype=np.uint64)
        del target
        buf.release()
        store.seal(b"big")
        view = store.get(b"big")
        assert view.nbytes == size
        got = np.frombuffer(view, dtype=np.uint64)
        assert np.array_equal(got, np.arange(size // 8, dtype=np.uint64))

    def test_object_ids(self, store: ObjectStore) -> None:
        store.put(b"x" * 32, b"longest id")
        assert bytes(store.get(b"x" * 32)) == b"longest id"
        with pytest.raises(ValueError):
            store.put(b"x" * 33, b"too long")
        with pytest.raises(TypeError):
            store.put("not-bytes", b"")  # type: ignore[arg-type]

    # -- create / seal / abort -------------------------------------------------
    def test_create_is_invisible_until_sealed(self, store: ObjectStore, store_factory: StoreFactory) -> None:
        data = pattern(100_000, 3)
        buf = store.create(b"obj", len(data))
        assert len(buf) == len(data) and not buf.readonly
        assert not store.contains(b"obj")
        assert store.get(b"obj") is None
        buf[:] = data
        other = store_factory()
        assert not other.contains(b"obj")
        with pytest.raises(FileExistsError):
            other.create(b"obj", 10)  # being written by another instance
        store.seal(b"obj")
        assert store.contains(b"obj") and other.contains(b"obj")
        assert bytes(other.get(b"obj")) == data
        with pytest.raises(FileExistsError):
            store.create(b"obj", 10)
        with pytest.raises(FileExistsError):
            other.put(b"obj", b"again")
        with pytest.raises(KeyError):
            store.seal(b"never-created")

    def test_abort_discards(self, store: ObjectStore) -> None:
        buf = store.create(b"obj", 1000)
        buf[:] = b"\x01" * 1000
        store.abort(b"obj")
        assert not store.contains(b"obj")
        assert store.get(b"obj") is None
        store.put(b"obj", b"second try")
        assert bytes(store.get(b"obj")) == b"second try"

    def test_second_instance_sees_the_same_objects(self, store: ObjectStore, store_factory: StoreFactory) -> None:
        other = store_factory()
        store.put(b"a", b"from the first")
        other.put(b"b", b"from the second")
        assert bytes(other.get(b"a")) == b"from the first"
        assert bytes(store.get(b"b")) == b"from the second"
        assert other.delete(b"a")
        assert not store.contains(b"a") and store.get(b"a") is None
        assert not store.delete(b"a")

    # -- views -----------------------------------------------------------------
    def test_views_are_read_only(self, store: ObjectStore) -> None:
        store.put(b"obj", pattern(64 * 1024, 5))
        view = store.get(b"obj")
        assert view.readonly
        with pytest.raises(TypeError):
            view[0] = 1
        np = pytest.importorskip("numpy")
        assert not np.frombuffer(view, np.uint8).flags.writeable

    def test_get_is_zero_copy(self, store: ObjectStore, capabilities: frozenset[str]) -> None:
        self.require(capabilities, "zero_copy")
        data = pattern(4 * MiB, 7)
        store.put(b"obj", data)
        first, second = store.get(b"obj"), store.get(b"obj")
        a1, a2 = buffer_address(first), buffer_address(second)
        m1, m2 = mapping_of(a1), mapping_of(a2)
        assert m1 is not None and m2 is not None
        # a shared mapping of a file (the store's memory), not a private heap copy
        assert m1.path.startswith("/") and m1.perms[3] == "s", m1
        assert mapping_of(a1 + len(data) - 1) is not None
        # both views are the same bytes of the same file
        assert (m1.path, m1.file_offset(a1)) == (m2.path, m2.file_offset(a2))
        assert bytes(first) == data

    def test_view_survives_delete(self, store: ObjectStore) -> None:
        data = pattern(4 * MiB, 11)
        store.put(b"victim", data)
        view = store.get(b"victim")
        assert store.delete(b"victim")
        assert not store.contains(b"victim") and store.get(b"victim") is None
        for i in range(6):  # reuse of the freed memory must not reach the live view
            oid = b"next-%d" % i
            store.put(oid, pattern(4 * MiB, 20 + i))
            if i % 2:
                store.delete(oid)
        assert crc(view) == crc(data)

    def test_view_outlives_its_store_reference(self, store_factory: StoreFactory) -> None:
        store = store_factory()
        data = pattern(2 * MiB, 13)
        store.put(b"obj", data)
        view = store.get(b"obj")
        del store
        assert crc(view) == crc(data)

    # -- processes ---------------------------------------------------------------
    def test_concurrent_readers_in_processes(
        self, store: ObjectStore, store_factory: StoreFactory, capabilities: frozenset[str]
    ) -> None:
        self.require(capabilities, "cross_process")
        data = pattern(32 * MiB, 17)
        store.put(b"shared", data)
        spec = store_factory.spec()
        children = [start_child(spec, "read", object_id=b"shared".hex(), crc=crc(data)) for _ in range(4)]
        for child in children:
            out, err = child.communicate(timeout=CHILD_TIMEOUT)
            assert child.returncode == 0, (out, err)
            assert json.loads(out.strip().splitlines()[-1])["size"] == len(data)

    def test_object_written_by_another_process(
        self, store: ObjectStore, store_factory: StoreFactory, capabilities: frozenset[str]
    ) -> None:
        self.require(capabilities, "cross_process")
        done = run_child(store_factory.spec(), "put", object_id=b"theirs".hex(), size=3 * MiB, seed=9)
        assert done.returncode == 0, done.stderr
        assert crc(store.get(b"theirs")) == crc(pattern(3 * MiB, 9))

    def test_concurrent_writers_in_processes(
        self, store_factory: StoreFactory, capabilities: frozenset[str]
    ) -> None:
        """Three processes write at once; with ``spill`` they overflow a small store together."""
        self.require(capabilities, "cross_process")
        capacity = 24 * MiB if "spill" in capabilities else DEFAULT_CAPACITY
        spec = store_factory.spec(capacity=capacity)
        store = store_factory(capacity=capacity)
        children = [
            start_child(spec, "put_many", object_id=(b"w%d" % w).hex(), count=6, size=3 * MiB, seed=100 * w)
            for w in range(3)
        ]
        for child in children:
            out, err = child.communicate(timeout=CHILD_TIMEOUT)
            assert child.returncode == 0, (out, err)
        for w in range(3):
            for i in range(6):
                view = store.get(b"w%d-%d" % (w, i))
                assert view is not None and crc(view) == crc(pattern(3 * MiB, 100 * w + i))
                del view
        assert store.usage().num_objects + store.usage().num_spilled == 18

    def test_threads_share_an_instance(self, store: ObjectStore) -> None:
        errors: list[BaseException] = []

        def work(t: int) -> None:
            try:
                for i in range(20):
                    oid = b"t%d-%d" % (t, i)
                    data = pattern(64 * 1024 + i, t * 100 + i)
                    if i % 2:
                        buf = store.create(oid, len(data))
                        buf[:] = data
                        buf.release()
                        store.seal(oid)
                    else:
                        store.put(oid, data)
                    assert crc(store.get(oid)) == crc(data)
                    if i % 3 == 0:
                        assert store.delete(oid)
            except BaseException as exc:  # noqa: BLE001 -- reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=CHILD_TIMEOUT)
        assert not errors, errors
        assert store.usage().num_objects == 4 * (20 - 7)

    def test_reader_exit_keeps_object(
        self, store: ObjectStore, store_factory: StoreFactory, capabilities: frozenset[str]
    ) -> None:
        """A process that attached the object and exited must not take it with it."""
        self.require(capabilities, "cross_process")
        data = pattern(8 * MiB, 19)
        store.put(b"kept", data)
        done = run_child(store_factory.spec(), "read", object_id=b"kept".hex(), crc=crc(data))
        assert done.returncode == 0, done.stderr
        assert store.contains(b"kept")
        assert crc(store.get(b"kept")) == crc(data)
        assert crc(store_factory().get(b"kept")) == crc(data)

    def test_crashed_writer_leaves_nothing_visible(
        self, store: ObjectStore, store_factory: StoreFactory, capabilities: frozenset[str]
    ) -> None:
        self.require(capabilities, "cross_process")
        before = store.usage()
        done = run_child(store_factory.spec(), "crash_writer", object_id=b"torn".hex(), size=4 * MiB)
        assert done.returncode == 1, done.stderr
        for instance in (store, store_factory()):
            assert not instance.contains(b"torn")
            assert instance.get(b"torn") is None
        assert store.usage().num_objects == before.num_objects
        # the id is free again: the dead writer's claim is reclaimed
        store.put(b"torn", b"whole")
        assert bytes(store.get(b"torn")) == b"whole"

    # -- accounting ----------------------------------------------------------------
    def test_contains_and_usage(self, store: ObjectStore) -> None:
        empty = store.usage()
        assert (empty.used_bytes, empty.num_objects) == (0, 0)
        assert empty.capacity_bytes > 0
        for i, size in enumerate((1000, 20_000, 300_000)):
            store.put(b"obj-%d" % i, pattern(size, i))
        usage = store.usage()
        assert usage.num_objects == 3
        assert usage.used_bytes == 321_000
        assert usage.spilled_bytes == 0 and usage.num_spilled == 0
        assert store.contains(b"obj-1") and not store.contains(b"obj-9")
        assert store.delete(b"obj-1")
        assert not store.contains(b"obj-1")
        usage = store.usage()
        assert (usage.used_bytes, usage.num_objects) == (301_000, 2)

    def test_object_larger_than_capacity(self, store_factory: StoreFactory) -> None:
        capacity = 16 * MiB
        store = store_factory(capacity=capacity)
        size = capacity + MiB
        with pytest.raises(ObjectStoreFullError) as info:
            store.put(b"huge", b"\0" * size)
        assert str(size) in str(info.value) and str(capacity) in str(info.value)
        assert not store.contains(b"huge")

    def test_full_only_when_nothing_can_be_freed(self, store_factory: StoreFactory) -> None:
        """Views held on everything: the store fills up, then frees room once they go."""
        capacity, size = 32 * MiB, 4 * MiB
        store = store_factory(capacity=capacity)
        views = []
        stored = 0
        with pytest.raises(ObjectStoreFullError) as info:
            for i in range(2 * capacity // size):
                store.put(b"pinned-%d" % i, pattern(size, i))
                views.append(store.get(b"pinned-%d" % i))
                stored += 1
        message = str(info.value)
        assert str(size) in message and str(capacity) in message
        assert stored * size <= capacity
        assert stored * size >= capacity // 2  # not refused while mostly empty
        for i in range(len(views)):  # nothing was lost on the way
            assert crc(views[i]) == crc(pattern(size, i))
        views.clear()  # (a view kept alive anywhere may keep its memory, e.g. an MVCC snapshot)
        del info
        store.delete(b"pinned-0")
        store.put(b"after", pattern(size, 99))
        assert crc(store.get(b"after")) == crc(pattern(size, 99))

    # -- spilling ------------------------------------------------------------------
    def test_spills_instead_of_failing(self, store_factory: StoreFactory, capabilities: frozenset[str]) -> None:
        self.require(capabilities, "spill")
        capacity, size = 16 * MiB, 4 * MiB
        store = store_factory(capacity=capacity)
        for i in range(12):  # 3x the capacity, no view held
            store.put(b"obj-%d" % i, pattern(size, i))
        usage = store.usage()
        assert usage.used_bytes <= capacity
        assert usage.num_spilled >= 12 - capacity // size
        assert usage.num_objects + usage.num_spilled == 12
        for i in range(12):
            assert store.contains(b"obj-%d" % i)
            assert crc(store.get(b"obj-%d" % i)) == crc(pattern(size, i))
        kinds = {kind for kind, _info in store_factory.events}
        assert {"spilled", "restored"} <= kinds, "a spilling store reports spills and restores to on_event"
        for _kind, info in store_factory.events:
            assert {"object_id", "size", "path"} <= set(info)

    def test_delete_removes_spilled_copy(self, store_factory: StoreFactory, capabilities: frozenset[str]) -> None:
        self.require(capabilities, "spill")
        store = store_factory(capacity=16 * MiB)
        for i in range(8):
            store.put(b"obj-%d" % i, pattern(4 * MiB, i))
        assert store.usage().num_spilled > 0
        assert files_under(store_factory.spill_dir)
        for i in range(8):
            assert store.delete(b"obj-%d" % i)
            assert not store.contains(b"obj-%d" % i)
        assert files_under(store_factory.spill_dir) == []
        usage = store.usage()
        assert (usage.num_objects, usage.num_spilled, usage.spilled_bytes) == (0, 0, 0)

    def test_spilled_objects_are_read_while_readers_hold_the_memory(
        self, store_factory: StoreFactory, capabilities: frozenset[str]
    ) -> None:
        """Views held on objects that fill the memory: ``get`` of a spilled object still
        succeeds (e.g. from its spill copy), read-only and right, without taking memory
        past ``capacity`` or disturbing the objects in use; ``delete`` still removes the
        spill copy, and the view stays valid."""
        self.require(capabilities, "spill")
        capacity, size, count = 16 * MiB, 4 * MiB, 8
        store = store_factory(capacity=capacity)
        for i in range(count):
            store.put(b"obj-%d" % i, pattern(size, i))
        views = [store.get(b"obj-%d" % i) for i in range(count)]  # all held at once
        usage = store.usage()
        assert usage.used_bytes <= capacity
        assert usage.num_objects + usage.num_spilled == count
        assert usage.num_spilled >= count - capacity // size  # what did not fit stays spilled
        for i, view in enumerate(views):
            assert view is not None and view.readonly and view.nbytes == size
            assert crc(view) == crc(pattern(size, i)), f"object {i} came back wrong"
        last = views[-1]  # read while the memory was held
        if "zero_copy" in capabilities:
            found = mapping_of(buffer_address(last))
            assert found is not None and found.path.startswith("/") and found.perms[3] == "s", found
        for i in range(count):  # a second get, from another instance too: nothing moved or broke
            for instance in (store, store_factory(capacity=capacity)):
                again = instance.get(b"obj-%d" % i)
                assert again is not None and crc(again) == crc(pattern(size, i))
                del again
        for i in range(count):
            assert store.delete(b"obj-%d" % i)
        assert files_under(store_factory.spill_dir) == []
        assert store.usage().num_spilled == 0
        for i, view in enumerate(views):  # deleted under live views: the bytes stay
            assert crc(view) == crc(pattern(size, i))

    def test_8x100mb_through_a_300mb_store(self, store_factory: StoreFactory, capabilities: frozenset[str]) -> None:
        self.require(capabilities, "spill")
        np = pytest.importorskip("numpy")
        size = 100 * MiB
        store = store_factory(capacity=300 * MiB)
        for i in range(8):
            store.put(b"big-%d" % i, np.full(size, i, dtype=np.uint8))
        usage = store.usage()
        assert usage.used_bytes <= 300 * MiB and usage.num_spilled >= 5
        for i in range(8):
            view = store.get(b"big-%d" % i)
            got = np.frombuffer(view, np.uint8)
            assert got.size == size and bool((got == i).all()), f"object {i} came back wrong"
            del got, view
        for i in range(8):
            store.delete(b"big-%d" % i)
        assert store.usage().num_spilled == 0

    # -- persistence / options -------------------------------------------------------
    def test_persists_across_reopen(self, store_factory: StoreFactory, capabilities: frozenset[str]) -> None:
        self.require(capabilities, "persistence")
        store = store_factory()
        store.put(b"durable", pattern(MiB, 23))
        store.close()
        reopened = store_factory()
        assert reopened.contains(b"durable")
        assert crc(reopened.get(b"durable")) == crc(pattern(MiB, 23))
        assert reopened.usage().num_objects == 1

    def test_unknown_option_rejected(self, registration: ObjectStoreRegistration) -> None:
        with pytest.raises(ConfigError, match="no_such_option"):
            registration.validate_options("object_store", {"no_such_option": 1})
