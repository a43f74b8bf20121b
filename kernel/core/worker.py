"""The core worker: the part of every driver and worker process that talks to the cluster.

It owns the objects its process creates (their values, their reference
counts), submits tasks, serves its objects to borrowers, and — in a worker
process — runs the tasks pushed to it. gRPC runs on an asyncio loop in a
background thread ("microray-io"); user code calls in from its own threads.
"""

from __future__ import annotations

import asyncio
import os
import time
import threading

from collections.abc import Sequence
from typing import Any

import grpc
import structlog

from microray import config as config_mod
from microray import ids, serialization
from microray.core import context
from microray.core.memory_store import ERROR, IN_STORE, SERIALIZED, VALUE, MemoryStore
from microray.core.object_ref import ObjectRef
from microray.core.reference_counter import ReferenceCounter
from microray.core.service import ST_IN_STORE, ST_INLINE, ST_TIMEOUT, CoreWorkerService
from microray.exceptions import (
    GcsUnavailableError,
    GetTimeoutError,
    ObjectLostError,
    OwnerDiedError,
    RaySystemError,
    RayTaskError,
)
from microray.object_store_access import open_object_store
from microray.protocol import (
    common_pb2,
    core_worker_pb2,
    core_worker_pb2_grpc,
    gcs_pb2,
    gcs_pb2_grpc,
    raylet_pb2,
    raylet_pb2_grpc,
)
from microray.rpc import ChannelPool, bind, make_server

log = structlog.get_logger(__name__)

DRIVER = "driver"
WORKER = "worker"

async def _invoke(method, request, timeout):
    """One unary call that rides out a restarting peer: it waits for the channel to be
    ready and retries calls cut off mid-flight, until ``timeout`` has passed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.05
    while True:
        left = None if deadline is None else max(0.01, deadline - time.monotonic())
        try:
            return await method(request, timeout=left, wait_for_ready=True)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or (deadline is not None and time.monotonic() >= deadline):
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


async def _invoke_logged(method, request, timeout):
    try:
        await method(request, timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        log.debug("rpc_failed", error=exc.code().name)


# the last session's event loop (kind, loop), stopped but open, for the next one
_spare_loop: tuple[str, asyncio.AbstractEventLoop] | None = None


def _take_spare_loop(kind: str) -> asyncio.AbstractEventLoop:
    """The previous session's loop when it is of ``kind``, else a new one."""
    global _spare_loop
    from microray.rpc import new_event_loop

    spare, _spare_loop = _spare_loop, None
    if spare is not None and spare[0] == kind and not spare[1].is_closed() and not spare[1].is_running():
        return spare[1]
    return new_event_loop(kind)


