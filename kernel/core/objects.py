"""A core worker's objects: ``put``, ``get`` and ``wait``, fetching borrowed objects from
their owners, and freeing objects when the reference counter lets go of them.

Values live in the in-process ``MemoryStore`` (small ones, and markers for the rest) and
in the node's object store (large ones, read zero-copy). ``get`` and ``wait`` run on the
user's thread; fetches from owners run on the io loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections import deque
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
from microray.core.lineage import Lineage
from microray.core.memory_store import ERROR, IN_STORE, SERIALIZED, VALUE, MemoryStore
from microray.core.object_ref import ObjectRef
from microray.core.reference_counter import ReferenceCounter
from microray.core.service import ST_IN_STORE, ST_INLINE, ST_TIMEOUT
from microray.exceptions import GetTimeoutError, ObjectLostError, OwnerDiedError, RaySystemError, RayTaskError
from microray.protocol import core_worker_pb2, core_worker_pb2_grpc, object_manager_pb2, object_manager_pb2_grpc
from microray.protocol import raylet_pb2
from microray.rpc import ChannelPool, invoke_logged

if TYPE_CHECKING:
    from microray.interfaces.object_store import ObjectStore
    from microray.plugin_manager import MicrorayPluginManager

log = structlog.get_logger(__name__)

PULL_ATTEMPTS = 8  # pulls of an object no node could give, each after its owner's answer


class ObjectsHost(Protocol):
    """What the objects read from their core worker (at use: dropped at shutdown)."""

    address: str
    node_id: str
    raylet_address: str
    worker_id: str
    is_worker: bool
    config: Config
    channels: ChannelPool
    recovery: Any  # core.recovery.ObjectRecovery: rebuilds lost objects this process owns
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
        self.lineage = Lineage(0)  # bounded by the config's max_lineage_bytes at attach
        # owned objects let go of (any thread), for the io loop to drop from the lineage in
        # one call per batch: a loop wake-up per freed object cost a burst of tasks one
        # each, against the user thread submitting the next burst
        self._released: deque[bytes] = deque()
        self._release_scheduled = False
        # the raylet must see blocked/unblocked in the order they happen: one at a time
        self._blocked = BlockedNotices(io.loop, self._send_blocked)
        # owner side: nodes that pulled a copy of an object this process owns (the node it
        # was sealed on first is in its memory-store entry)
        self.copies: dict[bytes, set[str]] = {}
        # borrower side: the owner of each borrowed object in a node's store (pulled through it)
        self.owner_of: dict[bytes, str] = {}
        self.store: ObjectStore
        self.borrowing: Borrowing
        self._pm: MicrorayPluginManager
        self._hooks: set[str] = set()

    def attach(self, store: ObjectStore, borrowing: Borrowing, pm: MicrorayPluginManager) -> None:
        self.store = store
        self.borrowing = borrowing
        self.lineage.max_bytes = self.host.config.max_lineage_bytes
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
        address = self.host.address
        if serialization.is_simple(value):
            if context.worker is self.host:  # a hot path: count the new ref with its ownership
                ref = ObjectRef.new_owned(oid, address, self.refs)
                self.memory.put(oid, VALUE, value)
                return ref
            self.refs.add_owned(oid)
            self.memory.put(oid, VALUE, value)
            return ObjectRef(oid, address)
        self.refs.add_owned(oid)
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
        entries = self.memory.entries
        if len(refs) == 1:  # a hot path: one ref whose value is here or in this node's store
            oid = refs[0].binary()
            entry = entries.get(oid)
            if entry is not None:
                if entry[0] == VALUE:
                    return [entry[1]]
                if entry[0] != IN_STORE or entry[1] == self.host.node_id:
                    return [self.value_of(oid)]
        ids_ = [r.binary() for r in refs]
        missing = [r for r in refs if r.binary() not in entries]
        if missing:
            self.fetch_borrowed(missing)  # objects already in the local store land at once
        if missing and any(oid not in entries for oid in ids_):
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
        lost = self._pull_missing(ids_, timeout)
        if lost:
            for oid in ids_:
                if oid in lost:
                    raise lost[oid]
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
            if view is None:  # a pulled copy dropped meanwhile: pull it again
                if self.io.in_loop_thread():
                    raise ObjectLostError(oid.hex(), f"Object {oid.hex()} is not in the object store of node {payload}")
                error = self.io.run(self._pull(oid))
                if error is not None:
                    raise error
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
        missing = [r for r, oid in zip(refs, ids_) if oid not in entries]
        if missing:
            self.fetch_borrowed(missing)
            missing = [r for r in missing if r.binary() not in entries]
        blocked = bool(missing) and timeout != 0 and self._notify_blocked()
        try:
            still = self.memory.wait(ids_, num_returns, timeout)
        finally:
            if blocked:
                self._notify_unblocked()
        if not still and num_returns >= len(refs):
            return list(refs), []  # all ready, all asked for
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
            if self._needs_pull(ref.binary()):
                self.io.spawn(pulled_then_done())
                return
            try:
                fut.set_result(self.value_of(ref.binary()))
            except BaseException as exc:  # noqa: BLE001 -- the error is the result
                fut.set_exception(exc)

        async def pulled_then_done() -> None:
            error = await self._pull(ref.binary())
            if error is not None:
                if not fut.done():
                    fut.set_exception(error)
                return
            done(ref.binary())

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
                if kind != VALUE:  # the stream ended in an error (cancelled, lost): it is the next item
                    self.refs.add_owned(item)
                    self.memory.put_many([(item, kind, count), (end, VALUE, index)])
                    return ObjectRef(item, owner)
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
                self.owner_of[oid] = ref.owner_address
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
                    self.owner_of[oid] = owner
                    self.memory.put(oid, IN_STORE, reply.node_id)
                else:
                    self.memory.put(oid, ERROR, ObjectLostError(oid.hex()))
                return
        finally:
            self.fetching.discard(oid)

    # -- objects in other nodes' stores --------------------------------------------------
    def _needs_pull(self, oid: bytes) -> bool:
        entry = self.memory.entries.get(oid)
        return (entry is not None and entry[0] == IN_STORE and entry[1] != self.host.node_id
                and not self.store.contains(oid))

    def _pull_missing(self, ids_: Sequence[bytes], timeout: float | None) -> dict[bytes, BaseException]:
        """Bring the objects of ``ids_`` that lie in other nodes' stores into this node's
        store (all at once, through this node's raylet); the errors of those that are lost."""
        entries = self.memory.entries
        node_id = self.host.node_id
        need: dict[bytes, None] | None = None
        for oid in ids_:
            entry = entries.get(oid)
            if entry is not None and entry[0] == IN_STORE and entry[1] != node_id:
                if not self.store.contains(oid):
                    need = need or {}
                    need[oid] = None
        if not need:
            return {}
        if self.io.in_loop_thread():  # pragma: no cover -- get() is never called on the io loop
            raise RaySystemError("get of an object in another node's store on the io loop thread")

        async def pull_all() -> list[BaseException | None]:
            return await asyncio.gather(*(self._pull(oid) for oid in need))

        blocked = self._notify_blocked()
        try:
            results = self.io.run(pull_all(), timeout)
        except concurrent.futures.TimeoutError:
            raise GetTimeoutError(f"get timed out after {timeout}s pulling {len(need)} objects from other nodes") from None
        finally:
            if blocked:
                self._notify_unblocked()
        return {oid: err for oid, err in zip(need, results) if err is not None}

    async def _pull(self, oid: bytes) -> BaseException | None:
        """Ask this node's raylet to pull ``oid`` into the node's store (io loop); None
        when it is there, else the error ``get`` raises. When no node can give it, its
        owner rebuilds it (``object_lost``) and the pull is tried again."""
        owner = self.host.address if self.refs.owns(oid) else self.owner_of.get(oid)
        if not owner:
            return ObjectLostError(oid.hex(), f"Object {oid.hex()} is lost: this process does not know its owner")
        stub = object_manager_pb2_grpc.ObjectManagerStub(self.host.channels.get(self.host.raylet_address))
        why = ""
        for attempt in range(PULL_ATTEMPTS):
            try:
                reply = await stub.FetchObject(object_manager_pb2.FetchObjectRequest(object_id=oid, owner_address=owner))
            except grpc.aio.AioRpcError as exc:
                return ObjectLostError(oid.hex(), f"Object {oid.hex()} could not be pulled: this node's raylet "
                                                  f"failed ({exc.code().name}: {exc.details()})")
            if reply.ok:
                return None
            why = reply.error
            error, rebuilt = await self.object_lost(oid, owner, why)
            if error is not None:
                return error
            if not rebuilt:  # a holder's node is not declared dead yet: wait for the verdict
                await asyncio.sleep(min(0.25 * 2 ** attempt, 2.0))
        return ObjectLostError(oid.hex(), why or f"Object {oid.hex()} is lost")

    async def object_lost(self, oid: bytes, owner: str, why: str) -> tuple[BaseException | None, bool]:
        """No node could give ``oid``: its owner rebuilds it by running the task that made
        it again (``core/recovery.py``). ``(error, rebuilt)``: the error readers get, or
        None to pull again (``rebuilt``: it was made again; else a holder may live)."""
        if owner == self.host.address:
            before = self.host.recovery.rebuilt
            error = await self.host.recovery.recover(oid)
            return error, self.host.recovery.rebuilt != before
        stub = core_worker_pb2_grpc.CoreWorkerStub(self.host.channels.get(owner))
        try:
            reply = await stub.RecoverObject(core_worker_pb2.ObjectLocationsRequest(object_id=oid))
        except grpc.aio.AioRpcError as exc:
            return OwnerDiedError(oid.hex(), (
                f"Object {oid.hex()} is lost ({why}), and its owner ({owner}), which could rebuild it, is "
                f"unreachable: {exc.code().name}")), False
        if reply.error:
            error, _ = serialization.deserialize(reply.error)
            return error, False
        return None, reply.rebuilt

    def locations(self, oid: bytes) -> tuple[bool, list[str], str]:
        """Owner side: whether this process holds ``oid`` in a node's store, the nodes
        with a copy (the node it was sealed on first, first), or why there are none."""
        entry = self.memory.entries.get(oid)
        if entry is None:
            return False, [], "it is not held by its owner (freed, or not made yet)"
        if entry[0] != IN_STORE:
            return False, [], "it is not in any node's store (its value is kept by its owner)"
        copies = self.copies.get(oid)
        return True, [entry[1], *sorted(copies - {entry[1]})] if copies else [entry[1]], ""

    def add_location(self, oid: bytes, node_id: str) -> bool:
        """Owner side: ``node_id`` pulled a copy of ``oid``. False when this process no
        longer holds the object (the node then drops its copy)."""
        entry = self.memory.entries.get(oid)
        if entry is None or entry[0] != IN_STORE or not self.refs.owns(oid):
            return False
        self.copies.setdefault(oid, set()).add(node_id)
        return True

    # -- blocked-in-get notices (a worker lends its CPU back while it waits) -----------
    def _notify_blocked(self) -> bool:
        host = self.host
        if not host.is_worker or context.current_task() is None or self.io.in_loop_thread():
            return False
        self._blocked.enter()
        return True

    def _notify_unblocked(self) -> None:
        self._blocked.leave()

    def blocked_in_get(self) -> bool:
        """Whether a thread of this worker is waiting in ``get()``/``wait()`` for a task's
        objects now (having lent the worker's CPU back); always False in a driver."""
        return self._blocked.blocked

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
        if owned and self.lineage.entries:  # the lineage is the io loop's
            self._released.append(oid)
            if not self._release_scheduled:
                self._release_scheduled = True
                try:
                    self.io.call_in_loop(self._lineage_released)
                except RuntimeError:  # the loop is closed: the process is shutting down
                    pass
        self.owner_of.pop(oid, None)
        copies = self.copies.pop(oid, None)
        if owned and entry is not None and "microray_object_freed" in self._hooks:
            self._observe("microray_object_freed", {"object_id": oid.hex(), "in_store": entry[0] == IN_STORE})
        if owned and entry is not None and entry[0] == IN_STORE:
            node_id = self.host.node_id
            if entry[1] == node_id:
                try:
                    self.store.delete(oid)
                except Exception as exc:  # noqa: BLE001 -- freeing must never raise into __del__
                    log.warning("object_free_failed", object_id=oid.hex(), error=repr(exc))
            if (entry[1] != node_id or copies) and self.host.connected:
                # the copies on other nodes (and one this node pulled): this node's raylet
                # deletes its own and forwards the request to the others
                others = ({entry[1]} | (copies or set())) - {node_id}
                self.io.spawn(self._free_remote(oid, sorted(others)))

    async def _free_remote(self, oid: bytes, nodes: list[str]) -> None:
        channels = self.host.channels
        if channels is None:
            return
        stub = object_manager_pb2_grpc.ObjectManagerStub(channels.get(self.host.raylet_address))
        try:
            await stub.FreeObjects(object_manager_pb2.FreeObjectsRequest(object_ids=[oid], forward_to=nodes), timeout=10)
        except grpc.aio.AioRpcError as exc:
            log.debug("object_free_remote_failed", object_id=oid.hex(), error=exc.code().name)

    async def free_remote_owned(self) -> None:
        """At shutdown (io loop): free the copies other nodes hold of objects this process
        owns (nobody else would: their owner is going)."""
        node_id = self.host.node_id
        oids: list[bytes] = []
        nodes: set[str] = set()
        for oid, (kind, node) in list(self.memory.entries.items()):
            if kind != IN_STORE or not self.refs.owns(oid):
                continue
            held = ({node} | self.copies.get(oid, set())) - {node_id}
            if held:
                oids.append(oid)
                nodes |= held
        if not oids:
            return
        stub = object_manager_pb2_grpc.ObjectManagerStub(self.host.channels.get(self.host.raylet_address))
        try:
            await stub.FreeObjects(object_manager_pb2.FreeObjectsRequest(object_ids=oids, forward_to=sorted(nodes)),
                                   timeout=2)
        except grpc.aio.AioRpcError as exc:
            log.debug("object_free_remote_failed", objects=len(oids), error=exc.code().name)

    def _lineage_released(self) -> None:
        self._release_scheduled = False  # before draining: an oid added from now on is drained or scheduled
        released = self._released
        while released:
            unpin = self.lineage.released(released.popleft())
            if unpin:  # put() arguments held for a rebuild that can no longer be asked for
                self.refs.remove_submitted(unpin)

    def delete_owned_in_store(self) -> None:
        """At shutdown: delete every object this process owns from the node's store."""
        node_id = self.host.node_id
        for oid, (kind, node) in list(self.memory.entries.items()):
            if kind == IN_STORE and node == node_id and self.refs.owns(oid):
                try:
                    self.store.delete(oid)
                except Exception:  # noqa: BLE001
                    pass
