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
    * A process that maps a segment holds ``LOCK_SH`` on its own fd for the
      lifetime of the mapping (the fd is closed by the mapping's finalizer).
      Reusing, shrinking or spilling a segment needs ``LOCK_EX | LOCK_NB``, so a
      segment anyone still maps is never rewritten. ``delete`` only renames the
      file into the pool: readers keep reading valid data.
    * ``create`` places the segment at ``tmp/<hex>`` and holds its pin; ``seal``
      renames it to ``objects/<hex>``. A writer that dies before sealing leaves
      only an unpinned file in ``tmp/``, never visible, reclaimed into the pool
      by the next ``create`` of that id or by the next recount.
    * ``get`` opens ``objects/<hex>``, takes ``LOCK_SH`` and then checks that the
      name still points at the inode it locked (it may have been spilled or
      deleted in between), and maps it read-only.
    * The counter in ``meta`` is the namespace's resident bytes (objects, tmp
      and pool). Every update happens under the lock; it is recounted from the
      directories when a store opens and before ``ObjectStoreFullError`` is
      raised, so a process killed mid-operation cannot leak capacity for good.
    * Above ``spill_threshold * capacity`` ``create`` first drops pool segments,
      then spills the least recently used sealed objects that nobody maps
      (their disk copy is kept after a restore, so spilling them again is
      free). ``get`` restores a spilled object transparently; when the memory
      is full of objects in use it maps the spill copy read-only instead.

