"""A core worker's objects: ``put``, ``get`` and ``wait``, fetching borrowed objects from
their owners, and freeing objects when the reference counter lets go of them.

Values live in the in-process ``MemoryStore`` (small ones, and markers for the rest) and
in the node's object store (large ones, read zero-copy). ``get`` and ``wait`` run on the
user's thread; fetches from owners run on the io loop.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import grpc
import structlog

from microray import ids, serialization
from microray.config import Config
from microray.core import context
from microray.core.blocked_notices import BlockedNotices
from microray.core.borrowing import Borrowing
from microray.core.io_loop import IoLoop
from microray.core.memory_store import ERROR, IN_STORE, SERIALIZED, VALUE, MemoryStore
from microray.core.object_ref import ObjectRef
from microray.core.reference_counter import ReferenceCounter
from microray.core.service import ST_IN_STORE, ST_INLINE, ST_TIMEOUT
from microray.exceptions import GetTimeoutError, ObjectLostError, OwnerDiedError, RaySystemError, RayTaskError
from microray.protocol import core_worker_pb2, core_worker_pb2_grpc, raylet_pb2
from microray.rpc import ChannelPool, invoke_logged

if TYPE_CHECKING:
    from microray.interfaces.object_store import ObjectStore
    from microray.plugin_manager import MicrorayPluginManager

log = structlog.get_logger(__name__)


class ObjectsHost(Protocol):
    """What the objects read from their core worker (at use: dropped at shutdown)."""

    address: str
    node_id: str
    worker_id: str
    is_worker: bool
    config: Config
    channels: ChannelPool
    raylet: Any  # RayletStub
    connected: bool


class Objects:
    """Made before the core worker connects (its reference counter counts from the
    start); ``attach`` gives it the node's store once connected."""

    def __init__(self, host: ObjectsHost, io: IoLoop) -> None:
        self.host = host
        self.io = io
        self.memory = MemoryStore()
        self.refs = ReferenceCounter(self.free)
        self.sizes: dict[bytes, int] = {}  # sizes of objects in the store, for the state API
        self.fetching: set[bytes] = set()  # borrowed objects being fetched from their owners
        # the raylet must see blocked/unblocked in the order they happen: one at a time
        self._blocked = BlockedNotices(io.loop, self._send_blocked)
        self.store: ObjectStore
        self.borrowing: Borrowing
        self._pm: MicrorayPluginManager
        self._hooks: set[str] = set()

    def attach(self, store: ObjectStore, borrowing: Borrowing, pm: MicrorayPluginManager) -> None:
        self.store = store
        self.borrowing = borrowing
        self._pm = pm
        self._hooks = {hook for hook in ("microray_object_created", "microray_object_freed") if pm.has_observers(hook)}

    # -- put ---------------------------------------------------------------------
    def put(self, value: Any, *, what: str = "value") -> ObjectRef:
        """Store ``value`` as an object this process owns; its ref."""
        if isinstance(value, ObjectRef):
            raise TypeError(
                "Calling 'put' on an ObjectRef is not allowed. If you really want to do this, "
                "wrap the ObjectRef in a list and call 'put' on it."
            )
        oid = ids.object_id(ids.new_task_id(), 0)
        self.refs.add_owned(oid)
        address = self.host.address
        if serialization.is_simple(value):
            self.memory.put(oid, VALUE, value)
            return ObjectRef(oid, address)
        ser = serialization.serialize(value, what=what)
        if ser.contained_refs:
            self.refs.add_contained(oid, [r.binary() for r in ser.contained_refs])
        self.store_serialized(oid, ser)
        return ObjectRef(oid, address)

    def store_serialized(self, oid: bytes, ser: serialization.Serialized) -> None:
        """Keep a serialized value: inline in memory when small, else in the node's store."""
        size = ser.total_size
        if size <= self.host.config.max_inline_object_bytes:
            self.memory.put(oid, SERIALIZED, ser.to_bytes())
            return
        self.write_to_store(oid, ser)
        self.memory.put(oid, IN_STORE, self.host.node_id)

    def write_to_store(self, oid: bytes, ser: serialization.Serialized) -> None:
        """Write and seal ``ser`` in the node's object store as ``oid``."""
        self.sizes[oid] = ser.total_size
        store = self.store
        buf = store.create(oid, ser.total_size)
        try:
            ser.write_to(buf)
        except BaseException:
            del buf
            store.abort(oid)
            raise
        del buf
        try:
            store.seal(oid)
        except BaseException:
            store.abort(oid)
            raise
        if "microray_object_created" in self._hooks:
            self._observe("microray_object_created", {"object_id": oid.hex(), "size": ser.total_size,
                                                      "node_id": self.host.node_id})

    def _observe(self, hook: str, info: dict[str, Any]) -> None:
        """Tell observer plugins, off the caller's path (a thread of the io loop's executor)."""
        loop = self.io.loop
        loop.call_soon_threadsafe(lambda: loop.run_in_executor(None, lambda: self._pm.notify(hook, obj=info)))

    # -- get / wait ----------------------------------------------------------------
    def get(self, refs: Sequence[ObjectRef], timeout: float | None = None) -> list[Any]:
        """The values of ``refs``, waiting up to ``timeout`` for them (GetTimeoutError)."""
        ids_ = [r.binary() for r in refs]
        entries = self.memory.entries
        missing = [r for r in refs if r.binary() not in entries]
        if missing:
            self.fetch_borrowed(missing)  # objects already in the local store land at once
        if any(oid not in entries for oid in ids_):
            blocked = self._notify_blocked()
            try:
                still = self.memory.wait(ids_, len(set(ids_)), timeout)
            finally:
                if blocked:
                    self._notify_unblocked()
            if still:
                raise GetTimeoutError(
                    f"get timed out after {timeout}s: {len(still)} of {len(set(ids_))} objects not ready"
                )
        return [self.value_of(oid) for oid in ids_]

    def value_of(self, oid: bytes) -> Any:
        """The value of an object present in the memory store (raising its error)."""
        entry = self.memory.entries.get(oid)
        if entry is None:
            raise ObjectLostError(oid.hex())
        kind, payload = entry
        if kind == VALUE:
            return payload
        if kind == SERIALIZED:
            value, is_error = serialization.deserialize(payload)
            self.borrowing.register_borrowed()
        elif kind == IN_STORE:
            view = self.store.get(oid)
            if view is None:
                raise ObjectLostError(oid.hex(), f"Object {oid.hex()} is not in the object store of node {payload}")
            value, is_error = serialization.deserialize(view)
            self.borrowing.register_borrowed()
        elif kind == ERROR:
            value, is_error = payload, True
        else:  # pragma: no cover
            raise RaySystemError(f"unknown memory-store entry kind {kind}")
        if is_error:
            if isinstance(value, RayTaskError):
                raise value.as_instanceof_cause()
            raise value
        return value

    def wait(
        self, refs: Sequence[ObjectRef], num_returns: int, timeout: float | None
    ) -> tuple[list[ObjectRef], list[ObjectRef]]:
        """``(ready, not_ready)`` once ``num_returns`` refs are ready or ``timeout`` passed."""
        ids_ = [r.binary() for r in refs]
        entries = self.memory.entries
        missing = [r for r in refs if r.binary() not in entries]
        if missing:
            self.fetch_borrowed(missing)
            missing = [r for r in missing if r.binary() not in entries]
        blocked = bool(missing) and timeout != 0 and self._notify_blocked()
        try:
            still = self.memory.wait(ids_, num_returns, timeout)
        finally:
            if blocked:
                self._notify_unblocked()
        ready: list[ObjectRef] = []
        not_ready: list[ObjectRef] = []
        for r in refs:
            if r.binary() not in still and len(ready) < num_returns:
                ready.append(r)
            else:
                not_ready.append(r)
        return ready, not_ready

    def resolve_async(self, ref: ObjectRef, fut: concurrent.futures.Future[Any]) -> None:
        """Complete a concurrent future with the ref's value (``ObjectRef.future()``)."""

        def done(_oid: bytes) -> None:
            if fut.done():
                return
            try:
                fut.set_result(self.value_of(ref.binary()))
            except BaseException as exc:  # noqa: BLE001 -- the error is the result
                fut.set_exception(exc)

        self.fetch_borrowed([ref])
        if self.memory.on_ready(ref.binary(), done):
            done(ref.binary())

    def next_generator_item(self, task_id: bytes, index: int, owner: str, timeout: float | None) -> ObjectRef | None:
        """The ref of item ``index`` of a streaming generator task, None after its last."""
        item = ids.object_id(task_id, index)
        end = ids.object_id(task_id, 0xFFFFFFFF)
        entries = self.memory.entries
        while True:
            if item in entries:
                return ObjectRef(item, owner)
            end_entry = entries.get(end)
            if end_entry is not None:
                kind, count = end_entry
                if index > count:
                    self.memory.delete(end)  # the generator is used up: forget its marker
                    self.refs.disown(end)
                    return None
            missing = self.memory.wait([item, end], 1, timeout)
            if len(missing) == 2:
                raise GetTimeoutError(f"no generator item within {timeout}s")

    # -- borrowed objects ------------------------------------------------------------
    def fetch_borrowed(self, refs: Sequence[Any]) -> None:
        """Start fetching the values of borrowed refs (``binary()``, ``owner_address``)
        from their owners; one already in this node's store lands at once."""
        address = self.host.address
        for ref in refs:
            oid = ref.binary()
            if self.refs.owns(oid) or ref.owner_address in ("", address) or oid in self.fetching:
                continue
            if self.store.contains(oid):
                self.memory.put(oid, IN_STORE, self.host.node_id)
                continue
            self.fetching.add(oid)
            self.io.spawn(self._fetch_from_owner(oid, ref.owner_address))

    async def _fetch_from_owner(self, oid: bytes, owner: str) -> None:
        stub = core_worker_pb2_grpc.CoreWorkerStub(self.host.channels.get(owner))
        try:
            while True:
                try:
                    reply = await stub.GetObject(core_worker_pb2.GetObjectRequest(object_id=oid, timeout=30))
                except grpc.aio.AioRpcError as exc:
                    err = OwnerDiedError(
                        oid.hex(),
                        f"The owner of object {oid.hex()} ({owner}) is unreachable, so the object "
                        f"is lost: {exc.code().name}",
                    )
                    self.memory.put(oid, ERROR, err)
                    return
                if reply.status == ST_TIMEOUT:
                    continue
                if reply.status == ST_INLINE:
                    self.memory.put(oid, SERIALIZED, reply.data)
                elif reply.status == ST_IN_STORE:
                    self.memory.put(oid, IN_STORE, reply.node_id)
                else:
                    self.memory.put(oid, ERROR, ObjectLostError(oid.hex()))
                return
        finally:
            self.fetching.discard(oid)

    # -- blocked-in-get notices (a worker lends its CPU back while it waits) -----------
    def _notify_blocked(self) -> bool:
        host = self.host
        if not host.is_worker or context.current_task() is None or self.io.in_loop_thread():
            return False
        self._blocked.enter()
        return True

    def _notify_unblocked(self) -> None:
        self._blocked.leave()

    async def _send_blocked(self, blocked: bool) -> None:
        host = self.host
        if host.raylet is None:  # shut down meanwhile
            return
        method = host.raylet.NotifyBlocked if blocked else host.raylet.NotifyUnblocked
        await invoke_logged(method, raylet_pb2.WorkerIdRequest(worker_id=host.worker_id), 30)

    # -- freeing -----------------------------------------------------------------------
    def free(self, oid: bytes, owned: bool, owner: str | None = None) -> None:
        """The reference counter let go of ``oid``: drop it here (and in the node's store
        when this process owns it), and tell its owner when we borrowed it."""
        if owner is not None and self.host.connected:
            self.borrowing.send_remove_borrower(owner, oid)
        entry = self.memory.entries.pop(oid, None)
        self.sizes.pop(oid, None)
        if owned and entry is not None and "microray_object_freed" in self._hooks:
            self._observe("microray_object_freed", {"object_id": oid.hex(), "in_store": entry[0] == IN_STORE})
        if owned and entry is not None and entry[0] == IN_STORE and entry[1] == self.host.node_id:
            try:
                self.store.delete(oid)
            except Exception as exc:  # noqa: BLE001 -- freeing must never raise into __del__
                log.warning("object_free_failed", object_id=oid.hex(), error=repr(exc))

    def delete_owned_in_store(self) -> None:
        """At shutdown: delete every object this process owns from the node's store."""
        node_id = self.host.node_id
        for oid, (kind, node) in list(self.memory.entries.items()):
            if kind == IN_STORE and node == node_id and self.refs.owns(oid):
                try:
                    self.store.delete(oid)
                except Exception:  # noqa: BLE001
                    pass
