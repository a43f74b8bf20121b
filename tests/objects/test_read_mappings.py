"""The shm store keeps a process's read mapping of an object for a while after the last
view of it is gone, so that the next get of the object maps nothing. Such a kept mapping
must never pin the object (pins live exactly as long as views), never show another
object's bytes, never hand out a writable view, and not outlive a short idle period.

These run on the store alone (no cluster): an instance of the registered ``shm``
backend in a private namespace, torn down with the suite's leak check."""

from __future__ import annotations

import gc
import os
import time
from typing import Any

import numpy as np
import pytest

from microray.backends.object_store import _read_mappings
from microray.backends.object_store import _segments as seg
from microray.plugin_manager import get_plugin_manager
from microray.testing.contracts.object_store import (
    MiB,
    StoreFactory,
    buffer_address,
    crc,
    mapping_of,
    pattern,
)
from microray.testing.processes import wait_for


@pytest.fixture
def factory(tmp_path: Any) -> Any:
    f = StoreFactory(get_plugin_manager().select("object_store", "shm"), str(tmp_path), lambda capacity: {})
    yield f
    f.cleanup()


def _read_once(store: Any, object_id: bytes) -> None:
    """Get the object and drop the view at once: mapped, then unpinned."""
    view = store.get(object_id)
    assert view is not None and view.nbytes > 0
    del view


def _segment(store: Any, object_id: bytes) -> str:
    return os.path.join(store.root, "objects", object_id.hex())


def test_a_second_get_reads_through_the_kept_mapping(factory: StoreFactory) -> None:
    store = factory()
    data = pattern(8 * MiB, 1)
    store.put(b"a", data)
    first = store.get(b"a")
    address = buffer_address(first)
    del first  # no view is left: the pin goes, the mapping stays
    assert not seg.is_pinned(_segment(store, b"a"))
    kept = mapping_of(address)
    assert kept is not None and kept.path == _segment(store, b"a")
    second = store.get(b"a")
    assert buffer_address(second) == address  # the same mapping, not a new one
    assert crc(second) == crc(data)
    assert seg.is_pinned(_segment(store, b"a"))


def test_pins_live_exactly_as_long_as_views(factory: StoreFactory) -> None:
    store = factory()
    store.put(b"a", pattern(4 * MiB, 2))
    path = _segment(store, b"a")
    view = store.get(b"a")
    again = store.get(b"a")  # shares the live view's pin
    part = view[100:200]
    array = np.frombuffer(again, np.uint8)
    del view, again
    assert seg.is_pinned(path)  # the slice and the array still read the segment
    del part
    assert seg.is_pinned(path)
    del array
    assert not seg.is_pinned(path)
    assert len(store._reads) == 1  # the mapping itself is kept, unpinned


def test_views_are_read_only_over_the_kept_mapping(factory: StoreFactory) -> None:
    store = factory()
    store.put(b"a", pattern(2 * MiB, 3))
    _read_once(store, b"a")
    view = store.get(b"a")
    assert view.readonly and view.format == "B" and view.nbytes == 2 * MiB
    with pytest.raises(TypeError):
        view[0] = 1
    assert not np.frombuffer(view, np.uint8).flags.writeable


def test_a_recycled_segment_is_never_read_through_the_old_mapping(factory: StoreFactory) -> None:
    store, other = factory(), factory()  # another process's instance, as far as the kept mapping knows
    old = pattern(4 * MiB, 4)
    store.put(b"a", old)
    _read_once(store, b"a")  # mapped, then unpinned: the mapping is kept
    inode = os.stat(_segment(store, b"a")).st_ino
    other.delete(b"a")
    other.put(b"b", pattern(4 * MiB, 5))  # takes a's segment from the pool
    assert os.stat(_segment(store, b"b")).st_ino == inode
    new = pattern(4 * MiB, 6)
    other.put(b"a", new)  # the same id again, in another segment
    assert crc(store.get(b"a")) == crc(new)
    assert crc(store.get(b"b")) == crc(pattern(4 * MiB, 5))


def test_the_same_id_again_in_its_old_segment_resized(factory: StoreFactory) -> None:
    store, other = factory(), factory()  # another process's instance, as far as the kept mapping knows
    store.put(b"a", pattern(4 * MiB, 4))
    _read_once(store, b"a")
    inode = os.stat(_segment(store, b"a")).st_ino
    other.delete(b"a")
    smaller = pattern(3 * MiB, 5)
    other.put(b"a", smaller)  # the pool's best fit: the old segment, shrunk
    assert os.stat(_segment(store, b"a")).st_ino == inode
    view = store.get(b"a")
    assert view.nbytes == 3 * MiB and crc(view) == crc(smaller)