``put`` takes the same path as ``create`` but writes with ``pwrite`` and maps
nothing. Fork: an instance used in a forked child reopens its namespace lock
(the inherited fd shares the parent's lock); inherited pins stay until both
processes drop their views.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import shutil
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from microray.backends.object_store import _segments as seg
from microray.backends.object_store._naming import (
    as_bytes_view,
    check_size,
    namespace_dirname,
    object_id_hex,
)
from microray.exceptions import ObjectStoreFullError
from microray.hookspecs import hookimpl
from microray.interfaces.object_store import ObjectStoreUsage
from microray.registrations import ObjectStoreRegistration, OptionSpec

log = structlog.get_logger(__name__)

__all__ = ["ShmObjectStore", "microray_object_stores"]

EventCallback = Callable[[str, dict], None]

_GET_ATTEMPTS = 64  # get() retries when an object moves under it (spilled, restored)


UNMAP_ASIDE_BYTES = 16 * 1024 * 1024
WARM_LIMIT_BYTES = 2 * 1024 * 1024 * 1024  # writer mappings kept per process, at most
WARM_MAX_MAPPINGS = 32  # ... and at most this many (each holds three fds)
WARM_PRUNE_EVERY_S = 1.0  # delete() looks for kept mappings of unlinked segments this often


def _unmap_aside(pending: "_Pending") -> None:
    """Drop the writer's last reference to its mapping on a short-lived thread:
    unmapping 100 MB takes ~6 ms here (without the GIL), which ``put`` then does not
    wait for. Until then the segment stays pinned, as while it was being written."""
    holder = [pending.mm]
    pending.mm = None
    try:
        threading.Thread(target=holder.clear, name="microray-unmap", daemon=True).start()
    except RuntimeError:  # no thread to be had: unmap here
        holder.clear()


@dataclass
class _Pending:
    """An object created by this instance and not yet sealed: its pin and mapping."""

    hexid: str
    size: int
    fd: int  # owned by ``mm`` when size > 0 (unless ``warm``: then our own pin)
    mm: mmap.mmap | None
    warm: bool = False  # ``mm`` is a kept mapping from an earlier object in this segment
    keep_fd: int = -1  # with ``warm``: the kept mapping's own (unlocked) descriptor


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
        self.spill_threshold = float(spill_threshold)
        self.recycle = recycle
        self._on_event = on_event
        name = namespace_dirname(namespace)
        self.root = os.path.join(shm_dir, f"microray-{name}")
        self.spill_root = os.path.join(spill_dir, f"shm-{name}")
        self._objects = os.path.join(self.root, "objects")
        self._tmp = os.path.join(self.root, "tmp")
        self._free = os.path.join(self.root, "free")
        for folder in (self._objects, self._tmp, self._free, self.spill_root):
            os.makedirs(folder, exist_ok=True)
        self._lock = seg.NamespaceLock(os.path.join(self.root, "meta"))
        self._pending: dict[bytes, _Pending] = {}
        # object id -> (weak mapping, mapped file, its inode): one mapping per object per process;
        # the file is ``objects/<hex>``, or the spill copy when it was read in place
        self._maps: dict[bytes, tuple[weakref.ref[mmap.mmap], str, int]] = {}
        self._events: list[tuple[str, dict[str, Any]]] = []
        # inode -> writable mapping this process wrote through and keeps (unpinned) for the
        # next object placed in the same segment once it is recycled: see _warm_keep
        self._warm: dict[int, tuple[mmap.mmap, int]] = {}  # inode -> (mapping, its fd)
        self._warm_lock = threading.Lock()  # one instance serves several threads
        self._warm_pruned = 0.0
        self._warm_limit = min(capacity // 4, WARM_LIMIT_BYTES)
        self._closed = False
        with self._lock.held():
            self._recount()
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
            mm, keep_fd = self._warm_take(fd, size)
            warm = mm is not None
            if mm is None:
                try:
                    mm = seg.map_segment(fd, size, writable=True)  # owns fd from here on
                except BaseException:
                    self.abort_tmp(hexid, size)
                    raise
        self._pending[object_id] = _Pending(hexid, size, fd, mm, warm, keep_fd)
        return memoryview(mm) if mm is not None else memoryview(bytearray())

    def _begin(self, object_id: bytes, size: int) -> tuple[str, int]:
        """Check the id and reserve a pinned segment at ``tmp/<hex>``: (hex, fd)."""
        hexid = object_id_hex(object_id)
        check_size(size)
        self._check_open()
        if object_id in self._pending:
            raise FileExistsError(f"object {hexid} is already being written by this process")
        with self._lock.held():
            if os.path.exists(self._path(hexid)) or os.path.exists(self._spill_path(hexid)):
                raise FileExistsError(f"object {hexid} already exists")
            try:
                return hexid, self._reserve(hexid, size)
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
        elif pending.size >= UNMAP_ASIDE_BYTES and self._warm_keep(pending):
            pass
        else:
            if pending.warm:  # a kept mapping, but no room to keep it again
                os.close(pending.fd)
                os.close(pending.keep_fd)
            else:
                self._maps[object_id] = (weakref.ref(pending.mm), self._path(hexid), os.fstat(pending.fd).st_ino)
            if pending.size >= UNMAP_ASIDE_BYTES:
                _unmap_aside(pending)

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
                self._discard_segment(self._tmp_path(hexid), size)
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
            mm = seg.map_segment(fd, st.st_size, writable=False)
            self._maps[object_id] = (weakref.ref(mm), path, st.st_ino)
            return memoryview(mm)
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
        for folder in (self._objects, self.spill_root):
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
        if self._warm and time.monotonic() - self._warm_pruned > WARM_PRUNE_EVERY_S:
            with self._warm_lock:  # a segment another process evicted: let its pages go
                self._warm_prune(keep=0)
        existed = False
        with self._lock.held():
            path = self._path(hexid)
            try:
                size = os.stat(path).st_size
                self._discard_segment(path, size)
                existed = True
            except FileNotFoundError:
                pass
            try:
                os.unlink(self._spill_path(hexid))
                existed = True
            except FileNotFoundError:
                pass
        self._maps.pop(object_id, None)
        return existed

    def usage(self) -> ObjectStoreUsage:
        """Counted from the directories: sealed + pending bytes in memory, spilled-only bytes."""
        with self._lock.held():
            objects = seg.sizes(self._objects)
            pending = seg.sizes(self._tmp)
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
        with self._warm_lock:
            for ino in list(self._warm):
                self._warm_drop(ino)
        self._lock.close()
        self._closed = True

    def destroy(self) -> None:
        """Remove every object, the pool and the spill folder of the namespace."""
        self.close()
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.spill_root, ignore_errors=True)
        log.debug("object_store_destroyed", backend="shm", namespace=self.namespace)

    # ------------------------------------------------- kept writer mappings
    # Page-table setup (MAP_POPULATE) is a third of a large put's time here. A segment
    # goes back to the pool when its object is freed and is then reused for the next
    # object of a fitting size, often by the same writer; keeping the writer's mapping
    # (unpinned: it holds no flock, so spilling and eviction work as before) lets that
    # writer skip the setup. A kept mapping is dropped when its segment leaves the
    # pool for good (unlinked), when the segment comes back with another size, and
    # oldest first past ``_warm_limit`` bytes.

    def _warm_keep(self, pending: "_Pending") -> bool:
        """After seal: keep the writer's mapping of a large object, unpinned."""
        mm = pending.mm
        if pending.size > self._warm_limit:
            return False
        try:
            ino = os.fstat(pending.fd).st_ino
        except OSError:
            return False
        with self._warm_lock:
            self._warm_prune(keep=pending.size)
            fcntl.flock(pending.fd, fcntl.LOCK_UN)  # the mapping shares this open file: no pin
            if pending.warm:
                os.close(pending.fd)  # the pin of this round; the kept fd stays
                keep_fd = pending.keep_fd
            else:
                keep_fd = os.dup(pending.fd)  # same open file, so unlocked too
            old = self._warm.pop(ino, None)
            self._warm[ino] = (mm, keep_fd)
            pending.mm = None
        if old is not None:  # (cannot happen: one segment is reserved once at a time)
            os.close(old[1])
        return True

    def _warm_take(self, fd: int, size: int) -> tuple[mmap.mmap | None, int]:
        """A kept mapping (and its fd) of the segment ``fd`` (just reserved, pinned by
        us) when it has exactly ``size`` bytes."""
        if not self._warm:
            return None, -1
        try:
            ino = os.fstat(fd).st_ino
        except OSError:
            return None, -1
        with self._warm_lock:
            if time.monotonic() - self._warm_pruned > WARM_PRUNE_EVERY_S:
                self._warm_prune(keep=0)
            entry = self._warm.get(ino)
            if entry is None:
                return None, -1
            if len(entry[0]) != size:
                self._warm_drop(ino)
                return None, -1
            del self._warm[ino]
            return entry

    def _warm_prune(self, keep: int) -> None:
        """Drop kept mappings of unlinked segments, then the oldest until ``keep`` fits
        (``_warm_lock`` held)."""
        self._warm_pruned = time.monotonic()
        for ino, (_mm, keep_fd) in list(self._warm.items()):
            try:
                gone = os.fstat(keep_fd).st_nlink == 0
            except OSError:
                gone = True
            if gone:
                self._warm_drop(ino)
        total = sum(len(mm) for mm, _ in self._warm.values())
        for ino in list(self._warm):
            if total + keep <= self._warm_limit and len(self._warm) < WARM_MAX_MAPPINGS:
                break
            entry = self._warm.get(ino)
            if entry is not None:
                total -= len(entry[0])
                self._warm_drop(ino)

    def _warm_drop(self, ino: int) -> None:
        entry = self._warm.pop(ino, None)
        if entry is not None:
            os.close(entry[1])
            _unmap_aside(_Pending("", len(entry[0]), -1, entry[0]))

    # ------------------------------------------------------------------ internals
    def _path(self, hexid: str) -> str:
        return os.path.join(self._objects, hexid)

    def _tmp_path(self, hexid: str) -> str:
        return os.path.join(self._tmp, hexid)

    def _spill_path(self, hexid: str) -> str:
        return os.path.join(self.spill_root, hexid)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"object store {self.namespace!r} is closed")

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

    def _discard_segment(self, path: str, size: int) -> None:
        """Move a segment into the pool (lock held). Raises FileNotFoundError."""
        if self.recycle and size > 0:
            os.rename(path, os.path.join(self._free, uuid.uuid4().hex))
        else:
            os.unlink(path)
            self._lock.write_counter(self._lock.read_counter() - size)

    def _reserve(self, hexid: str, size: int) -> int:
        """Place a pinned segment of ``size`` bytes at ``tmp/<hexid>`` (lock held); return its fd.

        Reuses the best-fitting pool segment when it can. Once the soft limit
        (``spill_threshold * capacity``) would be passed it makes room, cheapest
        first: drop pool segments, then spill LRU objects nobody maps. Past the
        hard limit (``capacity``) with nothing left to drop it recounts once and
        then raises ``ObjectStoreFullError``.
        """
        tmp = self._tmp_path(hexid)
        if os.path.exists(tmp) and not self._reclaim_if_abandoned(tmp):
            raise FileExistsError(f"object {hexid} is being written by another process")
        if size > self.capacity:
            raise self._full_error(hexid, size, "the object is larger than the store's capacity")
        soft_limit = int(self.capacity * self.spill_threshold)
        resident = self._lock.read_counter()
        pinned_pool: set[str] = set()  # pool segments a late reader still maps
        recounted = False
        spill_error: str | None = None
        while True:
            pool = [e for e in seg.pool_entries(self._free) if e[1] not in pinned_pool]
            candidate = seg.best_fit(pool, size)
            need = size - (candidate[0] if candidate else 0)
            if resident + need > soft_limit:
                if self._evict_one(pool, candidate, pinned_pool):
                    resident = self._lock.read_counter()
                    continue
                spilled, spill_error = self._spill_one(spill_error)
                if spilled:
                    resident = self._lock.read_counter()
                    continue
                if resident + need > self.capacity:
                    if not recounted:
                        resident, recounted = self._recount(), True
                        continue
                    raise self._full_error(hexid, size, spill_error)
            if candidate is not None:
                fd = self._take_segment(candidate, tmp, size)
                if fd is None:
                    pinned_pool.add(candidate[1])
                    continue
            else:
                fd = self._new_segment(hexid, tmp, size)
            self._lock.write_counter(self._lock.read_counter() + need)
            return fd

    def _new_segment(self, hexid: str, tmp: str, size: int) -> int:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            seg.grow_or_shrink(fd, 0, size)
        except OSError as exc:
            os.close(fd)
            os.unlink(tmp)
            raise self._full_error(hexid, size, f"{self.root}: {exc.strerror}") from None
        return fd

    def _evict_one(
        self, pool: list[tuple[int, str]], keep: tuple[int, str] | None, pinned: set[str]
    ) -> bool:
        """Unlink the largest unpinned pool segment other than ``keep`` (lock held)."""
        for entry in reversed(pool):
            if entry is keep:
                continue
            if self._evict_pool_segment(entry):
                return True
            pinned.add(entry[1])
        return False

    def _take_segment(self, entry: tuple[int, str], tmp: str, size: int) -> int | None:
        """Move an unpinned pool segment to ``tmp`` resized to ``size``; None when pinned."""
        try:
            return seg.take_segment(entry[1], entry[0], tmp, size)
        except OSError as exc:  # /dev/shm itself is full
            self._recount()
            raise self._full_error(os.path.basename(tmp), size, f"{self.root}: {exc.strerror}") from None

    def _evict_pool_segment(self, entry: tuple[int, str]) -> bool:
        if not seg.evict_segment(entry[1]):
            return False
        self._lock.write_counter(self._lock.read_counter() - entry[0])
        return True

    def _spill_one(self, spill_error: str | None) -> tuple[bool, str | None]:
        """Spill the least recently used unpinned object (lock held)."""
        entries = []
        with os.scandir(self._objects) as it:
            for entry in it:
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue
                if st.st_size:
                    entries.append((st.st_mtime_ns, st.st_size, entry.name))
        entries.sort()
        for _mtime, size, hexid in entries:
            path = self._path(hexid)
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                if not seg.try_lock_exclusive(fd):
                    continue  # somebody maps it
                error = self._write_spill_copy(fd, hexid, size)
                if error is not None:
                    return False, error
                self._discard_segment(path, size)
            finally:
                os.close(fd)
            self._maps.pop(bytes.fromhex(hexid), None)
            self._emit("spilled", {"object_id": hexid, "size": size, "path": self._spill_path(hexid)})
            return True, spill_error
        return False, spill_error

    def _write_spill_copy(self, fd: int, hexid: str, size: int) -> str | None:
        """Copy a locked segment to the spill folder unless an equal copy is there."""
        target = self._spill_path(hexid)
        try:
            if os.stat(target).st_size == size:
                return None  # restored earlier: the disk copy is still good
        except FileNotFoundError:
            pass
        free = shutil.disk_usage(self.spill_root).free
        if free < size:
            return f"spill folder {self.spill_root} has {free} bytes free, object needs {size}"
        try:
            seg.copy_to_file(fd, target, size)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                log.warning("object_spill_failed", object_id=hexid, size=size, error=str(exc))
                return f"spill folder {self.spill_root} is full ({exc.strerror})"
            raise
        return None

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
                    fd = self._reserve(hexid, size)
                except ObjectStoreFullError as full:
                    return self._map_spill_copy(object_id, source, src, size, full)
                try:
                    seg.copy_file(src, fd, size)
                except OSError as exc:
                    os.close(fd)
                    self.abort_tmp(hexid, size)
                    raise self._full_error(hexid, size, f"restoring failed: {exc.strerror}") from None
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

    def _reclaim_if_abandoned(self, path: str) -> bool:
        """Move an unpinned ``tmp/`` file (its writer died) into the pool (lock held)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return True
        try:
            if not seg.try_lock_exclusive(fd):
                return False
            size = os.fstat(fd).st_size
            self._discard_segment(path, size)
        finally:
            os.close(fd)
        log.info("object_store_reclaimed_abandoned_write", path=path, size=size)
        return True

    def _recount(self) -> int:
        """Reclaim abandoned writes and recount the resident bytes from the folders (lock held)."""
        for name in seg.sizes(self._tmp):
            self._reclaim_if_abandoned(self._tmp_path(name))
        total = sum(sum(seg.sizes(d).values()) for d in (self._objects, self._tmp, self._free))
        self._lock.write_counter(total)
        return total

    def _full_error(self, hexid: str, size: int, reason: str | None) -> ObjectStoreFullError:
        """The error for a create/restore that cannot fit, with every number that matters."""
        objects = seg.sizes(self._objects)
        used = sum(objects.values()) + sum(seg.sizes(self._tmp).values())
        pinned = sum(size for name, size in objects.items() if seg.is_pinned(self._path(name)))
        free = shutil.disk_usage(self.spill_root).free
        message = (
            f"object store {self.namespace!r} (shm) is full: cannot fit object {hexid} of "
            f"{size} bytes; capacity {self.capacity} bytes, {used} bytes used "
            f"({pinned} bytes of them in use by readers, so not spillable); spill folder "
            f"{self.spill_root} has {free} bytes free"
        )
        if reason:
            message += f"; {reason}"
        return ObjectStoreFullError(message)


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
