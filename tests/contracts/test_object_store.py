"""Run ``ObjectStoreContract`` over the shipped object stores, plus backend-specific checks.

The backends are obtained the way the runtime obtains them: by name, through
the process-wide plugin manager (the entry points declared in pyproject.toml).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from microray.exceptions import ConfigError, ObjectStoreFullError
from microray.plugin_manager import get_plugin_manager
from microray.registrations import ObjectStoreRegistration
from microray.testing.contracts import ObjectStoreContract
from microray.testing.contracts.object_store import (
    MiB,
    StoreFactory,
    crc,
    pattern,
    run_child,
    start_child,
)


def _registration(name: str) -> ObjectStoreRegistration:
    registration = get_plugin_manager().select("object_store", name)
    assert isinstance(registration, ObjectStoreRegistration)
    return registration


class TestShmContract(ObjectStoreContract):
    @pytest.fixture
    def registration(self) -> ObjectStoreRegistration:
        return _registration("shm")


class TestLmdbContract(ObjectStoreContract):
    @pytest.fixture
    def registration(self) -> ObjectStoreRegistration:
        return _registration("lmdb")

    @pytest.fixture
    def capacity_options(self) -> Callable[[int], dict[str, Any]]:
        return lambda capacity: {"map_size": capacity}


# --------------------------------------------------------------------------- shm only
class TestShmBackend:
    @pytest.fixture
    def factory(self, tmp_path: Any) -> Any:
        f = StoreFactory(_registration("shm"), str(tmp_path), lambda capacity: {})
        yield f
        f.cleanup()

    def test_segment_attached_by_another_process_survives_its_exit(self, factory: StoreFactory) -> None:
        """The resource_tracker workaround: a reader's exit must not unlink the segment.

        On Python 3.11 a process that attaches ``multiprocessing.shared_memory``
        unlinks the segment at exit through its resource tracker; the shm
        backend does not go through it.
        """
        store = factory()
        data = pattern(8 * MiB, 1)
        store.put(b"seg", data)
        segment = os.path.join(store.root, "objects", b"seg".hex())
        done = run_child(factory.spec(), "read", object_id=b"seg".hex(), crc=crc(data))
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert report["mapping"] == segment  # the child really mapped the shared segment
        assert os.path.exists(segment)
        assert crc(store.get(b"seg")) == crc(data)

    def test_shared_memory_attach_would_unlink_it(self, tmp_path: Any) -> None:
        """Why the workaround matters: documents the 3.11 behaviour we avoid."""
        if sys.version_info >= (3, 13):
            pytest.skip("3.13+ can attach with track=False")
        from multiprocessing import shared_memory

        owner = shared_memory.SharedMemory(create=True, size=4096)
        try:
            code = (
                "from multiprocessing import shared_memory as s;"
                f"m = s.SharedMemory(name={owner.name!r}); m.close()"
            )
            subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=60)
            assert not os.path.exists(f"/dev/shm/{owner.name}")
        finally:
            owner.close()
            try:
                owner.unlink()
            except FileNotFoundError:
                pass
            from multiprocessing import resource_tracker

            resource_tracker._resource_tracker._stop()  # it would outlive the test otherwise

    def test_deleted_segments_are_recycled(self, factory: StoreFactory) -> None:
        store = factory()
        store.put(b"a", pattern(4 * MiB, 1))
        inode = os.stat(os.path.join(store.root, "objects", b"a".hex())).st_ino
        store.delete(b"a")
        store.put(b"b", pattern(4 * MiB, 2))
        assert os.stat(os.path.join(store.root, "objects", b"b".hex())).st_ino == inode

    def test_segment_mapped_by_a_reader_is_not_recycled(self, factory: StoreFactory) -> None:
        store = factory()
        data = pattern(4 * MiB, 1)
        store.put(b"a", data)
        view = store.get(b"a")
        inode = os.stat(os.path.join(store.root, "objects", b"a".hex())).st_ino
        store.delete(b"a")
        store.put(b"b", pattern(4 * MiB, 2))
        assert os.stat(os.path.join(store.root, "objects", b"b".hex())).st_ino != inode
        assert crc(view) == crc(data)
        del view
        store.delete(b"b")
        store.put(b"c", pattern(4 * MiB, 3))  # now both segments are free again
        assert crc(store.get(b"c")) == crc(pattern(4 * MiB, 3))

    def test_spill_folder_full_gives_a_clear_error(
        self, factory: StoreFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from microray.backends.object_store import _segments

        store = factory(capacity=8 * MiB)
        store.put(b"a", pattern(4 * MiB, 1))
        store.put(b"b", pattern(2 * MiB, 2))

        def disk_full(src_fd: int, dst_fd: int, size: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(_segments, "copy_file", disk_full)
        with pytest.raises(ObjectStoreFullError, match=r"spill folder .* is full") as info:
            store.put(b"c", pattern(4 * MiB, 3))
        assert str(4 * MiB) in str(info.value) and str(8 * MiB) in str(info.value)
        monkeypatch.undo()
        assert not [n for _r, _d, names in os.walk(factory.spill_dir) for n in names if ".tmp" in n]
        assert crc(store.get(b"a")) == crc(pattern(4 * MiB, 1))
        store.put(b"c", pattern(4 * MiB, 3))  # spilling works again

    def test_accounting_recovers_from_a_dead_writer(self, factory: StoreFactory) -> None:
        store = factory(capacity=8 * MiB)
        done = run_child(factory.spec(capacity=8 * MiB), "crash_writer", object_id=b"torn".hex(), size=6 * MiB)
        assert done.returncode == 1
        # the dead writer's 6 MiB are reclaimed instead of blocking the store
        store.put(b"fits", pattern(6 * MiB, 4))
        assert crc(store.get(b"fits")) == crc(pattern(6 * MiB, 4))

    def test_forked_child_gets_its_own_namespace_lock(self, factory: StoreFactory) -> None:
        store = factory()
        store.put(b"parent", pattern(MiB, 1))
        view = store.get(b"parent")
        pid = os.fork()
        if pid == 0:  # child: use the inherited instance
            code = 1
            try:
                parent_fd = store._lock._fd
                store.put(b"child", pattern(MiB, 2))
                if store._lock._fd == parent_fd or store._lock._pid != os.getpid():
                    code = 3  # still flock()ing the parent's open file description
                else:
                    code = 0 if crc(store.get(b"parent")) == crc(pattern(MiB, 1)) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert crc(store.get(b"child")) == crc(pattern(MiB, 2))
        assert crc(view) == crc(pattern(MiB, 1))

    def test_bad_options_rejected(self) -> None:
        registration = _registration("shm")
        with pytest.raises(ConfigError, match="spill_threshold"):
            registration.validate_options("object_store", {"spill_threshold": 1.5})
        assert registration.validate_options("object_store", {})["spill_threshold"] == 0.8


# --------------------------------------------------------------------------- lmdb only
class TestLmdbBackend:
    @pytest.fixture
    def factory(self, tmp_path: Any) -> Any:
        f = StoreFactory(_registration("lmdb"), str(tmp_path), lambda capacity: {})
        yield f
        f.cleanup()

    def test_map_grows_up_to_the_cap(self, factory: StoreFactory) -> None:
        store = factory(capacity=64 * MiB, map_size="256MiB")
        view = store.get(b"none")
        assert view is None
        held = None
        for i in range(6):  # 6 x 20 MiB > the initial 64 MiB map
            store.put(b"obj-%d" % i, pattern(20 * MiB, i))
            if i == 1:
                held = store.get(b"obj-1")  # a live view across the growth
        assert crc(held) == crc(pattern(20 * MiB, 1))
        for i in range(6):
            assert crc(store.get(b"obj-%d" % i)) == crc(pattern(20 * MiB, i))
        with pytest.raises(ObjectStoreFullError) as info:
            for i in range(6, 20):
                store.put(b"obj-%d" % i, pattern(20 * MiB, i))
        assert str(256 * MiB) in str(info.value) and str(20 * MiB) in str(info.value)

    def test_map_grows_while_several_processes_write(self, factory: StoreFactory) -> None:
        """Growth by one process is adopted by the others (MapResizedError), views survive."""
        store = factory(capacity=64 * MiB, map_size="1GiB")
        store.put(b"early", pattern(8 * MiB, 7))
        held = store.get(b"early")
        spec = factory.spec(capacity=64 * MiB, map_size="1GiB")
        children = [
            start_child(spec, "put_many", object_id=(b"w%d" % w).hex(), count=8, size=8 * MiB, seed=10 * w)
            for w in range(3)
        ]
        for child in children:
            out, err = child.communicate(timeout=120)
            assert child.returncode == 0, (out, err)
        assert store._env.map_size < 192 * MiB  # this process has not adopted yet
        for w in range(3):
            for i in range(8):
                assert crc(store.get(b"w%d-%d" % (w, i))) == crc(pattern(8 * MiB, 10 * w + i))
        assert store._env.map_size >= 192 * MiB  # adopted the grown map on MapResizedError
        store.put(b"late", pattern(8 * MiB, 8))  # writes beyond the old map
        assert crc(held) == crc(pattern(8 * MiB, 7))
        assert store.usage().num_objects == 26

    def test_explicit_path_persists(self, factory: StoreFactory, tmp_path: Any) -> None:
        path = str(tmp_path / "env")
        store = factory(path=path)
        store.put(b"kept", pattern(MiB, 5))
        store.close()
        again = factory(path=path, namespace="another-namespace-same-path")
        assert crc(again.get(b"kept")) == crc(pattern(MiB, 5))
        again.destroy()
        assert not os.path.exists(path)

    def test_forked_child_cannot_use_it_nor_release_parent_pins(self, factory: StoreFactory) -> None:
        import gc

        store = factory(capacity=64 * MiB)
        data = pattern(8 * MiB, 1)
        store.put(b"viewed", data)
        view = store.get(b"viewed")
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                try:
                    store.get(b"viewed")
                except RuntimeError:
                    code = 0
                del view  # the child's finalizer must not abort the parent's read txn
                gc.collect()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        store.delete(b"viewed")
        for i in range(4):  # would reuse the viewed pages if its pin had been released
            store.put(b"next-%d" % i, pattern(8 * MiB, 10 + i))
            store.delete(b"next-%d" % i)
        assert crc(view) == crc(data)

    def test_module_import_does_not_import_lmdb(self) -> None:
        code = (
            "import sys, microray.backends.object_store.lmdb as m, microray.backends.object_store.shm;"
            "m.microray_object_stores(); print('lmdb' in sys.modules)"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert done.stdout.strip() == "False", done.stderr
