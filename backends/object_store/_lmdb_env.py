"""One LMDB environment per data file per process, shared by the lmdb store instances.

py-lmdb refuses to open one environment twice in a process (LMDB's POSIX locks
belong to the process), so every ``LmdbObjectStore`` of a namespace in this
process goes through one ``SharedEnv``.

Zero-copy views and map growth
    A value returned by ``txn.get(buffers=True)`` points into LMDB's own mapping,
    which ``set_mapsize`` unmaps: a view over it would crash once the map grows.
    So a view here is a slice of a *separate* read-only ``mmap`` of ``data.mdb``
    at the value's file offset; growing the map never invalidates it. What keeps
    the value's pages from being reused is the read transaction (MVCC snapshot)
    pinned for as long as that mmap lives. ``set_mapsize`` aborts every
    transaction of the process, so after growing we immediately re-pin each live
    view with a fresh snapshot. An object that was deleted while viewed *and*
    whose pages a writer reuses in that instant could change under its reader;
    the re-pin logs ``object_view_unpinned`` when it sees that case.

``writemap`` and the resize lock
    ``writemap=True`` makes a 100 MB put ~5x faster (LMDB writes into the map
    instead of malloc'ing fresh dirty pages and ``pwrite``-ing them). With it,
    LMDB ``ftruncate``s ``data.mdb`` to the process's map size when it opens or
    grows the map, which would *shrink* the file under a process with a larger
    map (SIGBUS). Every open and resize therefore runs under ``flock`` on
    ``resize.lock`` and never asks for less than the current file size.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import structlog

from microray.exceptions import ObjectStoreFullError

log = structlog.get_logger(__name__)

PAGE = mmap.PAGESIZE

_ENVS: dict[str, "SharedEnv"] = {}
_ENVS_LOCK = threading.Lock()


def open_shared_env(path: str, **kwargs: Any) -> "SharedEnv":
    """The process's ``SharedEnv`` for ``path`` (created on first use), with one more user."""
    key = os.path.realpath(path)
    with _ENVS_LOCK:
        shared = _ENVS.get(key)
        if shared is None or shared.closed:
            shared = SharedEnv(key, **kwargs)
            _ENVS[key] = shared
        shared.users += 1
        return shared


def forget_shared_env(shared: "SharedEnv") -> None:
    """Drop ``shared`` from the registry (its files are being removed)."""
    with _ENVS_LOCK:
        if _ENVS.get(shared.path) is shared:
            del _ENVS[shared.path]


