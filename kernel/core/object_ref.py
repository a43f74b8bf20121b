"""``ObjectRef`` and ``ObjectRefGenerator``: handles to values that may not exist yet.

A ref knows its object id and its owner's address. Creating and dropping refs
tells the process's reference counter; pickling a ref (inside an argument or a
value) records it so the owner can treat it as borrowed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

from microray import serialization
from microray.core import context as _context


class ObjectRef:
    """A reference to an object in the cluster (Ray's ``ObjectRef``)."""

    __slots__ = ("_id", "_owner", "_counted", "__weakref__")

    def __init__(self, object_id: bytes, owner: str = "", *, _count: bool = True) -> None:
        self._id = object_id
        self._owner = owner
        self._counted = False
        if _count:
            worker = _context.worker
            if worker is not None:
                worker.refs.add_local(object_id)
                self._counted = True

    @classmethod
    def new_owned(cls, object_id: bytes, owner: str, refs: Any) -> "ObjectRef":
        """The first ref of an object this process just made (a put, a task's return):
        ``refs`` (the current worker's reference counter, the one ``__del__`` tells)
        counts it as owned and as this local ref at once (one lock, on the hot paths)."""
        refs.add_owned_local(object_id)
        ref = cls(object_id, owner, _count=False)
        ref._counted = True
        return ref

    # -- identity --------------------------------------------------------
    def binary(self) -> bytes:
        return self._id

    def hex(self) -> str:
        return self._id.hex()

    def task_id(self) -> bytes:
        return self._id[:16]

    @classmethod
    def nil(cls) -> "ObjectRef":
        """The nil ref (all 0xff bytes), as Ray's ``ObjectRef.nil()``; it refers to nothing."""
        return cls(_NIL_ID, _count=False)

    def is_nil(self) -> bool:
        return self._id == _NIL_ID

    @property
    def owner_address(self) -> str:
        return self._owner

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other._id == self._id

    def __hash__(self) -> int:
        return hash(self._id)

    def __repr__(self) -> str:
        return f"ObjectRef({self._id.hex()})"

    # -- lifetime --------------------------------------------------------
    def __del__(self) -> None:
        if self._counted:
            worker = _context.worker
            if worker is not None:
                try:
                    worker.refs.remove_local(self._id)
                except Exception:  # noqa: BLE001 -- interpreter shutdown
                    pass

    def __reduce__(self):
        if not serialization.record_ref(self):
            # pickled out of band (``cloudpickle.dumps(ref)``, ``copy``): nothing can tell
            # when the bytes are read back, so the object stays as long as this process
            # lives, as in Ray
            worker = _context.worker
            if worker is not None and not self.is_nil():
                worker.refs.pin((self._id,))
        return (_rebuild_ref, (self._id, self._owner))

    # -- futures ---------------------------------------------------------
    def future(self) -> concurrent.futures.Future:
        """A ``concurrent.futures.Future`` resolved with the value (or the error)."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        worker = _context.worker
        if worker is None:
            raise RuntimeError("microray is not initialized")
        worker.resolve_async(self, fut)
        return fut

    def as_future(self, _internal: bool = False) -> asyncio.Future:
        """An ``asyncio.Future`` of the value, on the running (or current) event loop, as
        Ray's ``as_future()``; cancelling it does not cancel the task."""
        return asyncio.wrap_future(self.future())

    def _on_completed(self, callback: Any) -> None:
        """Call ``callback(value)`` once the value is ready, from a microray thread; on
        failure it gets the exception object instead of a value (as Ray does)."""

        def done(fut: concurrent.futures.Future) -> None:
            exc = fut.exception()
            callback(exc if exc is not None else fut.result())

        self.future().add_done_callback(done)

    def __await__(self):
        return asyncio.wrap_future(self.future()).__await__()


# Ray's older name for ObjectRef, still importable as ``ray.ObjectID``
ObjectID = ObjectRef
_NIL_ID = b"\xff" * 20


def _rebuild_ref(object_id: bytes, owner: str) -> ObjectRef:
    ref = ObjectRef(object_id, owner)
    worker = _context.worker
    if worker is not None:
        worker.on_ref_deserialized(ref)
    return ref


class ObjectRefGenerator:
    """What calling a generator task returns: yields an ``ObjectRef`` per value as the
    task produces it (Ray's streaming generator)."""

    def __init__(self, task_id: bytes, owner: str, worker: Any) -> None:
        self._task_id = task_id
        self._owner = owner
        self._worker = worker
        self._next_index = 1
        self._exhausted = False

    def _probe_refs(self) -> list[ObjectRef]:
        """Uncounted refs to what makes this generator ready for ``ray.wait``: its next item,
        or the end marker its task stores after the last item."""
        from microray import ids

        return [ObjectRef(ids.object_id(self._task_id, self._next_index), self._owner, _count=False),
                ObjectRef(ids.object_id(self._task_id, 0xFFFFFFFF), self._owner, _count=False)]

    def __iter__(self) -> "ObjectRefGenerator":
        return self

    def __next__(self) -> ObjectRef:
        if self._exhausted:
            raise StopIteration
        ref = self._worker.next_generator_item(self._task_id, self._next_index, self._owner, None)
        if ref is None:
            self._exhausted = True
            raise StopIteration
        self._next_index += 1
        return ref

    def next(self, timeout: float | None = None) -> ObjectRef:
        if self._exhausted:
            raise StopIteration
        ref = self._worker.next_generator_item(self._task_id, self._next_index, self._owner, timeout)
        if ref is None:
            self._exhausted = True
            raise StopIteration
        self._next_index += 1
        return ref

    def __aiter__(self):
        return self

    async def __anext__(self) -> ObjectRef:
        # the wait runs on a thread; StopIteration cannot cross into a future, so the end is None
        ref = await asyncio.get_running_loop().run_in_executor(None, self._next_or_none)
        if ref is None:
            raise StopAsyncIteration
        return ref

    def _next_or_none(self) -> ObjectRef | None:
        try:
            return self.__next__()
        except StopIteration:
            return None

    def __repr__(self) -> str:
        return f"ObjectRefGenerator({self._task_id.hex()})"


class DynamicObjectRefGenerator:
    """The value of a task run with ``num_returns="dynamic"`` (Ray's name): the refs of
    everything the task yielded, in order. Iterate it, take ``len()``, pass it on."""

    def __init__(self, refs: list[ObjectRef]) -> None:
        self._refs = list(refs)

    def __iter__(self):
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)

    def __repr__(self) -> str:
        return f"DynamicObjectRefGenerator({len(self._refs)} refs)"
