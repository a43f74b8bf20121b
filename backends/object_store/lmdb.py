"""The ``lmdb`` object store: one LMDB environment per namespace, disk-backed and persistent.

Where it lives
    Option ``path``; by default ``<spill_dir>/lmdb-<namespace>``, i.e. beside the
    shm backend's spill folder, on disk, inside the session folder the kernel
    hands out. The data is in the page cache while it is hot and on disk when
    memory is needed elsewhere: LMDB *is* the spill mechanism, so nothing is
    ever copied out to a second location. Point ``path`` somewhere stable to
    keep objects across a raylet restart (capability ``persistence``).

Size
    ``map_size`` (``"64GiB"`` or an int) is the cap on the map and therefore on
    what the store can hold; it defaults to 64 GiB of address space. The map
    starts at ``max(capacity, 64 MiB)`` (the node's object store memory) and
    grows with ``set_mapsize`` on ``MapFullError``, doubling, up to the cap; an
    object that still does not fit raises ``ObjectStoreFullError`` with its
    size, the cap and the bytes in use. ``usage().capacity_bytes`` is the cap.

Writing
    ``put`` is one write transaction (one copy into the map). ``create`` hands
    out a buffer from a per-process pool of already-faulted anonymous buffers
    (``scratch_cache`` bytes of them are kept) and ``seal`` copies it in with one
    write transaction: py-lmdb has no ``MDB_RESERVE``, so a created object costs
    one more memcpy than a ``put``. A writer that crashes before ``seal`` has
    written nothing to LMDB. "Being written" is visible to other processes as
    ``pending/<hex>``, a file its writer holds ``flock(LOCK_SH)`` on; one whose
    writer died is reclaimed by the next ``create`` of that id.

Reading
    ``get`` returns a read-only slice of an ``mmap`` of ``data.mdb`` at the
    value's offset, pinned by a read transaction that stays open until the view
    is garbage-collected (see ``_lmdb_env``). Each live view holds one of
    ``max_readers`` reader slots of the environment (shared by every process);
    a process reuses one mapping per object while any view of it is alive.
    Values under 4 KiB are returned as copies (they live in B-tree pages that
    move). As with any LMDB reader, a view kept alive for long keeps the pages
    freed after its snapshot from being reused, so the file grows meanwhile.

Accounting
    The ``meta`` database holds the bytes and the number of objects, updated in
    the same transaction as every put and delete, so they are exact.

Options: ``path``, ``map_size``, ``max_readers`` (1024), ``sync`` (False: a commit
survives a process crash, not a power cut; True adds an fsync per commit),
``scratch_cache`` (256 MiB).
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import shutil
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from microray.backends.object_store._naming import (
    as_bytes_view,
    check_new_write,
    namespace_dirname,
    object_id_hex,
)
from microray.config import parse_size
from microray.exceptions import ObjectStoreFullError
from microray.hookspecs import hookimpl
from microray.interfaces.object_store import ObjectStoreUsage
from microray.registrations import ObjectStoreRegistration, OptionSpec

log = structlog.get_logger(__name__)

__all__ = ["LmdbObjectStore", "microray_object_stores"]

DEFAULT_MAP_SIZE = 64 << 30
MIN_INITIAL_MAP = 64 << 20
# Values below one page live inside B-tree leaf pages, which LMDB copies to a
# new place on every write that touches the page; only the snapshot keeps the
# old place valid. Larger values sit in overflow pages that never move while
# the key exists, so they can be viewed in place. Small ones are copied.
_ZERO_COPY_MIN = mmap.PAGESIZE
_USED = b"used_bytes"
_COUNT = b"num_objects"


class _ScratchPool:
    """Warm anonymous buffers for ``create``: fresh pages cost ~4x a warm memcpy."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._free: list[mmap.mmap] = []
        self._lock = threading.Lock()

    def take(self, size: int) -> mmap.mmap:
        with self._lock:
            fits = [mm for mm in self._free if size <= len(mm) <= 2 * size + mmap.PAGESIZE]
            if fits:
                best = min(fits, key=len)
                self._free.remove(best)
                return best
        return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE)

    def give_back(self, mm: mmap.mmap) -> None:
        with self._lock:
            self._free.append(mm)
            self._free.sort(key=len)
            while self._free and sum(len(m) for m in self._free) > self.limit:
                dropped = self._free.pop(0)  # the smallest first
                try:
                    dropped.close()
                except BufferError:  # its last ctypes export is still being torn down
                    pass


