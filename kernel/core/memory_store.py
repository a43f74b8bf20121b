"""The in-process store: values of small objects this process owns or has fetched,
and markers for objects that live in the node's object store.

Written by the core worker's event-loop thread (task results) and by user
threads (``put``); read by ``get``/``wait`` in user threads, which block on a
``threading.Event`` per request rather than polling.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

# entry kinds
VALUE = 0      # payload: the Python value itself (immutable simple values)
SERIALIZED = 1  # payload: bytes in microray's serialized form
IN_STORE = 2   # payload: node id whose object store holds the object
ERROR = 3      # payload: the exception get() raises


class _Request:
    __slots__ = ("missing", "needed", "event")

    def __init__(self, missing: set[bytes], needed: int) -> None:
        self.missing = missing
        self.needed = needed
        self.event = threading.Event()


class MemoryStore:
    def __init__(self) -> None:
        self.entries: dict[bytes, tuple[int, Any]] = {}
        self._lock = threading.Lock()
        self._requests: list[_Request] = []
        self._callbacks: dict[bytes, list] = {}

    def put(self, object_id: bytes, kind: int, payload: Any) -> None:
        self.entries[object_id] = (kind, payload)
        if self._requests:
            self._wake((object_id,))
        if self._callbacks:
            self._run_callbacks((object_id,))

    def on_ready(self, object_id: bytes, callback) -> bool:
        """Call ``callback(object_id)`` once the object is present (from the thread that
        puts it). Returns True, without calling, when it is present already."""
        if object_id in self.entries:
            return True
        with self._lock:
            self._callbacks.setdefault(object_id, []).append(callback)
        if object_id in self.entries:  # landed while registering
            self._run_callbacks((object_id,))
        return False

    def _run_callbacks(self, ids) -> None:
        todo: list[Any] = []
        with self._lock:
            for object_id in ids:
                cbs = self._callbacks.pop(object_id, None)
                if cbs:
                    todo.extend((cb, object_id) for cb in cbs)
        for cb, object_id in todo:
            cb(object_id)

    def put_many(self, items: Iterable[tuple[bytes, int, Any]]) -> None:
        ids = []
        entries = self.entries
        for object_id, kind, payload in items:
            entries[object_id] = (kind, payload)
            ids.append(object_id)
        if self._requests:
            self._wake(ids)
        if self._callbacks:
            self._run_callbacks(ids)

    def _wake(self, ids: Iterable[bytes]) -> None:
        with self._lock:
            for req in self._requests:
                for object_id in ids:
                    if object_id in req.missing:
                        req.missing.discard(object_id)
                        req.needed -= 1
                if req.needed <= 0:
                    req.event.set()

    def get(self, object_id: bytes) -> tuple[int, Any] | None:
        return self.entries.get(object_id)

    def delete(self, object_id: bytes) -> None:
        self.entries.pop(object_id, None)

    def wait(self, ids: list[bytes], num_ready: int, timeout: float | None) -> set[bytes]:
        """Block until ``num_ready`` of the distinct ``ids`` are present (or ``timeout``
        seconds passed; ``None`` waits for ever, ``0`` not at all); return the ids that
        are still missing."""
        entries = self.entries
        distinct = set(ids)
        num_ready = min(num_ready, len(distinct))  # a repeated id counts once
        missing = {i for i in distinct if i not in entries}
        ready = len(distinct) - len(missing)
        if ready >= num_ready or timeout == 0:
            return missing
        req = _Request(missing, num_ready - ready)
        with self._lock:
            # Register first, then re-check: a put that landed before the request was
            # visible is seen here, one that lands after will find the request.
            self._requests.append(req)
            for object_id in list(req.missing):
                if object_id in entries:
                    req.missing.discard(object_id)
                    req.needed -= 1
            if req.needed <= 0:
                self._requests.remove(req)
                return req.missing
        try:
            # wait in slices: a cancel (an exception raised into this thread) is only
            # noticed between bytecodes, never inside one long blocking wait
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                left = 0.25 if deadline is None else min(0.25, deadline - time.monotonic())
                if left <= 0 or req.event.wait(left):
                    break
        finally:
            with self._lock:
                self._requests.remove(req)
        return req.missing

    def size(self) -> int:
        return len(self.entries)
