"""Reference counting for the objects a process knows of (pure: no I/O).

The owner counts refs held in its own process (``ObjectRef`` objects) and refs
held by tasks it submitted that are not finished. A ref that was pickled into
another value or sent to another process *escaped*: it is kept until the owner
exits (the borrower protocol that lets such objects be freed is the object
store issue's work). When nothing holds an owned object, ``on_free`` is called
once with its id and whether this process owned it
(a borrower only drops its cached copy).
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class ReferenceCounter:
    def __init__(self, on_free: Callable[[bytes, bool], None]) -> None:
        self._local: dict[bytes, int] = {}
        self._submitted: dict[bytes, int] = {}
        self._escaped: set[bytes] = set()
        self._owned: set[bytes] = set()
        self._lock = threading.Lock()
        self._on_free = on_free

    # -- ownership -------------------------------------------------------
    def add_owned(self, object_id: bytes) -> None:
        self._owned.add(object_id)

    def owns(self, object_id: bytes) -> bool:
        return object_id in self._owned

    # -- local refs (ObjectRef lifetimes) --------------------------------
    def add_local(self, object_id: bytes) -> None:
        with self._lock:
            self._local[object_id] = self._local.get(object_id, 0) + 1

    def remove_local(self, object_id: bytes) -> None:
        with self._lock:
            n = self._local.get(object_id, 0) - 1
            if n > 0:
                self._local[object_id] = n
                return
            self._local.pop(object_id, None)
            free = self._unreferenced(object_id)
        if free:
            self._release(object_id)

    # -- refs held by submitted tasks ------------------------------------
    def add_submitted(self, object_ids: list[bytes]) -> None:
        with self._lock:
            for object_id in object_ids:
                self._submitted[object_id] = self._submitted.get(object_id, 0) + 1

    def remove_submitted(self, object_ids: list[bytes]) -> None:
        freed = []
        with self._lock:
            for object_id in object_ids:
                n = self._submitted.get(object_id, 0) - 1
                if n > 0:
                    self._submitted[object_id] = n
                    continue
                self._submitted.pop(object_id, None)
                if self._unreferenced(object_id):
                    freed.append(object_id)
        for object_id in freed:
            self._release(object_id)

    def mark_escaped(self, object_ids: list[bytes]) -> None:
        with self._lock:
            self._escaped.update(object_ids)

    # -- queries ---------------------------------------------------------
    def _unreferenced(self, object_id: bytes) -> bool:
        return (
            object_id not in self._local
            and object_id not in self._submitted
            and object_id not in self._escaped
        )

    def _release(self, object_id: bytes) -> None:
        owned = object_id in self._owned
        self._owned.discard(object_id)
        self._on_free(object_id, owned)

    def counts(self, object_id: bytes) -> dict[str, int | bool]:
        return {
            "local": self._local.get(object_id, 0),
            "submitted": self._submitted.get(object_id, 0),
            "escaped": object_id in self._escaped,
            "owned": object_id in self._owned,
        }

    def num_tracked(self) -> int:
        return len(self._local) + len(self._submitted)