class _RWLock:
    """Many holders of ``shared()`` or one of ``exclusive()`` (threads of one process)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting_writers += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class _Pin:
    """A read transaction kept open while a view of ``key`` at ``offset`` is alive."""

    __slots__ = ("txn", "key", "offset", "__weakref__")

    def __init__(self, txn: Any, key: bytes, offset: int) -> None:
        self.txn = txn
        self.key = key
        self.offset = offset


class SharedEnv:
    """An ``lmdb.Environment`` plus what every store instance of this process shares."""

    def __init__(
        self, path: str, *, initial_size: int, cap: int, max_readers: int, sync: bool
    ) -> None:
        import lmdb  # heavy optional dependency: imported only when an lmdb store opens

        self.lmdb = lmdb
        self.pid = os.getpid()
        self.path = path
        self.cap = cap
        self.users = 0
        self.closed = False
        os.makedirs(path, exist_ok=True)
        self._resize_fd = os.open(os.path.join(path, "resize.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        self._rw = _RWLock()
        self._pins: dict[int, _Pin] = {}
        self._pins_lock = threading.RLock()
        with self._resize_locked():
            size = max(_round_up(initial_size), self._file_size())
            self.env = lmdb.open(
                path,
                map_size=size,
                subdir=True,
                max_dbs=2,
                max_readers=max_readers,
                writemap=True,
                sync=sync,
                metasync=sync,
                readahead=False,
                meminit=False,
                lock=True,
            )
        self.env.reader_check()  # slots left by crashed processes
        self.objects = self.env.open_db(b"objects")
        self.meta = self.env.open_db(b"meta")
        self.data_fd = os.open(os.path.join(path, "data.mdb"), os.O_RDONLY)
        self._refresh()

    # -- transactions ----------------------------------------------------
    def check_process(self) -> None:
        """LMDB environments must not be used across fork."""
        if os.getpid() != self.pid:
            raise RuntimeError(
                f"the lmdb object store at {self.path} was opened before this process was "
                "forked; LMDB cannot be used across fork: open the store after forking"
            )

    def read(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(txn)`` in a short read transaction (buffers=True: no value copies)."""
        self.check_process()
        while True:
            try:
                with self._rw.shared():
                    with self.env.begin(buffers=True) as txn:
                        return fn(txn)
            except self.lmdb.MapResizedError:
                self._adopt()
            except self.lmdb.ReadersFullError:
                if not self.env.reader_check():
                    raise

    def write(self, fn: Callable[[Any], Any], need: int, describe: Callable[[], str]) -> Any:
        """Run ``fn(txn)`` in a write transaction, growing the map up to the cap when full.

        At the cap, one empty commit is made before giving up: LMDB reuses the
        pages a transaction freed only from the transaction after next, so a
        delete followed at once by a put would otherwise find no room.
        """
        self.check_process()
        flushed = False
        while True:
            try:
                with self._rw.shared():
                    with self.env.begin(write=True, buffers=True) as txn:
                        return fn(txn)
            except self.lmdb.MapFullError:
                if self._grow(need):
                    continue
                if flushed:
                    raise ObjectStoreFullError(describe()) from None
                self.empty_commit()
                flushed = True
            except self.lmdb.MapResizedError:
                self._adopt()

    def empty_commit(self) -> None:
        """Commit a transaction that changes nothing of substance (advances the txn id)."""
        with self._rw.shared():
            with self.env.begin(write=True, db=self.meta) as txn:
                txn.put(b"generation", os.urandom(8), db=self.meta)

    def pin(self, key: bytes) -> tuple[_Pin, int, int] | None:
        """Open a read transaction holding ``key``: (pin, file offset, length) or None."""
        self.check_process()
        while True:
            try:
                with self._rw.shared():
                    txn = self.env.begin(buffers=True)
                    try:
                        value = txn.get(key, db=self.objects)
                        if value is None:
                            txn.abort()
                            return None
                        offset = buffer_address(value) - self.map_addr
                        length = len(value)
                    except BaseException:
                        txn.abort()
                        raise
                    pin = _Pin(txn, key, offset)
                    with self._pins_lock:
                        self._pins[id(pin)] = pin
                    return pin, offset, length
            except self.lmdb.MapResizedError:
                self._adopt()
            except self.lmdb.ReadersFullError:
                if not self.env.reader_check():
                    raise

    def unpin(self, pin: _Pin) -> None:
        """End a pin's transaction (called by the view's finalizer, from any thread)."""
        if os.getpid() != self.pid:
            return  # a forked child: aborting would free the *parent's* reader slot
        with self._pins_lock:
            self._pins.pop(id(pin), None)
            txn, pin.txn = pin.txn, None
            if txn is not None:
                try:
                    txn.abort()
                except Exception:  # noqa: BLE001 -- invalidated by a close or resize
                    pass
        self._maybe_close(wait=False)

    def copy_pinned(self, pin: _Pin, length: int) -> bytes:
        """The value's bytes, read through LMDB while the pin's snapshot is open."""
        with self._rw.shared():
            value = pin.txn.get(pin.key, db=self.objects)
            return bytes(value) if value is not None else b""

    def map_view(self, pin: _Pin, offset: int, length: int) -> tuple[mmap.mmap, memoryview]:
        """A read-only mapping of ``data.mdb`` covering the value; it ends the pin when collected."""
        start = offset - offset % PAGE
        mm = mmap.mmap(self.data_fd, length + offset - start, offset=start, access=mmap.ACCESS_READ)
        weakref.finalize(mm, self.unpin, pin)
        return mm, memoryview(mm)[offset - start : offset - start + length]

    @property
    def live_pins(self) -> int:
        return len(self._pins)

    # -- map size ----------------------------------------------------------
    @property
    def map_size(self) -> int:
        return self._map_size

    def _grow(self, need: int) -> bool:
        """Grow the map towards the cap; False when it is already there."""
        with self._rw.exclusive(), self._resize_locked():
            current = max(self.env.info()["map_size"], self._file_size())
            if current >= self.cap:
                return False
            target = min(self.cap, _round_up(max(2 * current, current + 2 * need)))
            self._set_mapsize(target)
        log.info("lmdb_map_grown", path=self.path, map_size=target, cap=self.cap)
        return True

    def _adopt(self) -> None:
        """Another process grew the map: map at least the current file size."""
        with self._rw.exclusive(), self._resize_locked():
            self._set_mapsize(max(self._file_size(), self.env.info()["map_size"]))

    def _set_mapsize(self, size: int) -> None:
        """Resize (rw exclusive and resize lock held) and re-pin every live view."""
        with self._pins_lock:
            self.env.set_mapsize(size)  # aborts every transaction of this process
            self._refresh()
            for pin in list(self._pins.values()):
                txn = self.env.begin(buffers=True)
                value = txn.get(pin.key, db=self.objects)
                if value is None or buffer_address(value) - self.map_addr != pin.offset:
                    # deleted while viewed: its pages may be reused from now on
                    log.warning("object_view_unpinned", object_id=pin.key.hex(), path=self.path)
                pin.txn = txn

    def _refresh(self) -> None:
        self._map_size = self.env.info()["map_size"]
        self.map_addr = _map_base(os.path.join(self.path, "data.mdb"))

    def _file_size(self) -> int:
        try:
            return os.stat(os.path.join(self.path, "data.mdb")).st_size
        except FileNotFoundError:
            return 0

    @contextmanager
    def _resize_locked(self) -> Iterator[None]:
        fcntl.flock(self._resize_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._resize_fd, fcntl.LOCK_UN)

    # -- lifetime ------------------------------------------------------------
    def release(self) -> None:
        """One store instance is done with the environment."""
        with _ENVS_LOCK:
            self.users -= 1
        self._maybe_close()

    def _maybe_close(self, wait: bool = True) -> None:
        """Close once no store instance and no view uses the environment.

        Takes only the registry lock (never ``_pins_lock``), so a finalizer that
        runs while a resize holds ``_pins_lock`` cannot deadlock against it. A
        finalizer (``wait=False``) may also run in a thread that holds the registry
        lock itself (the garbage collector ran inside ``open_shared_env``): waiting
        for it there would never end, so when the lock is taken the check is left to
        a thread of its own, which takes the lock once its holder lets go.
        """
        if os.getpid() != self.pid:
            return  # never close (and abort the parent's transactions) in a forked child
        if not _ENVS_LOCK.acquire(blocking=wait):
            threading.Thread(target=self._maybe_close, name="microray-lmdb-close", daemon=True).start()
            return
        try:
            if self.closed or self.users > 0 or self._pins:
                return
            self.closed = True
            if _ENVS.get(self.path) is self:
                del _ENVS[self.path]
        finally:
            _ENVS_LOCK.release()
        with self._rw.exclusive():
            self.env.close()
            os.close(self.data_fd)
            os.close(self._resize_fd)