@dataclass
class _Pending:
    marker_fd: int
    size: int
    buffer: Any  # a ctypes array over a scratch mmap; None for size 0


class LmdbObjectStore:
    """An ``ObjectStore`` in an LMDB environment; see the module docstring."""

    def __init__(
        self,
        namespace: str,
        capacity: int,
        spill_dir: str,
        *,
        path: str | None = None,
        map_size: int = DEFAULT_MAP_SIZE,
        max_readers: int = 1024,
        sync: bool = False,
        scratch_cache: int = 256 << 20,
        on_event: Callable[[str, dict], None] | None = None,
    ) -> None:
        from microray.backends.object_store._lmdb_env import open_shared_env

        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity <= 0:
            raise ValueError(f"capacity must be a positive number of bytes, got {capacity!r}")
        self.namespace = namespace
        self.cap = parse_size(map_size)
        self.path = path or os.path.join(spill_dir, f"lmdb-{namespace_dirname(namespace)}")
        self._pending_dir = os.path.join(self.path, "pending")
        os.makedirs(self._pending_dir, exist_ok=True)
        initial = min(self.cap, max(capacity, MIN_INITIAL_MAP))
        self._env = open_shared_env(
            self.path, initial_size=initial, cap=self.cap, max_readers=max_readers, sync=sync
        )
        self._scratch = _ScratchPool(parse_size(scratch_cache))
        self._pending: dict[bytes, _Pending] = {}
        # object id -> (weak mapping, file offset, length, start of the value in the mapping)
        self._maps: dict[bytes, tuple[weakref.ref[mmap.mmap], int, int, int]] = {}
        self._closed = False
        log.debug("object_store_opened", backend="lmdb", namespace=namespace, path=self.path)

    # ------------------------------------------------------------------ writing
    def create(self, object_id: bytes, size: int) -> memoryview:
        """A writable buffer of ``size`` bytes, copied into LMDB by ``seal``."""
        self._check_open()
        hexid = check_new_write(object_id, size, self._pending)
        marker = self._claim(hexid)
        try:
            if self.contains(object_id):
                raise FileExistsError(f"object {hexid} already exists")
            if size > self.cap or self.usage().used_bytes + size > self.cap:
                raise ObjectStoreFullError(self._full_message(hexid, size))
            buffer = None
            if size:
                mm = self._scratch.take(size)
                buffer = (ctypes.c_char * size).from_buffer(mm)
                weakref.finalize(buffer, self._scratch.give_back, mm)
        except BaseException:
            self._unclaim(hexid, marker)
            raise
        self._pending[object_id] = _Pending(marker, size, buffer)
        return memoryview(buffer).cast("B") if buffer is not None else memoryview(bytearray())

    def seal(self, object_id: bytes) -> None:
        """Write the created buffer into LMDB in one transaction.

        ``create`` refuses what cannot fit by the byte count, but LMDB's page
        overhead and pages pinned by old snapshots are only known here, so
        ``seal`` can still raise ``ObjectStoreFullError`` (the object is then
        dropped, as by ``abort``)."""
        hexid = object_id_hex(object_id)
        pending = self._pending.pop(object_id, None)
        if pending is None:
            raise KeyError(f"object {hexid} was not created (or was already sealed) by this store")
        try:
            data = memoryview(pending.buffer).cast("B") if pending.buffer is not None else b""
            self._insert(object_id, hexid, data)
        finally:
            self._unclaim(hexid, pending.marker_fd)

    def abort(self, object_id: bytes) -> None:
        """Drop a created, unsealed object (nothing was written to LMDB)."""
        hexid = object_id_hex(object_id)
        pending = self._pending.pop(object_id, None)
        if pending is not None:
            self._unclaim(hexid, pending.marker_fd)

    def put(self, object_id: bytes, data: bytes | bytearray | memoryview) -> None:
        """Copy ``data`` into LMDB in one write transaction."""
        hexid = object_id_hex(object_id)
        self._check_open()
        src = as_bytes_view(data)
        if object_id in self._pending:
            raise FileExistsError(f"object {hexid} is already being written by this process")
        marker = self._claim(hexid)
        try:
            if src.nbytes > self.cap:
                raise ObjectStoreFullError(self._full_message(hexid, src.nbytes))
            self._insert(object_id, hexid, src)
        finally:
            self._unclaim(hexid, marker)

    def _insert(self, object_id: bytes, hexid: str, data: Any) -> None:
        env = self._env
        size = memoryview(data).nbytes

        def insert(txn: Any) -> None:
            if not txn.put(object_id, data, overwrite=False, db=env.objects):
                raise FileExistsError(f"object {hexid} already exists")
            _add_meta(txn, env.meta, size, 1)

        env.write(insert, size, lambda: self._full_message(hexid, size))

    # ------------------------------------------------------------------ reading
    def get(self, object_id: bytes) -> memoryview | None:
        """A read-only, zero-copy view of the value, valid while referenced."""
        object_id_hex(object_id)
        self._check_open()
        env = self._env
        pinned = env.pin(object_id)
        if pinned is None:
            self._maps.pop(object_id, None)
            return None
        pin, offset, length = pinned
        cached = self._maps.get(object_id)
        if cached is not None:
            mm = cached[0]()
            if mm is not None and cached[1] == offset and cached[2] == length:
                env.unpin(pin)  # the cached mapping has its own pin on the same version
                return memoryview(mm)[cached[3] : cached[3] + length]
        if length < _ZERO_COPY_MIN:
            data = env.copy_pinned(pin, length)
            env.unpin(pin)
            return memoryview(data)
        mm, view = env.map_view(pin, offset, length)
        self._maps[object_id] = (weakref.ref(mm), offset, length, offset % mmap.PAGESIZE)
        return view

    def contains(self, object_id: bytes) -> bool:
        """Whether a sealed object with this id exists."""
        object_id_hex(object_id)
        env = self._env
        return env.read(lambda txn: txn.get(object_id, db=env.objects) is not None)

    def object_ids(self, prefix: bytes = b"") -> list[bytes]:
        """Ids of the sealed objects starting with ``prefix``."""
        env = self._env

        def scan(txn: Any) -> list[bytes]:
            out = []
            cursor = txn.cursor(db=env.objects)
            if not cursor.set_range(prefix):
                return out
            for key in cursor.iternext(keys=True, values=False):
                if not bytes(key).startswith(prefix):
                    break
                out.append(bytes(key))
            return out

        return env.read(scan)

    def delete(self, object_id: bytes) -> bool:
        """Delete the object; views already handed out keep their snapshot."""
        object_id_hex(object_id)
        self._check_open()
        env = self._env

        def remove(txn: Any) -> bool:
            value = txn.get(object_id, db=env.objects)
            if value is None:
                return False
            size = len(value)
            txn.delete(object_id, db=env.objects)
            _add_meta(txn, env.meta, -size, -1)
            return True

        self._maps.pop(object_id, None)
        existed = env.write(remove, 0, lambda: f"object store {self.namespace!r} (lmdb) map is full")
        if existed:
            # LMDB hands pages freed by transaction N out again from N+2 on; without
            # this empty commit the next put would take fresh (slow, growing) pages.
            env.empty_commit()
        return existed

    def usage(self) -> ObjectStoreUsage:
        """Exact bytes and count of sealed objects (kept in the ``meta`` database)."""
        env = self._env
        used, count = env.read(lambda txn: _read_meta(txn, env.meta))
        return ObjectStoreUsage(used_bytes=used, capacity_bytes=self.cap, num_objects=count)

    def close(self) -> None:
        """Release this instance; the environment closes when no instance or view uses it."""
        if self._closed:
            return
        for object_id in list(self._pending):
            self.abort(object_id)
        self._maps.clear()
        self._closed = True
        self._env.release()

    def destroy(self) -> None:
        """Delete the environment's files (live views in this process stay readable)."""
        from microray.backends.object_store._lmdb_env import forget_shared_env

        env = self._env
        self.close()
        forget_shared_env(env)
        shutil.rmtree(self.path, ignore_errors=True)
        log.debug("object_store_destroyed", backend="lmdb", namespace=self.namespace)

    # ------------------------------------------------------------------ internals
    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"object store {self.namespace!r} is closed")

    def _claim(self, hexid: str) -> int:
        """Create and pin ``pending/<hexid>``; FileExistsError while another writer has it."""
        path = os.path.join(self._pending_dir, hexid)
        for _ in range(3):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                if self._reclaim_abandoned(path):
                    continue
                raise FileExistsError(f"object {hexid} is being written by another process") from None
            fcntl.flock(fd, fcntl.LOCK_SH)
            if _same_file(fd, path):
                return fd
            os.close(fd)  # reclaimed by someone between our create and lock
        raise FileExistsError(f"object {hexid} is being written by another process")

    def _unclaim(self, hexid: str, fd: int) -> None:
        try:
            os.unlink(os.path.join(self._pending_dir, hexid))
        except FileNotFoundError:
            pass
        os.close(fd)

    @staticmethod
    def _reclaim_abandoned(path: str) -> bool:
        """Remove a marker whose writer died (nobody holds a lock on it)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return True
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            if _same_file(fd, path):
                os.unlink(path)
                log.info("object_store_reclaimed_abandoned_write", path=path)
            return True
        finally:
            os.close(fd)

    def _full_message(self, hexid: str, size: int) -> str:
        env = self._env
        try:
            used, _count = env.read(lambda txn: _read_meta(txn, env.meta))
        except Exception:  # noqa: BLE001 -- the message must not fail
            used = -1
        return (
            f"object store {self.namespace!r} (lmdb at {self.path}) is full: cannot fit object "
            f"{hexid} of {size} bytes; map cap (map_size) {self.cap} bytes, {used} bytes used "
            f"by sealed objects, current map {env.map_size} bytes"
        )


def _same_file(fd: int, path: str) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def _read_meta(txn: Any, db: Any) -> tuple[int, int]:
    used = txn.get(_USED, db=db)
    count = txn.get(_COUNT, db=db)
    return (
        int.from_bytes(bytes(used), "little") if used is not None else 0,
        int.from_bytes(bytes(count), "little") if count is not None else 0,
    )


def _add_meta(txn: Any, db: Any, size: int, count: int) -> None:
    used, num = _read_meta(txn, db)
    txn.put(_USED, max(0, used + size).to_bytes(8, "little"), db=db)
    txn.put(_COUNT, max(0, num + count).to_bytes(8, "little"), db=db)


@hookimpl
def microray_object_stores() -> list[ObjectStoreRegistration]:
    """The ``lmdb`` backend: a disk-backed, persistent LMDB environment per namespace."""
    return [
        ObjectStoreRegistration(
            name="lmdb",
            factory=LmdbObjectStore,
            description="LMDB environment per namespace: disk-backed, persistent, zero-copy reads",
            capabilities=frozenset({"zero_copy", "persistence", "cross_process"}),
            options={
                "path": OptionSpec(
                    (str, type(None)), "environment folder (default <spill_dir>/lmdb-<namespace>)", None
                ),
                "map_size": OptionSpec(int, "cap on the LMDB map, e.g. '64GiB'", DEFAULT_MAP_SIZE, parse_size),
                "max_readers": OptionSpec(int, "LMDB reader slots (one per live view)", 1024),
                "sync": OptionSpec(bool, "fsync every commit (survive power loss)", False),
                "scratch_cache": OptionSpec(
                    int, "bytes of warm create() buffers kept per process", 256 << 20, parse_size
                ),
            },
        )
    ]
