"""Reference counting for the objects a process knows of (pure: no I/O).

An object is kept while any of these hold it (Ray's ownership model):

- ``local``: ``ObjectRef`` objects alive in this process;
- ``submitted``: tasks this process submitted that take the ref (top level or nested)
  and have not finished;
- ``contained``: live objects owned by this process whose value contains the ref
  (``put([ref])``, a task's return value holding a ref);
- ``borrowers`` (owner side): other processes that registered as holding the ref;
- ``pinned``: refs that must live as long as this process (an actor's constructor
  arguments, which a restart reads again).

When nothing holds it, ``on_free(object_id, owned, owner)`` is called once: an
owner deletes the value everywhere; a borrower drops its cached copy and, with
``owner`` set, tells the owner it no longer borrows the object.

Every method may be called from any thread (user threads, the io loop, executor
threads); all state changes happen under one lock, and ``on_free`` is called
outside it. Removing a count that is not there (a ref counted by an earlier
worker of this process, a second removal) changes nothing and frees nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable


class ReferenceCounter:
    """The counts of one process; ``on_free`` is called once per object released."""

    def __init__(self, on_free: Callable[[bytes, bool, str | None], None]) -> None:
        self._local: dict[bytes, int] = {}
        self._submitted: dict[bytes, int] = {}
        self._contained: dict[bytes, int] = {}
        self._contains: dict[bytes, tuple[bytes, ...]] = {}
        self._borrowers: dict[bytes, set[str]] = {}
        self._pinned: set[bytes] = set()
        self._owned: set[bytes] = set()
        self._borrowed: dict[bytes, str] = {}  # registered with its owner -> owner address
        self._lock = threading.Lock()
        self._on_free = on_free

    # -- ownership -------------------------------------------------------
    def add_owned(self, object_id: bytes) -> None:
        """This process owns the object (it created the ref: a put, a task's return)."""
        with self._lock:
            self._owned.add(object_id)

    def add_owned_local(self, object_id: bytes) -> None:
        """``add_owned`` and ``add_local`` in one go (one lock): a put's new ref."""
        with self._lock:
            self._owned.add(object_id)
            self._local[object_id] = self._local.get(object_id, 0) + 1

    def owns(self, object_id: bytes) -> bool:
        return object_id in self._owned  # one set lookup: atomic, and on the get path

    def is_borrowing(self, object_id: bytes) -> bool:
        return object_id in self._borrowed

    def mark_borrowed(self, object_id: bytes, owner: str) -> None:
        """This process registered with ``owner`` as a borrower of the object.

        If nothing here holds the object any more (its last ref went while the
        registration was on its way), it is released at once, so the owner is told
        the borrow ended instead of keeping the object for a borrower that never will."""
        with self._lock:
            self._borrowed[object_id] = owner
            free = self._unreferenced(object_id)
        if free:
            self._release(object_id)

    # -- counts ----------------------------------------------------------
    def add_local(self, object_id: bytes) -> None:
        with self._lock:
            self._local[object_id] = self._local.get(object_id, 0) + 1

    def remove_local(self, object_id: bytes) -> None:
        self._decrement(self._local, (object_id,))

    def add_submitted(self, object_ids: Iterable[bytes]) -> None:
        with self._lock:
            for object_id in object_ids:
                self._submitted[object_id] = self._submitted.get(object_id, 0) + 1

    def remove_submitted(self, object_ids: Iterable[bytes]) -> None:
        self._decrement(self._submitted, object_ids)

    def add_contained(self, outer: bytes, inner_ids: Iterable[bytes]) -> None:
        """The owned object ``outer`` holds these refs in its value: keep them while it lives."""
        inner = tuple(inner_ids)
        if not inner:
            return
        with self._lock:
            self._contains[outer] = self._contains.get(outer, ()) + inner
            for object_id in inner:
                self._contained[object_id] = self._contained.get(object_id, 0) + 1

    def pin(self, object_ids: Iterable[bytes]) -> None:
        with self._lock:
            self._pinned.update(object_ids)

    def add_borrower(self, object_id: bytes, borrower: str) -> bool:
        """Owner side. False when the object is not (or no longer) owned here."""
        with self._lock:
            if object_id not in self._owned:
                return False
            self._borrowers.setdefault(object_id, set()).add(borrower)
            return True

    def remove_borrower(self, object_id: bytes, borrower: str) -> None:
        with self._lock:
            holders = self._borrowers.get(object_id)
            if holders is None:
                return
            holders.discard(borrower)
            if holders:
                return
            del self._borrowers[object_id]
            free = self._unreferenced(object_id)
        if free:
            self._release(object_id)

    def remove_borrower_everywhere(self, borrower: str) -> int:
        """A borrower process died: it holds nothing any more. Returns how many objects it held."""
        with self._lock:
            held = [oid for oid, holders in self._borrowers.items() if borrower in holders]
        for oid in held:
            self.remove_borrower(oid, borrower)
        return len(held)

    def disown(self, object_id: bytes) -> None:
        """Forget an owned id that never had a value to free (a generator's end marker)."""
        with self._lock:
            self._owned.discard(object_id)

    def release_if_unreferenced(self, object_id: bytes) -> None:
        """Free an owned object nothing holds (a return of a task run again to rebuild
        another object, which nobody had kept)."""
        with self._lock:
            free = object_id in self._owned and self._unreferenced(object_id)
        if free:
            self._release(object_id)

    def _decrement(self, table: dict[bytes, int], object_ids: Iterable[bytes]) -> None:
        freed = []
        with self._lock:
            for object_id in object_ids:
                n = table.get(object_id, 0) - 1
                if n > 0:
                    table[object_id] = n
                    continue
                if n < 0:
                    continue  # not counted here: nothing to remove, nothing to free
                del table[object_id]
                if self._unreferenced(object_id):
                    freed.append(object_id)
        for object_id in freed:
            self._release(object_id)

    # -- freeing ---------------------------------------------------------
    def _unreferenced(self, object_id: bytes) -> bool:
        return (
            object_id not in self._local
            and object_id not in self._submitted
            and object_id not in self._contained
            and object_id not in self._borrowers
            and object_id not in self._pinned
        )

    def _release(self, object_id: bytes) -> None:
        with self._lock:
            owned = object_id in self._owned
            self._owned.discard(object_id)
            owner = self._borrowed.pop(object_id, None)
            inner = self._contains.pop(object_id, ())
        self._on_free(object_id, owned, owner)
        if inner:
            self._decrement(self._contained, inner)

    # -- queries ---------------------------------------------------------
    def counts(self, object_id: bytes) -> dict[str, int | bool]:
        """What holds the object (for the state API and tests)."""
        with self._lock:
            return {
                "local": self._local.get(object_id, 0),
                "submitted": self._submitted.get(object_id, 0),
                "contained": self._contained.get(object_id, 0),
                "borrowers": len(self._borrowers.get(object_id, ())),
                "pinned": object_id in self._pinned,
                "owned": object_id in self._owned,
            }

    def num_tracked(self) -> int:
        """How many objects something holds (the counts of each table, summed)."""
        with self._lock:
            return len(self._local) + len(self._submitted) + len(self._contained) + len(self._borrowers)