class CoreWorker:
    def __init__(
        self,
        mode: str,
        raylet_address: str,
        *,
        worker_id: str | None = None,
        namespace: str | None = None,
        job_id: str | None = None,
        entrypoint: str = "",
        io_loop: str = "auto",
    ) -> None:
        self.mode = mode
        self.worker_id = worker_id or ids.new_hex_id()
        self.raylet_address = raylet_address
        self.memory = MemoryStore()
        self.refs = ReferenceCounter(self._free)
        self.functions: dict[bytes, Any] = {}
        self.exported: set[bytes] = set()
        self.namespace = namespace
        self.job_id = job_id or ""
        self.connected = False
        self._fetching: set[bytes] = set()
        self.actor_connections: dict[str, Any] = {}
        self.actor_id: str | None = None
        self.actor_name: str | None = None
        self.job_runtime_env: dict = {}
        self.gcs_error: BaseException | None = None
        self.cluster_id = ""
        self._gcs_suspect = False  # the GCS connection broke: check the cluster id before the next call
        self._tls = threading.local()
        self._remove_borrower_queue: dict[str, list[bytes]] = {}
        self._remove_borrower_lock = threading.Lock()
        self._watched_borrowers: set[str] = set()
        self.object_sizes: dict[bytes, int] = {}  # sizes of objects in the store, for the state API
        from microray.process import mark_grpc_started

        mark_grpc_started()
        self._io_loop_kind = io_loop
        self.loop = _take_spare_loop(io_loop)
        # the loop's default executor (observer hooks) is this session's own: the loop
        # outlives the session, and a loop's shutdown_default_executor() is final
        import concurrent.futures

        self._executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="microray-hooks")
        self.loop.set_default_executor(self._executor)
        self._thread = threading.Thread(target=self._run_loop, name="microray-io", daemon=True)
        self._thread.start()
        try:
            self.run(self._connect(entrypoint), timeout=60)
        except BaseException:
            self.loop.call_soon_threadsafe(self.loop.stop)
            raise
        self.object_store = open_object_store(self.config, self.store_namespace, self.session_dir)
        from microray.plugin_manager import get_plugin_manager

        self._pm = get_plugin_manager(self.config.plugins)
        self._object_hooks = {
            hook for hook in ("microray_object_created", "microray_object_freed") if self._pm.has_observers(hook)
        }
        from microray.core.submitter import TaskSubmitter

        self.submitter = TaskSubmitter(self)
        self.executor = None
        if mode == WORKER:
            from microray.core.executor import TaskExecutor

            self.executor = TaskExecutor(self)
        self.connected = True
        self.loop.call_soon_threadsafe(self.ready.set)
        if mode == DRIVER:
            self.run(self._start_gcs_monitor())
        context.set_worker(self)
        structlog.contextvars.bind_contextvars(worker_id=self.worker_id, node_id=self.node_id)

    # -- the event loop thread ---------------------------------------------
    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro, timeout: float | None = None) -> Any:
        """Run a coroutine on the io loop from a user thread and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def spawn(self, coro) -> None:
        """Start a coroutine on the io loop without waiting (from any thread)."""
        if threading.current_thread() is self._thread:
            self.loop.create_task(coro)
        else:
            asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, method, request, timeout: float | None = None) -> Any:
        """A unary gRPC call from a user thread. The call object is created on the io
        loop (gRPC's asyncio objects belong to the loop that runs them). It waits out a
        restarting GCS for up to ``gcs_rpc_timeout_s``, then raises GcsUnavailableError."""
        if self.gcs_error is not None:
            raise self.gcs_error
        limit = self.config.gcs_rpc_timeout_s if timeout is None else timeout
        try:
            if self._gcs_suspect:
                self.run(self._verify_gcs(limit))
            return self.run(_invoke(method, request, limit))
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise GcsUnavailableError(
                    f"the GCS at {self.gcs_address} did not answer within {limit:.0f}s "
                    f"({exc.code().name}: {exc.details()})"
                ) from None
            raise

    def call_nowait(self, method, request, timeout: float | None = 30) -> None:
        """Fire a unary gRPC call from any thread; errors are logged, not raised."""
        self.spawn(_invoke_logged(method, request, timeout))

    def call_in_loop(self, fn, *args) -> None:
        if threading.current_thread() is self._thread:
            fn(*args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    async def _connect(self, entrypoint: str) -> None:
        self.ready = asyncio.Event()
        self.channels = ChannelPool()
        self.server = make_server()
        core_worker_pb2_grpc.add_CoreWorkerServicer_to_server(CoreWorkerService(self), self.server)
        raylet = raylet_pb2_grpc.RayletStub(self.channels.get(self.raylet_address))
        ip = self.raylet_address.rsplit(":", 1)[0]
        port = bind(self.server, ip, 0)
        await self.server.start()
        self.address = f"{ip}:{port}"
        reply = await raylet.RegisterWorker(
            raylet_pb2.RegisterWorkerRequest(
                worker_id=self.worker_id, pid=os.getpid(), port=port, is_driver=self.mode == DRIVER,
                id_prefix=ids.process_prefix(),
            ),
            timeout=30,
        )
        self.raylet = raylet
        self.node_id = reply.node_id
        self.config = config_mod.Config.from_json(reply.config_json)
        self.store_namespace = reply.object_store_namespace
        self.gcs_address = reply.gcs_address
        self.session_dir = reply.session_dir
        self.gcs = gcs_pb2_grpc.GcsStub(self.channels.get(self.gcs_address))
        cluster = await self.gcs.GetClusterConfig(common_pb2.Empty(), timeout=30, wait_for_ready=True)
        self.cluster_id = cluster.cluster_id
        if self.mode == DRIVER:
            job = await self.gcs.AddJob(
                gcs_pb2.JobInfo(driver_ip=ip, driver_pid=os.getpid(), entrypoint=entrypoint,
                                namespace=self.namespace or ""),
                timeout=30,
            )
            self.job_id = job.job_id

    # -- GCS health (drivers) ---------------------------------------------------
    async def _start_gcs_monitor(self) -> None:
        self._gcs_monitor = self.loop.create_task(self._monitor_gcs())
        self._gcs_channel_watch = self.loop.create_task(self._watch_gcs_channel())

    async def _watch_gcs_channel(self) -> None:
        """Mark the GCS suspect the moment its connection breaks, so that the first call
        after a restart checks the cluster id instead of trusting an empty GCS's answer
        (the 1 s monitor below may not have looked yet)."""
        channel = self.channels.get(self.gcs_address)
        state = channel.get_state(try_to_connect=False)
        while self.gcs_error is None:
            await channel.wait_for_state_change(state)
            state = channel.get_state(try_to_connect=False)
            if state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.IDLE,
                         grpc.ChannelConnectivity.SHUTDOWN):
                self._gcs_suspect = True

    async def _verify_gcs(self, timeout: float) -> None:
        """Wait for the GCS (up to ``timeout``) and make sure it still runs our cluster."""
        reply = await _invoke(self.gcs.GetClusterConfig, common_pb2.Empty(), timeout)
        self._check_cluster_id(reply.cluster_id)
        if self.gcs_error is not None:
            raise self.gcs_error
        self._gcs_suspect = False

    async def _monitor_gcs(self) -> None:
        """Tell the user, not hang, when the GCS is gone for good or came back empty."""
        unreachable_since: float | None = None
        while self.gcs_error is None:
            await asyncio.sleep(1.0)
            try:
                reply = await self.gcs.GetClusterConfig(common_pb2.Empty(), timeout=2)
            except grpc.aio.AioRpcError as exc:
                now = time.monotonic()
                if unreachable_since is None:
                    unreachable_since = now
                    log.warning("gcs_unreachable", gcs=self.gcs_address, error=exc.code().name)
                elif now - unreachable_since > self.config.gcs_rpc_timeout_s:
                    self._gcs_failed(GcsUnavailableError(
                        f"the GCS at {self.gcs_address} has been unreachable for "
                        f"{now - unreachable_since:.0f}s (gcs_rpc_timeout_s={self.config.gcs_rpc_timeout_s})"
                    ))
                continue
            if unreachable_since is not None:
                log.info("gcs_reachable_again", gcs=self.gcs_address, after_s=round(time.monotonic() - unreachable_since, 2))
                unreachable_since = None
            self._check_cluster_id(reply.cluster_id)

    def _check_cluster_id(self, cluster_id: str) -> None:
        """A GCS with another cluster id lost the cluster's state: fail, naming the cause."""
        if cluster_id != self.cluster_id and self.gcs_error is None:
            self._gcs_failed(RaySystemError(
                f"the GCS at {self.gcs_address} restarted without the cluster's state "
                f"(cluster id {self.cluster_id} -> {cluster_id}); with gcs_store="
                f"{self.config.gcs_store!r} nothing survives a GCS restart. Use a durable "
                "GCS store (redis, etcd) for a head that survives its own restart."
            ))

    def _gcs_failed(self, error: BaseException) -> None:
        self.gcs_error = error
        log.error("gcs_lost", error=str(error))
        err = serialization.serialize_error(error).to_bytes()
        for entry in list(self.submitter.tasks.values()):
            if not entry.done:
                self.submitter._fail(entry, err)

    # -- objects: put / get / wait ---------------------------------------------
    def put_object(self, value: Any, *, what: str = "value") -> ObjectRef:
        if isinstance(value, ObjectRef):
            raise TypeError(
                "Calling 'put' on an ObjectRef is not allowed. If you really want to do this, "
                "wrap the ObjectRef in a list and call 'put' on it."
            )
        oid = ids.object_id(ids.new_task_id(), 0)
        self.refs.add_owned(oid)
        if serialization.is_simple(value):
            self.memory.put(oid, VALUE, value)
            return ObjectRef(oid, self.address)
        ser = serialization.serialize(value, what=what)
        if ser.contained_refs:
            self.refs.add_contained(oid, [r.binary() for r in ser.contained_refs])
        self.store_serialized(oid, ser)
        return ObjectRef(oid, self.address)

    def store_serialized(self, oid: bytes, ser: serialization.Serialized) -> None:
        """Keep a serialized value: inline in memory when small, else in the node's store."""
        size = ser.total_size
        if size <= self.config.max_inline_object_bytes:
            self.memory.put(oid, SERIALIZED, ser.to_bytes())
            return
        self.write_to_store(oid, ser)
        self.memory.put(oid, IN_STORE, self.node_id)

    def write_to_store(self, oid: bytes, ser: serialization.Serialized) -> None:
        self.object_sizes[oid] = ser.total_size
        buf = self.object_store.create(oid, ser.total_size)
        try:
            ser.write_to(buf)
        except BaseException:
            del buf
            self.object_store.abort(oid)
            raise
        del buf
        try:
            self.object_store.seal(oid)
        except BaseException:
            self.object_store.abort(oid)
            raise
        if "microray_object_created" in self._object_hooks:
            self._observe("microray_object_created", {"object_id": oid.hex(), "size": ser.total_size, "node_id": self.node_id})

    def _observe(self, hook: str, info: dict) -> None:
        """Tell observer plugins, off the caller's path (a thread of the io loop's executor)."""
        self.loop.call_soon_threadsafe(
            lambda: self.loop.run_in_executor(None, lambda: self._pm.notify(hook, obj=info)))

    def get_objects(self, refs: Sequence[ObjectRef], timeout: float | None = None) -> list[Any]:
        ids_ = [r.binary() for r in refs]
        entries = self.memory.entries
        missing = [r for r in refs if r.binary() not in entries]
        if missing:
            self._fetch_borrowed(missing)  # objects already in the local store land at once
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
        return [self._value_of(oid) for oid in ids_]

    def _value_of(self, oid: bytes) -> Any:
        entry = self.memory.entries.get(oid)
        if entry is None:
            raise ObjectLostError(oid.hex())
        kind, payload = entry
        if kind == VALUE:
            return payload
        if kind == SERIALIZED:
            value, is_error = serialization.deserialize(payload)
            self.register_borrowed()
        elif kind == IN_STORE:
            view = self.object_store.get(oid)
            if view is None:
                raise ObjectLostError(oid.hex(), f"Object {oid.hex()} is not in the object store of node {payload}")
            value, is_error = serialization.deserialize(view)
            self.register_borrowed()
        elif kind == ERROR:
            value, is_error = payload, True
        else:  # pragma: no cover
            raise RaySystemError(f"unknown memory-store entry kind {kind}")
        if is_error:
            if isinstance(value, RayTaskError):
                raise value.as_instanceof_cause()
            raise value
        return value

    def wait_objects(
        self, refs: Sequence[ObjectRef], num_returns: int, timeout: float | None
    ) -> tuple[list[ObjectRef], list[ObjectRef]]:
        ids_ = [r.binary() for r in refs]
        missing = [r for r in refs if r.binary() not in self.memory.entries]
        if missing:
            self._fetch_borrowed(missing)
            missing = [r for r in missing if r.binary() not in self.memory.entries]
        blocked = bool(missing) and timeout != 0 and self._notify_blocked()
        try:
            still = self.memory.wait(ids_, num_returns, timeout)
        finally:
            if blocked:
                self._notify_unblocked()
        ready, not_ready = [], []
        for r in refs:
            if r.binary() not in still and len(ready) < num_returns:
                ready.append(r)
            else:
                not_ready.append(r)
        return ready, not_ready

    def resolve_async(self, ref: ObjectRef, fut) -> None:
        """Complete a concurrent future with the ref's value (``ObjectRef.future()``)."""

        def done(_oid: bytes) -> None:
            if fut.done():
                return
            try:
                fut.set_result(self._value_of(ref.binary()))
            except BaseException as exc:  # noqa: BLE001 -- the error is the result
                fut.set_exception(exc)

        self._fetch_borrowed([ref])
        if self.memory.on_ready(ref.binary(), done):
            done(ref.binary())

    # -- borrowed objects ------------------------------------------------------
    def _fetch_borrowed(self, refs: Sequence[ObjectRef]) -> None:
        for ref in refs:
            oid = ref.binary()
            if self.refs.owns(oid) or ref.owner_address in ("", self.address) or oid in self._fetching:
                continue
            if self.object_store.contains(oid):
                self.memory.put(oid, IN_STORE, self.node_id)
                continue
            self._fetching.add(oid)
            self.spawn(self._fetch_from_owner(oid, ref.owner_address))

    async def _fetch_from_owner(self, oid: bytes, owner: str) -> None:
        stub = core_worker_pb2_grpc.CoreWorkerStub(self.channels.get(owner))
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
            self._fetching.discard(oid)

    def on_ref_deserialized(self, ref: ObjectRef) -> None:
        """A ref arrived inside a value or argument: note it, to register as its borrower."""
        pending = getattr(self._tls, "new_refs", None)
        if pending is None:
            pending = self._tls.new_refs = []
        pending.append(ref)

    def register_borrowed(self) -> None:
        """Tell the owners of refs just deserialized in this thread that we hold them.

        Synchronous, so the owner knows before user code can drop the ref that brought
        them (the outer object or the task argument)."""
        pending = getattr(self._tls, "new_refs", None)
        if not pending:
            return
        self._tls.new_refs = []
        by_owner: dict[str, list[bytes]] = {}
        for ref in pending:
            oid = ref.binary()
            if self.refs.owns(oid) or self.refs.is_borrowing(oid) or not ref.owner_address:
                continue
            if ref.owner_address == self.address:
                continue
            by_owner.setdefault(ref.owner_address, []).append(oid)
        for owner, oids in by_owner.items():
            self.add_borrower_at(owner, oids, self.address)
            for oid in oids:
                self.refs.mark_borrowed(oid, owner)

    def add_borrower_at(self, owner: str, oids: list[bytes], borrower: str) -> None:
        """Register ``borrower`` for ``oids`` with their owner (a dead owner is ignored:
        fetching the object will then raise OwnerDiedError)."""
        if owner == self.address:
            for oid in oids:
                self.refs.add_borrower(oid, borrower)
            return
        request = core_worker_pb2.BorrowRequest(object_ids=oids, borrower=borrower)
        if self.in_loop_thread():  # cannot block the loop: best effort
            self.loop.create_task(self._owner_call("AddBorrower", owner, request, log_only=True))
            return
        try:
            self.run(self._owner_call("AddBorrower", owner, request))
        except grpc.aio.AioRpcError as exc:
            log.warning("add_borrower_failed", owner=owner, error=exc.code().name)

    async def _owner_call(self, method: str, owner: str, request: Any, log_only: bool = False) -> Any:
        """A call to another core worker; channels are made on the io loop only."""
        stub = core_worker_pb2_grpc.CoreWorkerStub(self.channels.get(owner))
        if log_only:
            return await _invoke_logged(getattr(stub, method), request, 10)
        return await _invoke(getattr(stub, method), request, 10)

    def _send_remove_borrower(self, owner: str, oid: bytes) -> None:
        with self._remove_borrower_lock:
            pending = self._remove_borrower_queue.setdefault(owner, [])
            pending.append(oid)
            first = len(pending) == 1
        if first:
            self.call_in_loop(lambda: self.loop.call_later(0.01, self._flush_remove_borrower, owner))

    def watch_borrower(self, borrower: str) -> None:
        """Owner side (io loop): when a borrower process dies, it holds nothing any more."""
        if borrower in self._watched_borrowers or borrower == self.address:
            return
        self._watched_borrowers.add(borrower)
        self.loop.create_task(self._watch_borrower(borrower))

    async def _watch_borrower(self, borrower: str) -> None:
        stub = core_worker_pb2_grpc.CoreWorkerStub(self.channels.get(borrower))
        try:
            async for _ in stub.Watch(common_pb2.Empty()):
                pass
        except grpc.aio.AioRpcError:
            pass
        except asyncio.CancelledError:
            return
        self._watched_borrowers.discard(borrower)
        if self.connected:
            n = self.refs.remove_borrower_everywhere(borrower)
            if n:
                log.info("borrower_gone", borrower=borrower, objects=n)

    def _flush_remove_borrower(self, owner: str) -> None:
        with self._remove_borrower_lock:
            oids = self._remove_borrower_queue.pop(owner, [])
        if oids and self.connected:
            stub = core_worker_pb2_grpc.CoreWorkerStub(self.channels.get(owner))
            self.loop.create_task(_invoke_logged(
                stub.RemoveBorrower, core_worker_pb2.BorrowRequest(object_ids=oids, borrower=self.address), 10))

    # -- blocked-in-get notices (a worker lends its CPU back while it waits) -----
    def _notify_blocked(self) -> bool:
        if self.mode != WORKER or context.current_task() is None or self.in_loop_thread():
            return False
        req = raylet_pb2.WorkerIdRequest(worker_id=self.worker_id)
        self.call_nowait(self.raylet.NotifyBlocked, req)
        return True

    def _notify_unblocked(self) -> None:
        req = raylet_pb2.WorkerIdRequest(worker_id=self.worker_id)
        self.call_nowait(self.raylet.NotifyUnblocked, req)

    # -- freeing ---------------------------------------------------------------
    def _free(self, oid: bytes, owned: bool, owner: str | None = None) -> None:
        if owner is not None and self.connected:
            self._send_remove_borrower(owner, oid)
        entry = self.memory.entries.pop(oid, None)
        self.object_sizes.pop(oid, None)
        if owned and entry is not None and "microray_object_freed" in self._object_hooks:
            self._observe("microray_object_freed", {"object_id": oid.hex(), "in_store": entry[0] == IN_STORE})
        if owned and entry is not None and entry[0] == IN_STORE and entry[1] == self.node_id:
            try:
                self.object_store.delete(oid)
            except Exception as exc:  # noqa: BLE001 -- freeing must never raise into __del__
                log.warning("object_free_failed", object_id=oid.hex(), error=repr(exc))

    def objects_info(self) -> list[dict[str, Any]]:
        """What this process owns, for the state API (see ``core.objects_info``)."""
        from microray.core.objects_info import objects_info

        return objects_info(self)

    # -- functions -------------------------------------------------------------
    def export_function(self, function_id: bytes, pickled: bytes) -> None:
        if function_id in self.exported:
            return
        self.call(self.gcs.KvPut, gcs_pb2.KvPutRequest(ns="fn", key=function_id, value=pickled, overwrite=False))
        self.exported.add(function_id)

    def load_function(self, function_id: bytes) -> Any:
        fn = self.functions.get(function_id)
        if fn is None:
            reply = self.call(self.gcs.KvGet, gcs_pb2.KvGetRequest(ns="fn", key=function_id), 60)
            if not reply.found:
                raise RaySystemError(f"function {function_id.hex()} was not found in the GCS")
            fn = serialization.loads_function(reply.value)
            self.functions[function_id] = fn
        return fn

    # -- generators ------------------------------------------------------------
    def next_generator_item(self, task_id: bytes, index: int, owner: str, timeout: float | None):
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

    # -- cluster info ----------------------------------------------------------
    def get_all_nodes(self) -> list[common_pb2.NodeInfo]:
        return list(self.call(self.gcs.GetAllNodes, common_pb2.Empty()).nodes)

    # -- shutdown --------------------------------------------------------------
    def shutdown(self) -> None:
        if not self.connected:
            return
        self.connected = False
        if context.worker is self:
            context.set_worker(None)
        try:
            self.run(self._disconnect(), timeout=10)
        except Exception as exc:  # noqa: BLE001 -- best effort at shutdown
            log.warning("disconnect_failed", error=repr(exc))
        for oid, (kind, node) in list(self.memory.entries.items()):
            if kind == IN_STORE and node == self.node_id and self.refs.owns(oid):
                try:
                    self.object_store.delete(oid)
                except Exception:  # noqa: BLE001
                    pass
        self.object_store.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        deadline = time.monotonic() + 2  # a hook still running is given this long
        for t in list(getattr(self._executor, "_threads", ())):
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        if not self._thread.is_alive():
            # The loop is kept, stopped but open, for this process's next session. Closing
            # it is not safe: grpc.aio's process-wide poller may still deliver completions
            # of this session's calls to it ("Event loop is closed" from the next session's
            # loop); a new loop per session leaked its epoll fd and self-pipe instead.
            global _spare_loop
            _spare_loop = (self._io_loop_kind, self.loop)
            # Let go of the session's gRPC objects now: left to the garbage collector they
            # may be collected in a process forked later, where dropping the last aio
            # channel shuts grpc.aio down and joins a poller thread the child lacks (spins).
            self.server = self.channels = self.gcs = self.raylet = None
            self.submitter = None

    async def _disconnect(self) -> None:
        await self.submitter.close()
        if self.mode == DRIVER and self.job_id:
            try:
                await self.gcs.MarkJobFinished(gcs_pb2.JobIdRequest(job_id=self.job_id), timeout=1)
            except grpc.aio.AioRpcError:
                pass
        await self.server.stop(grace=0)
        await self.channels.close()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1)
        # threads of run_in_executor (observer hooks) end with the session; joined in shutdown()
        self._executor.shutdown(wait=False)