def test_another_instance_deleting_the_object_is_seen(factory: StoreFactory) -> None:
    store, other = factory(), factory()
    store.put(b"a", pattern(4 * MiB, 7))
    _read_once(store, b"a")
    assert other.delete(b"a")  # this instance's kept mapping is not told
    assert store.get(b"a") is None
    assert not store.contains(b"a")


def test_a_kept_mapping_does_not_pin_against_spilling(factory: StoreFactory) -> None:
    store = factory(capacity=32 * MiB)
    store.put(b"read", pattern(12 * MiB, 8))
    _read_once(store, b"read")  # kept, unpinned
    store.put(b"big", pattern(24 * MiB, 9))  # fits only once "read" is spilled
    assert store.usage().spilled_bytes >= 12 * MiB
    assert crc(store.get(b"read")) == crc(pattern(12 * MiB, 8))  # restored on the way back


def test_idle_mappings_are_dropped(factory: StoreFactory) -> None:
    store = factory()
    for i in range(3):
        store.put(b"o%d" % i, pattern(MiB, 10 + i))
        _read_once(store, b"o%d" % i)
    held = store.get(b"o0")  # a mapping with a live view is never dropped
    assert len(store._reads) == 3
    wait_for(lambda: len(store._reads) == 1, timeout=10 * _read_mappings.LINGER_S, what="idle read mappings dropped")
    assert crc(held) == crc(pattern(MiB, 10))
    del held
    wait_for(lambda: len(store._reads) == 0, timeout=10 * _read_mappings.LINGER_S, what="the last read mapping dropped")


def test_at_most_max_kept_mappings(factory: StoreFactory) -> None:
    store = factory()
    n = _read_mappings.MAX_KEPT + 4
    for i in range(n):
        store.put(b"o%d" % i, pattern(64 * 1024, i))
        _read_once(store, b"o%d" % i)
    assert len(store._reads) == _read_mappings.MAX_KEPT
    assert crc(store.get(b"o0")) == crc(pattern(64 * 1024, 0))  # dropped first, mapped again


def test_delete_and_close_forget_kept_mappings(factory: StoreFactory) -> None:
    store = factory()
    store.put(b"a", pattern(MiB, 1))
    store.put(b"b", pattern(MiB, 2))
    _read_once(store, b"a")
    view = store.get(b"b")
    store.delete(b"a")
    assert len(store._reads) == 1
    store.close()
    assert len(store._reads) == 0
    assert crc(view) == crc(pattern(MiB, 2))  # views handed out stay valid


def test_a_forked_child_dropping_an_inherited_view_keeps_the_parents_pin(factory: StoreFactory) -> None:
    store = factory(capacity=64 * MiB)
    data = pattern(8 * MiB, 1)
    store.put(b"viewed", data)
    view = store.get(b"viewed")
    path = _segment(store, b"viewed")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            del view
            gc.collect()
            code = 0 if seg.is_pinned(path) else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert seg.is_pinned(path)
    store.delete(b"viewed")
    for i in range(4):  # would reuse the viewed pages had the child released the pin
        store.put(b"next-%d" % i, pattern(8 * MiB, 10 + i))
        store.delete(b"next-%d" % i)
    assert crc(view) == crc(data)


def test_a_forked_child_keeps_and_drops_its_own_mappings(factory: StoreFactory) -> None:
    store = factory()
    store.put(b"a", pattern(MiB, 1))
    _read_once(store, b"a")  # the parent's reaper thread runs now
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            store.put(b"b", pattern(MiB, 2))
            _read_once(store, b"b")  # the child starts a reaper of its own
            deadline = time.monotonic() + 10 * _read_mappings.LINGER_S
            while len(store._reads) and time.monotonic() < deadline:
                time.sleep(0.05)
            code = 0 if not len(store._reads) else 4
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_file_this_process_may_not_write_is_read_without_keeping(
    factory: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = factory()
    data = pattern(2 * MiB, 3)
    store.put(b"a", data)
    real_open = os.open

    def no_write(path: str, flags: int, *args: Any) -> int:
        if path.startswith("/proc/self/fd/") and flags & os.O_RDWR:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", no_write)
    view = store.get(b"a")
    assert view.readonly and crc(view) == crc(data)
    assert len(store._reads) == 0
    assert seg.is_pinned(_segment(store, b"a"))
    del view
    assert not seg.is_pinned(_segment(store, b"a"))
