"""The read-only mappings the shm store keeps between gets of the same object.

Mapping a 100 MB segment and unmapping it again is cheap on its own (~7 us here),
but each ``mmap``/``munmap`` changes the address space of a process whose other
threads are busy (the kernel's mmap lock, TLB shoot-downs to the other CPU), and
a worker that ran ten tasks on one large argument did both ten times: a third of
its time per task. So a process keeps its mapping of an object for ``LINGER_S``
after the last view of it died, and maps it again only after it went unread for
that long (or was deleted or spilled meanwhile).

A kept mapping pins nothing; pins are what they were. Every view ``get`` hands
out holds ``LOCK_SH`` on a descriptor of its own (shared by the views taken while
one is alive) that is closed when the last of those views is gone, so spilling,
recycling and eviction see exactly the readers they saw before. What lets a view
own its pin is the object it exports its bytes from: a ctypes array over the kept
mapping, one per pin, which every view and slice made from it keeps alive (an
``mmap`` cannot be that object without a new mapping each time, and a
``PickleBuffer`` hands its views the ``mmap`` itself). ctypes exports only from
writable buffers, so the mapping is shared read-write; every view handed out is
read-only (a Ray plasma client maps its store read-write too). The mapping
is made from another descriptor of the same file (re-opened through
``/proc/self/fd``): closing the pin's descriptor then releases its lock even while
the mapping lives on.

A kept mapping is read through only after ``get`` pinned the file now at the
object's path and found it is the mapped file; one whose segment was recycled
for another object is never read. One whose segment was unlinked holds that
memory until it is dropped, at most ``2 * LINGER_S`` after its last read, by one
reaper thread per process that sleeps while nothing is kept.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import threading
import time
import weakref
from typing import Any

from microray.backends.object_store import _segments as seg

__all__ = ["LINGER_S", "MAX_KEPT", "ReadMappings"]

LINGER_S = 0.5  # a mapping nobody reads is kept this long (up to twice this)
MAX_KEPT = 16  # mappings kept per store instance, at most (each holds a descriptor)


class _Kept:
    """One object's kept mapping, and the exporter behind the views of its current pin."""

    __slots__ = ("mm", "ino", "size", "used", "pin", "bytes_type")

    def __init__(self, mm: mmap.mmap, ino: int, size: int) -> None:
        self.mm = mm
        self.ino = ino
        self.size = size
        self.used = time.monotonic()
        self.pin: weakref.ref[Any] | None = None
        # the ctypes array type of this size: made per mapping (``c_char * n`` would
        # cache a type per size read for the life of the process)
        self.bytes_type: Any = type("SegmentBytes", (ctypes.Array,), {"_type_": ctypes.c_char, "_length_": size})

    def live_pin(self) -> Any:
        return self.pin() if self.pin is not None else None


