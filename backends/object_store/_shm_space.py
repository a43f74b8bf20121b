"""The files of one shm namespace, shared by every process of a node.

``ShmSpace`` owns what every process sees alike: the folders (``objects/``,
``tmp/``, ``free/`` and the spill folder), the namespace lock and its
resident-bytes counter, the recycling pool, and the way room is made for a new
segment (drop pool segments, then spill least recently used objects). It maps
nothing and keeps no per-process state; ``ShmObjectStore`` (shm.py) builds the
per-process side (writes in progress, read mappings, kept writer mappings) on it.
See shm.py's docstring for the protocol. Methods whose docstring says "lock held"
must be called with ``lock.held()``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import uuid
from collections.abc import Callable

import structlog

from microray.backends.object_store import _segments as seg
from microray.exceptions import ObjectStoreFullError

log = structlog.get_logger(__name__)

__all__ = ["ShmSpace"]


class ShmSpace:
    """One namespace's folders, lock, counter, pool and spill folder."""

    def __init__(
        self,
        root: str,
        spill_root: str,
        *,
        namespace: str,
        capacity: int,
        spill_threshold: float,
        recycle: bool,
        on_spilled: Callable[[str, dict], None],
    ) -> None:
        self.namespace = namespace
        self.capacity = capacity
        self.spill_threshold = spill_threshold
        self.recycle = recycle
        self.root = root
        self.spill_root = spill_root
        self.objects = os.path.join(root, "objects")
        self.tmp = os.path.join(root, "tmp")
        self.free = os.path.join(root, "free")
        for folder in (self.objects, self.tmp, self.free, spill_root):
            os.makedirs(folder, exist_ok=True)
        self.lock = seg.NamespaceLock(os.path.join(root, "meta"))
        self._on_spilled = on_spilled  # (hex id, event info), lock held: queue, don't block

    def path(self, hexid: str) -> str:
        return os.path.join(self.objects, hexid)

    def tmp_path(self, hexid: str) -> str:
        return os.path.join(self.tmp, hexid)

    def spill_path(self, hexid: str) -> str:
        return os.path.join(self.spill_root, hexid)

    def discard_segment(self, path: str, size: int) -> None:
        """Move a segment into the pool (lock held). Raises FileNotFoundError."""
        if self.recycle and size > 0:
            os.rename(path, os.path.join(self.free, uuid.uuid4().hex))
        else:
            os.unlink(path)
            self.lock.write_counter(self.lock.read_counter() - size)

    def reserve(self, hexid: str, size: int) -> int:
        """Place a pinned segment of ``size`` bytes at ``tmp/<hexid>`` (lock held); return its fd.

        Reuses the best-fitting pool segment when it can. Once the soft limit
        (``spill_threshold * capacity``) would be passed it makes room, cheapest
        first: drop pool segments, then spill LRU objects nobody maps. Past the
        hard limit (``capacity``) with nothing left to drop it recounts once and
        then raises ``ObjectStoreFullError``.
        """
        tmp = self.tmp_path(hexid)
        if os.path.exists(tmp) and not self._reclaim_if_abandoned(tmp):
            raise FileExistsError(f"object {hexid} is being written by another process")
        if size > self.capacity:
            raise self.full_error(hexid, size, "the object is larger than the store's capacity")
        soft_limit = int(self.capacity * self.spill_threshold)
        resident = self.lock.read_counter()
        pinned_pool: set[str] = set()  # pool segments a late reader still maps
        recounted = False
        spill_error: str | None = None
        while True:
            pool = [e for e in seg.pool_entries(self.free) if e[1] not in pinned_pool]
            candidate = seg.best_fit(pool, size)
            need = size - (candidate[0] if candidate else 0)
            if resident + need > soft_limit:
                if self._evict_one(pool, candidate, pinned_pool):
                    resident = self.lock.read_counter()
                    continue
                spilled, spill_error = self._spill_one(spill_error)
                if spilled:
                    resident = self.lock.read_counter()
                    continue
                if resident + need > self.capacity:
                    if not recounted:
                        resident, recounted = self.recount(), True
                        continue
                    raise self.full_error(hexid, size, spill_error)
            if candidate is not None:
                fd = self._take_segment(candidate, tmp, size)
                if fd is None:
                    pinned_pool.add(candidate[1])
                    continue
            else:
                fd = self._new_segment(hexid, tmp, size)
            self.lock.write_counter(self.lock.read_counter() + need)
            return fd

    def _new_segment(self, hexid: str, tmp: str, size: int) -> int:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            seg.grow_or_shrink(fd, 0, size)
        except OSError as exc:
            os.close(fd)
            os.unlink(tmp)
            raise self.full_error(hexid, size, f"{self.root}: {exc.strerror}") from None
        return fd

    def _evict_one(
        self, pool: list[tuple[int, str]], keep: tuple[int, str] | None, pinned: set[str]
    ) -> bool:
        """Unlink the largest unpinned pool segment other than ``keep`` (lock held)."""
        for entry in reversed(pool):
            if entry is keep:
                continue
            if self.evict_pool_segment(entry):
                return True
            pinned.add(entry[1])
        return False

    def _take_segment(self, entry: tuple[int, str], tmp: str, size: int) -> int | None:
        """Move an unpinned pool segment to ``tmp`` resized to ``size``; None when pinned."""
        try:
            return seg.take_segment(entry[1], entry[0], tmp, size)
        except OSError as exc:  # /dev/shm itself is full
            self.recount()
            raise self.full_error(os.path.basename(tmp), size, f"{self.root}: {exc.strerror}") from None

    def evict_pool_segment(self, entry: tuple[int, str]) -> bool:
        if not seg.evict_segment(entry[1]):
            return False
        self.lock.write_counter(self.lock.read_counter() - entry[0])
        return True

    def _spill_one(self, spill_error: str | None) -> tuple[bool, str | None]:
        """Spill the least recently used unpinned object (lock held)."""
        entries = []
        with os.scandir(self.objects) as it:
            for entry in it:
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue
                if st.st_size:
                    entries.append((st.st_mtime_ns, st.st_size, entry.name))
        entries.sort()
        for _mtime, size, hexid in entries:
            path = self.path(hexid)
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
                self.discard_segment(path, size)
            finally:
                os.close(fd)
            self._on_spilled(hexid, {"object_id": hexid, "size": size, "path": self.spill_path(hexid)})
            return True, spill_error
        return False, spill_error

    def _write_spill_copy(self, fd: int, hexid: str, size: int) -> str | None:
        """Copy a locked segment to the spill folder unless an equal copy is there."""
        target = self.spill_path(hexid)
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
            self.discard_segment(path, size)
        finally:
            os.close(fd)
        log.info("object_store_reclaimed_abandoned_write", path=path, size=size)
        return True

    def recount(self) -> int:
        """Reclaim abandoned writes and recount the resident bytes from the folders (lock held)."""
        for name in seg.sizes(self.tmp):
            self._reclaim_if_abandoned(self.tmp_path(name))
        total = sum(sum(seg.sizes(d).values()) for d in (self.objects, self.tmp, self.free))
        self.lock.write_counter(total)
        return total

    def full_error(self, hexid: str, size: int, reason: str | None) -> ObjectStoreFullError:
        """The error for a create/restore that cannot fit, with every number that matters."""
        objects = seg.sizes(self.objects)
        used = sum(objects.values()) + sum(seg.sizes(self.tmp).values())
        pinned = sum(size for name, size in objects.items() if seg.is_pinned(self.path(name)))
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
