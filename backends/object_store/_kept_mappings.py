"""The shm store's writes in progress, and the writer mappings it keeps afterwards.

Page-table setup (``MAP_POPULATE``) is a third of a large put's time here. A segment
goes back to the pool when its object is freed and is then reused for the next
object of a fitting size, often by the same writer; keeping the writer's mapping
(unpinned: it holds no flock, so spilling and eviction work as before) lets that
writer skip the setup. A kept mapping is dropped when its segment leaves the pool
for good (unlinked), when the segment comes back with another size, and oldest
first past the byte limit or ``MAX_MAPPINGS``. Kept mappings are never read
through: views handed out by ``get`` are separate read-only mappings.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import threading
import time
from dataclasses import dataclass

__all__ = ["KeptMappings", "PendingWrite", "unmap_aside", "UNMAP_ASIDE_BYTES"]

UNMAP_ASIDE_BYTES = 16 * 1024 * 1024  # from this size a writer's mapping is unmapped off its thread
LIMIT_BYTES = 2 * 1024 * 1024 * 1024  # writer mappings kept per process, at most
MAX_MAPPINGS = 32  # ... and at most this many (each holds three fds)
PRUNE_EVERY_S = 1.0  # how often create/delete look for kept mappings of unlinked segments


@dataclass
class PendingWrite:
    """An object created by a store instance and not yet sealed: its pin and mapping."""

    hexid: str
    size: int
    fd: int  # owned by ``mm`` when size > 0 (unless ``warm``: then our own pin)
    mm: mmap.mmap | None
    warm: bool = False  # ``mm`` is a kept mapping from an earlier object in this segment
    keep_fd: int = -1  # with ``warm``: the kept mapping's own (unlocked) descriptor


def unmap_aside(pending: PendingWrite) -> None:
    """Drop the writer's last reference to its mapping on a short-lived thread:
    unmapping 100 MB takes ~6 ms here (without the GIL), which ``put`` then does not
    wait for. Until then the segment stays pinned, as while it was being written."""
    holder = [pending.mm]
    pending.mm = None
    try:
        threading.Thread(target=holder.clear, name="microray-unmap", daemon=True).start()
    except RuntimeError:  # no thread to be had: unmap here
        holder.clear()


class KeptMappings:
    """The writable mappings one store instance keeps, by the inode of their segment.

    One instance serves several threads, so every method takes the table's own lock
    (never the namespace lock: nothing here changes which files exist)."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = min(limit_bytes, LIMIT_BYTES)
        self._kept: dict[int, tuple[mmap.mmap, int]] = {}  # inode -> (mapping, its fd)
        self._lock = threading.Lock()
        self._pruned = 0.0

    def __len__(self) -> int:
        return len(self._kept)

    def entries(self) -> list[tuple[mmap.mmap, int]]:
        """The kept ``(mapping, fd)`` pairs (a copy)."""
        with self._lock:
            return list(self._kept.values())

    def keep(self, pending: PendingWrite) -> bool:
        """After seal: keep the writer's mapping of a large object, unpinned. False (and
        nothing changed) when it is too large to keep."""
        mm = pending.mm
        if mm is None or pending.size > self.limit_bytes:
            return False
        try:
            ino = os.fstat(pending.fd).st_ino
        except OSError:
            return False
        with self._lock:
            self._prune(keep=pending.size)
            fcntl.flock(pending.fd, fcntl.LOCK_UN)  # the mapping shares this open file: no pin
            if pending.warm:
                os.close(pending.fd)  # the pin of this round; the kept fd stays
                keep_fd = pending.keep_fd
            else:
                keep_fd = os.dup(pending.fd)  # same open file, so unlocked too
            old = self._kept.pop(ino, None)
            self._kept[ino] = (mm, keep_fd)
            pending.mm = None
        if old is not None:  # (cannot happen: one segment is reserved once at a time)
            os.close(old[1])
        return True

    def take(self, fd: int, size: int) -> tuple[mmap.mmap | None, int]:
        """A kept mapping (and its fd) of the segment ``fd`` (just reserved, pinned by
        the caller) when it has exactly ``size`` bytes; ``(None, -1)`` otherwise."""
        if not self._kept:
            return None, -1
        try:
            ino = os.fstat(fd).st_ino
        except OSError:
            return None, -1
        with self._lock:
            if time.monotonic() - self._pruned > PRUNE_EVERY_S:
                self._prune(keep=0)
            entry = self._kept.get(ino)
            if entry is None:
                return None, -1
            if len(entry[0]) != size:
                self._drop(ino)
                return None, -1
            del self._kept[ino]
            return entry

    def prune_if_due(self) -> None:
        """Let the pages of segments another process unlinked go (at most once a second)."""
        if self._kept and time.monotonic() - self._pruned > PRUNE_EVERY_S:
            with self._lock:
                self._prune(keep=0)

    def clear(self) -> None:
        """Drop every kept mapping (the store is closing)."""
        with self._lock:
            for ino in list(self._kept):
                self._drop(ino)

    def _prune(self, keep: int) -> None:
        """Drop kept mappings of unlinked segments, then the oldest until ``keep`` more
        bytes fit (lock held)."""
        self._pruned = time.monotonic()
        for ino, (_mm, keep_fd) in list(self._kept.items()):
            try:
                gone = os.fstat(keep_fd).st_nlink == 0
            except OSError:
                gone = True
            if gone:
                self._drop(ino)
        total = sum(len(mm) for mm, _ in self._kept.values())
        for ino in list(self._kept):
            if total + keep <= self.limit_bytes and len(self._kept) < MAX_MAPPINGS:
                break
            entry = self._kept.get(ino)
            if entry is not None:
                total -= len(entry[0])
                self._drop(ino)

    def _drop(self, ino: int) -> None:
        entry = self._kept.pop(ino, None)
        if entry is not None:
            os.close(entry[1])
            unmap_aside(PendingWrite("", len(entry[0]), -1, entry[0]))
