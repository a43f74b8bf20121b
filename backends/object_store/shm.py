"""The ``shm`` object store: one shared-memory file per object under /dev/shm.

Layout of a namespace (``<shm_dir>/microray-<namespace>/``)::

    meta        the namespace lock (flock) and the resident-bytes counter
    objects/    sealed objects, one file per object, named by the id in hex
    tmp/        objects being written (or restored), same names
    free/       the recycling pool: segments of deleted or spilled objects

and ``<spill_dir>/shm-<namespace>/<hex>`` for objects spilled to disk.

Why per-object files and not one arena
    An arena needs an allocator and reference counts in shared memory, both of
    which a crashed process leaves inconsistent. With one file per object the
    kernel does the bookkeeping: ``rename`` publishes a sealed object atomically,
    ``unlink``/``rename`` keeps every existing mapping valid, and ``flock`` pins
    die with their process. What an arena buys is speed: writing into fresh
    tmpfs pages runs at ~0.8 GB/s here (page faults plus zeroing). Recycling
    gets most of that back: deleted segments go to ``free/`` and ``create``
    reuses the best-fitting one, mapped with ``MAP_POPULATE``, at ~3.5 GB/s for
    100 MB (an arena mapped once per process would reach memcpy speed, ~6.5 GB/s
    on the same machine). See docs/object-store.md for the measurements.

No ``multiprocessing.shared_memory``
    On Python 3.11 every process that *attaches* a ``SharedMemory`` registers
    it with its ``resource_tracker``, which unlinks the segment when that
    process exits, even though it did not create it (CPython gh-82300; the
    ``track=False`` switch only arrived in 3.13). A worker that merely read an
    object would delete it for the whole node. This module opens the files with
    ``os.open`` and maps them with ``mmap`` directly, so no tracker ever sees
    them; that is the whole workaround. The store removes files itself
    (``delete``, ``destroy``).

Protocol (every step that changes which files exist runs under the namespace lock)
    * A process that reads or writes a segment holds ``LOCK_SH`` on its own fd
      while it uses it: a writer for the lifetime of its mapping, a reader while
      any view ``get`` handed out lives (the fd is closed by a finalizer). A
      reader's mapping itself may be kept unpinned a little longer, for the next
      ``get`` of the object (``_read_mappings.py``).
      Reusing, shrinking or spilling a segment needs ``LOCK_EX | LOCK_NB``, so a
      segment anyone still maps is never rewritten. ``delete`` only renames the
      file into the pool: readers keep reading valid data.
    * ``create`` places the segment at ``tmp/<hex>`` and holds its pin; ``seal``
      renames it to ``objects/<hex>``. A writer that dies before sealing leaves
      only an unpinned file in ``tmp/``, never visible, reclaimed into the pool
      by the next ``create`` of that id or by the next recount.
    * ``get`` opens ``objects/<hex>``, takes ``LOCK_SH`` and then checks that the
      name still points at the inode it locked (it may have been spilled or
      deleted in between), and maps it read-only (or reads through its kept
      mapping of that same inode).
    * The counter in ``meta`` is the namespace's resident bytes (objects, tmp
      and pool). Every update happens under the lock; it is recounted from the
      directories when a store opens and before ``ObjectStoreFullError`` is
      raised, so a process killed mid-operation cannot leak capacity for good.
    * Above ``spill_threshold * capacity`` ``create`` first drops pool segments,
      then spills the least recently used sealed objects that nobody maps
      (their disk copy is kept after a restore, so spilling them again is
      free). ``get`` restores a spilled object transparently; when the memory
      is full of objects in use it maps the spill copy read-only instead.

Where the code lives
    ``_segments.py``: file primitives (locks, pins, mappings, copies).
    ``_shm_space.py``: ``ShmSpace``, the namespace's files as every process sees
    them (folders, lock and counter, pool, reserving room, spilling).
    ``_kept_mappings.py``: writes in progress and the writer mappings kept for
    recycled segments. ``_read_mappings.py``: read mappings kept between gets.
    This module: ``ShmObjectStore``, one process's view (its writes, its read
    mappings, restoring on ``get``) and the registration.

``put`` takes the same path as ``create`` but writes with ``pwrite`` and maps
nothing. Fork: an instance used in a forked child reopens its namespace lock
(the inherited fd shares the parent's lock); inherited pins stay until both
processes drop their views.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import shutil
import weakref
from collections.abc import Callable
from typing import Any

import structlog

from microray.backends.object_store import _segments as seg
from microray.backends.object_store._kept_mappings import (
    UNMAP_ASIDE_BYTES,
    KeptMappings,
    PendingWrite,
    unmap_aside,
)
from microray.backends.object_store._naming import (
    as_bytes_view,
    check_new_write,
    namespace_dirname,
    object_id_hex,
)
from microray.backends.object_store._read_mappings import ReadMappings
from microray.backends.object_store._shm_space import ShmSpace
from microray.exceptions import ObjectStoreFullError
from microray.hookspecs import hookimpl
from microray.interfaces.object_store import ObjectStoreUsage
from microray.registrations import ObjectStoreRegistration, OptionSpec

log = structlog.get_logger(__name__)

__all__ = ["ShmObjectStore", "microray_object_stores"]

EventCallback = Callable[[str, dict], None]

_GET_ATTEMPTS = 64  # get() retries when an object moves under it (spilled, restored)


class ShmObjectStore:
    """An ``ObjectStore`` over per-object files in /dev/shm; see the module docstring."""

    def __init__(
        self,
        namespace: str,
        capacity: int,
        spill_dir: str,
        *,
        spill_threshold: float = 0.8,
        shm_dir: str = "/dev/shm",
        recycle: bool = True,
        on_event: EventCallback | None = None,
    ) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity <= 0:
            raise ValueError(f"capacity must be a positive number of bytes, got {capacity!r}")
        if not 0.0 < float(spill_threshold) <= 1.0:
            raise ValueError(f"spill_threshold must be in (0, 1], got {spill_threshold!r}")
        self.namespace = namespace
        self.capacity = capacity
        self._on_event = on_event
        name = namespace_dirname(namespace)
        self._space = ShmSpace(
            os.path.join(shm_dir, f"microray-{name}"),
            os.path.join(spill_dir, f"shm-{name}"),
            namespace=namespace,
            capacity=capacity,
            spill_threshold=float(spill_threshold),
            recycle=recycle,
            on_spilled=self._spilled,
        )
        self.root = self._space.root
        self.spill_root = self._space.spill_root
        self._lock = self._space.lock
        self._pending: dict[bytes, PendingWrite] = {}
        # object id -> (weak mapping, mapped file, its inode): the mappings this process wrote
        # or restored an object through, or read its spill copy in place with
        self._maps: dict[bytes, tuple[weakref.ref[mmap.mmap], str, int]] = {}
        # read-only mappings of sealed objects, kept a while after their views are gone
        self._reads = ReadMappings()
        self._events: list[tuple[str, dict[str, Any]]] = []
        # writable mappings this process wrote large objects through, kept (unpinned) for
        # the next object placed in the same segment once it is recycled
        self._kept = KeptMappings(capacity // 4)
        self._closed = False
        with self._lock.held():
            self._space.recount()
        free = shutil.disk_usage(shm_dir).free
        if free < capacity:
            log.warning("object_store_capacity_exceeds_shm", capacity=capacity, shm_free=free, path=shm_dir)
        log.debug("object_store_opened", backend="shm", namespace=namespace, root=self.root)

    # ------------------------------------------------------------------ writing
    def create(self, object_id: bytes, size: int) -> memoryview:
        """Reserve ``size`` bytes in shared memory; see ``ObjectStore.create``."""
        hexid, fd = self._begin(object_id, size)
        mm = None
        warm, keep_fd = False, -1
        if size:
            mm, keep_fd = self._kept.take(fd, size)
            warm = mm is not None
            if mm is None:
                try:
                    mm = seg.map_segment(fd, size, writable=True)  # owns fd from here on
                except BaseException:
                    self.abort_tmp(hexid, size)
                    raise
        self._pending[object_id] = PendingWrite(hexid, size, fd, mm, warm, keep_fd)
        return memoryview(mm) if mm is not None else memoryview(bytearray())

    def _begin(self, object_id: bytes, size: int) -> tuple[str, int]:
        """Check the id and reserve a pinned segment at ``tmp/<hex>``: (hex, fd)."""
        self._check_open()
        hexid = check_new_write(object_id, size, self._pending)
        with self._lock.held():
            if os.path.exists(self._path(hexid)) or os.path.exists(self._spill_path(hexid)):
                raise FileExistsError(f"object {hexid} already exists")
            try:
                return hexid, self._space.reserve(hexid, size)
            finally:
                self._flush_events()

    def seal(self, object_id: bytes) -> None:
        """Publish a created object (atomic rename into ``objects/``)."""
        hexid = object_id_hex(object_id)
        pending = self._pending.pop(object_id, None)
        if pending is None:
            raise KeyError(f"object {hexid} was not created (or was already sealed) by this store")
        with self._lock.held():
            os.rename(self._tmp_path(hexid), self._path(hexid))
            os.utime(self._path(hexid))  # LRU clock starts at seal
        if pending.mm is None:
            os.close(pending.fd)
        elif pending.size >= UNMAP_ASIDE_BYTES and self._kept.keep(pending):
            pass
        else:
            if pending.warm:  # a kept mapping, but no room to keep it again
                os.close(pending.fd)
                os.close(pending.keep_fd)
            else:
                self._maps[object_id] = (weakref.ref(pending.mm), self._path(hexid), os.fstat(pending.fd).st_ino)
            if pending.size >= UNMAP_ASIDE_BYTES:
                unmap_aside(pending)

    def abort(self, object_id: bytes) -> None:
        """Drop a created, unsealed object; its segment goes to the pool."""
        hexid = object_id_hex(object_id)
        pending = self._pending.pop(object_id, None)
        if pending is None:
            return
        if pending.mm is None:
            os.close(pending.fd)
        elif pending.warm:
            # the pin lives as long as the mapping (a view may still be held), as it does
            # for a mapping made for this object
            os.close(pending.keep_fd)
            weakref.finalize(pending.mm, os.close, pending.fd)
            pending.mm = None
        self.abort_tmp(hexid, pending.size)

    def abort_tmp(self, hexid: str, size: int) -> None:
        """Move ``tmp/<hexid>`` into the pool (or remove it when recycling is off)."""
        with self._lock.held():
            try:
                self._space.discard_segment(self._tmp_path(hexid), size)
            except FileNotFoundError:
                pass

    def put(self, object_id: bytes, data: bytes | bytearray | memoryview) -> None:
        """Reserve, ``pwrite`` and publish: no mapping is set up at all.

        Writing through the fd copies straight into the page cache; for 100 MB
        that is ~2x faster than mapping (even pre-faulted) and copying, and the
        gap is larger for fresh pages.
        """
        src = as_bytes_view(data)
        hexid, fd = self._begin(object_id, src.nbytes)
        try:
            written = 0
            while written < src.nbytes:
                written += os.pwrite(fd, src[written:], written)
            with self._lock.held():
                os.rename(self._tmp_path(hexid), self._path(hexid))
                os.utime(self._path(hexid))
        except BaseException:
            self.abort_tmp(hexid, src.nbytes)
            raise
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ reading
    def get(self, object_id: bytes) -> memoryview | None:
        """A read-only view of the object's shared memory (restored from disk if spilled).

        When a spilled object cannot be restored because the memory is full of
        objects in use, the view maps its spill copy instead (see ``_restore``)."""
        hexid = object_id_hex(object_id)
        self._check_open()
        path = self._path(hexid)
        cached = self._maps.get(object_id)
        if cached is not None:
            mm = cached[0]()
            if mm is not None and seg.inode(cached[1]) == cached[2]:
                seg.touch(path)
                return memoryview(mm).toreadonly()
        view = self._reads.shared_view(object_id, path)
        if view is not None:
            seg.touch(path)
            return view
        for _ in range(_GET_ATTEMPTS):
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                try:
                    restored = self._restore(object_id, hexid)
                finally:
                    self._flush_events()
                if restored is None:
                    return None
                if restored is True:
                    continue  # another process restored it meanwhile
                return restored
            fcntl.flock(fd, fcntl.LOCK_SH)  # waits out a spiller or recycler
            st = os.fstat(fd)
            if seg.inode(path) != st.st_ino:  # spilled, deleted or replaced meanwhile
                os.close(fd)
                continue
            seg.touch(path)
            if st.st_size == 0:
                os.close(fd)
                return memoryview(b"")
            return self._reads.pinned_view(object_id, fd, st.st_size, st.st_ino)
        raise ObjectStoreFullError(
            f"object {hexid} kept being spilled before it could be mapped; "
            f"the store (capacity {self.capacity} bytes) is thrashing"
        )

    def contains(self, object_id: bytes) -> bool:
        """Whether a sealed object exists, in memory or spilled."""
        hexid = object_id_hex(object_id)
        return os.path.exists(self._path(hexid)) or os.path.exists(self._spill_path(hexid))

    def object_ids(self, prefix: bytes = b"") -> list[bytes]:
        """Ids of the sealed objects (in memory or spilled) starting with ``prefix``."""
        hex_prefix = prefix.hex()
        found: set[str] = set()
        for folder in (self._space.objects, self.spill_root):
            try:
                found.update(n for n in os.listdir(folder) if n.startswith(hex_prefix))
            except FileNotFoundError:
                continue
        out = []
        for name in found:
            try:
                out.append(bytes.fromhex(name))
            except ValueError:
                continue
        return out

    def delete(self, object_id: bytes) -> bool:
        """Remove the object and its spill copy; current readers keep valid data."""
        hexid = object_id_hex(object_id)
        self._check_open()
        self._kept.prune_if_due()  # a segment another process evicted: let its pages go
        existed = False
        with self._lock.held():
            path = self._path(hexid)
            try:
                size = os.stat(path).st_size
                self._space.discard_segment(path, size)
                existed = True
            except FileNotFoundError:
                pass
            try:
                os.unlink(self._spill_path(hexid))
                existed = True
            except FileNotFoundError:
                pass
        self._maps.pop(object_id, None)
        self._reads.forget(object_id)
        return existed

    def usage(self) -> ObjectStoreUsage:
        """Counted from the directories: sealed + pending bytes in memory, spilled-only bytes."""
        with self._lock.held():
            objects = seg.sizes(self._space.objects)
            pending = seg.sizes(self._space.tmp)
            spilled = {
                name: size for name, size in seg.sizes(self.spill_root).items()
                if name not in objects and not name.endswith(".tmp")
            }
        return ObjectStoreUsage(
            used_bytes=sum(objects.values()) + sum(pending.values()),
            capacity_bytes=self.capacity,
            num_objects=len(objects),
            spilled_bytes=sum(spilled.values()),
            num_spilled=len(spilled),
        )

    def close(self) -> None:
        """Forget this instance's mappings; views already handed out stay valid."""
        if self._closed:
            return
        for object_id in list(self._pending):
            self.abort(object_id)
        self._maps.clear()
        self._reads.clear()
        self._kept.clear()
        self._lock.close()
        self._closed = True

    def destroy(self) -> None:
        """Remove every object, the pool and the spill folder of the namespace."""
        self.close()
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.spill_root, ignore_errors=True)
        log.debug("object_store_destroyed", backend="shm", namespace=self.namespace)

    # ------------------------------------------------------------------ internals
    def _path(self, hexid: str) -> str:
        return self._space.path(hexid)

    def _tmp_path(self, hexid: str) -> str:
        return self._space.tmp_path(hexid)

    def _spill_path(self, hexid: str) -> str:
        return self._space.spill_path(hexid)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"object store {self.namespace!r} is closed")

    def _spilled(self, hexid: str, info: dict[str, Any]) -> None:
        """The space spilled an object (namespace lock held): forget our mapping of it."""
        self._maps.pop(bytes.fromhex(hexid), None)
        self._reads.forget(bytes.fromhex(hexid))
        self._emit("spilled", info)

    def _emit(self, kind: str, info: dict[str, Any]) -> None:
        """Queue an event; ``_flush_events`` delivers it once the namespace lock is released."""
        self._events.append((kind, info))

    def _flush_events(self) -> None:
        events, self._events = self._events, []
        for kind, info in events:
            log.info(f"object_{kind}", namespace=self.namespace, **info)
            if self._on_event is not None:
                try:
                    self._on_event(kind, info)
                except Exception as exc:  # noqa: BLE001 -- an observer never breaks the store
                    log.warning("object_store_observer_failed", kind=kind, error=repr(exc))









    def _restore(self, object_id: bytes, hexid: str) -> memoryview | bool | None:
        """Read a spilled object back into memory and map it.

        Returns the read-only view, None when the object is not spilled either,
        True when another process restored it meanwhile (map it normally).
        When there is no room for it (the memory is held by readers) the view
        maps the spill copy instead and the object stays spilled.
        """
        with self._lock.held():
            if os.path.exists(self._path(hexid)):
                return True
            source = self._spill_path(hexid)
            try:
                src = os.open(source, os.O_RDONLY)
            except FileNotFoundError:
                return None
            try:
                size = os.fstat(src).st_size
                try:
                    fd = self._space.reserve(hexid, size)
                except ObjectStoreFullError as full:
                    return self._map_spill_copy(object_id, source, src, size, full)
                try:
                    seg.copy_file(src, fd, size)
                except OSError as exc:
                    os.close(fd)
                    self.abort_tmp(hexid, size)
                    raise self._space.full_error(hexid, size, f"restoring failed: {exc.strerror}") from None
                os.rename(self._tmp_path(hexid), self._path(hexid))
            finally:
                os.close(src)
        self._emit("restored", {"object_id": hexid, "size": size, "path": source})
        if size == 0:
            os.close(fd)
            return memoryview(b"")
        ino = os.fstat(fd).st_ino
        mm = seg.map_segment(fd, size, writable=False)  # keeps the pin taken by _reserve
        self._maps[object_id] = (weakref.ref(mm), self._path(hexid), ino)
        return memoryview(mm)

    def _map_spill_copy(
        self, object_id: bytes, source: str, fd: int, size: int, full: ObjectStoreFullError
    ) -> memoryview:
        """Map a spill file read-only, for a ``get`` that found no room to restore it (lock held).

        The file is never written in place (a spill copy is written aside and
        renamed), and ``delete`` or ``destroy`` only unlink it, so the mapping
        needs no pin: it keeps the inode, and with it the bytes, alive after an
        unlink, as a segment's mapping does. The pages are the spill file's
        page cache, outside ``capacity``, and the object stays spilled.
        """
        if size == 0:
            return memoryview(b"")
        mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ)  # holds its own fd; ours is closed after
        self._maps[object_id] = (weakref.ref(mm), source, os.fstat(fd).st_ino)
        log.info(
            "object_read_from_spill",
            namespace=self.namespace,
            object_id=os.path.basename(source),
            size=size,
            path=source,
            reason=str(full),
        )
        return memoryview(mm)