class ReadMappings:
    """The read mappings one store instance keeps, by object id.

    Several threads may read through one instance. Every step is a single dict or
    attribute operation, so two threads racing on one object at worst both pin it
    (two descriptors, both closed in time) or map it twice; nothing here locks."""

    def __init__(self) -> None:
        self._kept: dict[bytes, _Kept] = {}
        self._watched_pid = 0  # the process whose reaper watches this instance

    def __len__(self) -> int:
        return len(self._kept)

    def shared_view(self, object_id: bytes, path: str) -> memoryview | None:
        """A view of the object sharing the pin of a view of it alive in this process,
        if there is one and the object is still the file at ``path``; else None."""
        kept = self._kept.get(object_id)
        if kept is None:
            return None
        exporter = kept.live_pin()
        if exporter is None or seg.inode(path) != kept.ino:
            return None
        kept.used = time.monotonic()
        return memoryview(exporter).cast("B").toreadonly()

    def pinned_view(self, object_id: bytes, fd: int, size: int, ino: int) -> memoryview:
        """A read-only view of the file that ``fd`` pins (``LOCK_SH``, file ``ino`` of
        ``size`` > 0 bytes), through the kept mapping of that file when there is one.

        Takes ``fd`` over: it is closed (releasing the pin) once the last view made
        from this pin is gone, or at once if mapping fails."""
        try:
            kept = self._kept.get(object_id)
            if kept is None or kept.ino != ino or kept.size != size:  # (a segment is resized only unpinned)
                mm = _map_shared(fd, size)
                kept = _Kept(mm, ino, size) if mm is not None else None
                if kept is not None:
                    self._keep(object_id, kept)
            exporter = kept.bytes_type.from_buffer(kept.mm) if kept is not None else None
        except BaseException:
            os.close(fd)
            raise
        if exporter is None:  # not writable here: a mapping for this pin alone, which owns fd
            return memoryview(seg.map_segment(fd, size, writable=False))
        weakref.finalize(exporter, os.close, fd)
        kept.pin = weakref.ref(exporter)
        kept.used = time.monotonic()
        _REAPER.watch(self)
        return memoryview(exporter).cast("B").toreadonly()

    def forget(self, object_id: bytes) -> None:
        """Drop the kept mapping of an object (deleted or spilled by this process).
        Views handed out keep theirs."""
        self._kept.pop(object_id, None)

    def clear(self) -> None:
        self._kept.clear()

    def drop_idle(self) -> bool:
        """Drop the mappings no view uses that went unread for ``LINGER_S``. Returns
        whether any mapping is still kept."""
        cutoff = time.monotonic() - LINGER_S
        for object_id, kept in list(self._kept.items()):
            if kept.used < cutoff and kept.live_pin() is None:
                self._kept.pop(object_id, None)
        return bool(self._kept)

    def _keep(self, object_id: bytes, kept: _Kept) -> None:
        self._kept[object_id] = kept
        if len(self._kept) > MAX_KEPT:  # drop the least recently read ones no view uses
            entries = list(self._kept.items())  # one step: the reaper may drop entries meanwhile
            idle = sorted((k.used, oid) for oid, k in entries if k.live_pin() is None)
            for _, oid in idle[: len(self._kept) - MAX_KEPT]:
                self._kept.pop(oid, None)


def _map_shared(fd: int, size: int) -> mmap.mmap | None:
    """Map the file ``fd`` refers to through a descriptor of its own: ``mmap`` keeps a
    duplicate of the descriptor it was given, and a duplicate shares the flock of
    ``fd``, which would then stay held as long as the mapping. None when this process
    may not open the file for writing (a read-only mount, another user's file)."""
    try:
        own = os.open(f"/proc/self/fd/{fd}", os.O_RDWR)
    except OSError:
        return None
    try:
        return mmap.mmap(own, size)
    finally:
        os.close(own)


class _Reaper:
    """One daemon thread per process drops the idle kept mappings of every instance.

    It sleeps on an event while nothing is kept. A forked child starts its own on
    its first pin (the parent's thread does not exist there, and its event may have
    been held at the fork)."""

    def __init__(self) -> None:
        self.pid = 0
        self.wake = threading.Event()
        self.lock = threading.Lock()
        self.watched: list[weakref.ref[ReadMappings]] = []

    def watch(self, mappings: ReadMappings) -> None:
        pid = os.getpid()
        if mappings._watched_pid != pid:
            if self.pid != pid:
                self.pid, self.wake, self.lock, self.watched = pid, threading.Event(), threading.Lock(), []
                threading.Thread(target=self._run, args=(self.wake,), name="microray-unmap-idle", daemon=True).start()
            with self.lock:
                self.watched.append(weakref.ref(mappings))
            mappings._watched_pid = pid
        if not self.wake.is_set():  # (set is a lock and a notify: not on every get)
            self.wake.set()

    def _run(self, wake: threading.Event) -> None:
        while True:
            wake.wait()
            wake.clear()
            kept = True
            while kept:
                time.sleep(LINGER_S)
                with self.lock:
                    self.watched = [ref for ref in self.watched if ref() is not None]
                    watched = [m for m in (ref() for ref in self.watched) if m is not None]
                kept = any([mappings.drop_idle() for mappings in watched])
                del watched


_REAPER = _Reaper()