def _map_base(data_file: str) -> int:
    """Where LMDB mapped ``data_file`` in this process (``env.info()['map_addr']`` is 0
    unless MDB_FIXEDMAP is used): the writable shared mapping at file offset 0."""
    target = os.path.realpath(data_file)
    st = os.stat(target)
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split(maxsplit=5)
            if len(parts) < 6 or not parts[1].startswith("rw") or int(parts[2], 16) != 0:
                continue
            if parts[5].strip() != target:
                continue
            major, minor = (int(x, 16) for x in parts[3].split(":"))
            if int(parts[4]) == st.st_ino and os.makedev(major, minor) == st.st_dev:
                return int(parts[0].split("-")[0], 16)
    raise RuntimeError(f"LMDB's mapping of {target} not found in /proc/self/maps")


def _round_up(size: int) -> int:
    step = 1 << 20
    return max(step, (size + step - 1) // step * step)


class _PyBuffer(ctypes.Structure):
    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.c_void_p),
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.c_void_p),
        ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p),
        ("internal", ctypes.c_void_p),
    ]


_get_buffer = ctypes.pythonapi.PyObject_GetBuffer
_get_buffer.argtypes = [ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int]
_get_buffer.restype = ctypes.c_int
_release_buffer = ctypes.pythonapi.PyBuffer_Release
_release_buffer.argtypes = [ctypes.POINTER(_PyBuffer)]
_release_buffer.restype = None


def buffer_address(obj: Any) -> int:
    """The address of the first byte of a buffer-protocol object."""
    view = _PyBuffer()
    if _get_buffer(obj, ctypes.byref(view), 0) != 0:
        raise TypeError(f"{type(obj).__name__} does not expose a buffer")
    try:
        return view.buf or 0
    finally:
        _release_buffer(ctypes.byref(view))