# ---------------------------------------------------------------------- helpers
def _fraction(value: Any) -> float:
    value = float(value)
    if not 0.0 < value <= 1.0:
        raise ValueError("expected a fraction in (0, 1]")
    return value


def sweep_stale_namespaces(in_use: Callable[[str], bool], shm_dir: str = "/dev/shm", **_options: Any) -> list[str]:
    """Remove the segment folders of namespaces no longer in use (their raylet is gone)."""
    removed = []
    try:
        names = os.listdir(shm_dir)
    except OSError:
        return removed
    for entry in names:
        if not entry.startswith("microray-"):
            continue
        namespace = entry[len("microray-"):]
        try:
            if in_use(namespace):
                continue
        except Exception:  # noqa: BLE001 -- a namespace we cannot judge is left alone
            continue
        shutil.rmtree(os.path.join(shm_dir, entry), ignore_errors=True)
        removed.append(namespace)
    if removed:
        log.info("stale_namespaces_removed", backend="shm", count=len(removed))
    return removed


@hookimpl
def microray_object_stores() -> list[ObjectStoreRegistration]:
    """The ``shm`` backend (default): per-object shared-memory files with disk spilling."""
    return [
        ObjectStoreRegistration(
            name="shm",
            factory=ShmObjectStore,
            sweep=sweep_stale_namespaces,
            description="shared memory under /dev/shm, one file per object; spills LRU objects to disk",
            capabilities=frozenset({"zero_copy", "spill", "cross_process"}),
            options={
                "spill_threshold": OptionSpec(
                    float, "fraction of capacity above which create() spills LRU objects", 0.8, _fraction
                ),
                "shm_dir": OptionSpec(str, "tmpfs folder holding the namespace's segments", "/dev/shm"),
                "recycle": OptionSpec(
                    bool, "reuse the memory of deleted objects (much faster create)", True
                ),
            },
        )
    ]
