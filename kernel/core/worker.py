"""The core worker: the part of every driver and worker process that talks to the cluster.

It owns the objects its process creates (their values, their reference counts), submits
tasks, serves its objects to borrowers, and — in a worker process — runs the tasks pushed
to it. gRPC runs on an asyncio loop in a background thread ("microray-io"); user code
calls in from its own threads.

``CoreWorker`` connects and composes its parts, each a small class given the narrow
interface it needs (a ``typing.Protocol`` the core worker satisfies):

- ``io_loop.IoLoop``: the loop thread and the ways onto it (``run``, ``spawn``,
  ``call_in_loop``, ``call_nowait``);
- ``gcs_link.GcsLink``: GCS calls that ride out a restart, and the driver's GCS watch;
- ``objects.Objects``: put / get / wait, fetching borrowed objects, freeing;
- ``borrowing.Borrowing``: the borrower and owner sides of borrowed refs;
- ``submitter.TaskSubmitter`` (tasks and actor calls out) and, in a worker,
  ``executor.TaskExecutor`` (tasks in).

Their most used operations are bound onto the core worker under the names callers use
(``put_object``, ``get_objects``, ``run``, ``call``, ...): bound once, so a call through
the core worker costs no more than one on the part itself.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from typing import Any

import grpc
import structlog

from microray import config as config_mod
from microray import ids, serialization, session
from microray.core import context
from microray.core.borrowing import Borrowing
from microray.core.gcs_link import GcsLink
from microray.core.io_loop import IoLoop
from microray.core.objects import Objects
from microray.core.service import CoreWorkerService
from microray.exceptions import RaySystemError
from microray.object_store_access import open_object_store
from microray.protocol import common_pb2, core_worker_pb2_grpc, gcs_pb2, gcs_pb2_grpc, raylet_pb2, raylet_pb2_grpc
from microray.rpc import ChannelPool, Credentials, bind, make_server

log = structlog.get_logger(__name__)

DRIVER = "driver"
WORKER = "worker"


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
        credentials: Credentials,
    ) -> None:
        self.mode = mode
        self.is_worker = mode == WORKER
        # the cluster token (and TLS) this process's server demands and its channels show
        self.credentials = credentials
        self.worker_id = worker_id or ids.new_hex_id()
        self.raylet_address = raylet_address
        self.functions: dict[bytes, Any] = {}
        self.exported: set[bytes] = set()
        self.namespace = namespace
        self.job_id = job_id or ""
        self.connected = False
        self.actor_connections: dict[str, Any] = {}
        self.actor_id: str | None = None
        self.actor_name: str | None = None
        self.job_runtime_env: dict[str, Any] = {}
        self.gpu_ids: list[int] = []  # the GPUs of the task running here (set by the executor)
        self.cluster_id = ""
        # a driver ended by an uncaught exception: (job state, why) for MarkJobFinished
        self.job_end: tuple[str, str] | None = None
        from microray.fork_safety import mark_grpc_started

        mark_grpc_started()
        io = self.io = IoLoop(io_loop)
        self.loop = io.loop
        (self.run, self.spawn, self.call_in_loop, self.call_nowait, self.in_loop_thread) = (
            io.run, io.spawn, io.call_in_loop, io.call_nowait, io.in_loop_thread)
        objects = self.objects = Objects(self, io)
        self.memory = objects.memory
        self.refs = objects.refs
        self.object_sizes = objects.sizes  # sizes of objects in the store, for the state API
        try:
            self.run(self._connect(entrypoint), timeout=60)
        except BaseException:
            io.stop_soon()
            raise
        self.gcs_link = GcsLink(self, io, self._gcs_lost)
        self.call = self.gcs_link.call
        borrowing = self.borrowing = Borrowing(self, objects.refs, io)
        self.on_ref_deserialized = borrowing.on_ref_deserialized
        self.register_borrowed = borrowing.register_borrowed
        self.add_borrower_at = borrowing.add_borrower_at
        self.watch_borrower = borrowing.watch_borrower
        self.object_store = open_object_store(self.config, self.store_namespace, self.session_dir)
        from microray.plugin_manager import get_plugin_manager

        objects.attach(self.object_store, borrowing, get_plugin_manager(self.config.plugins))
        (self.put_object, self.get_objects, self.wait_objects, self.resolve_async, self.next_generator_item,
         self.store_serialized, self.write_to_store, self.fetch_borrowed, self.blocked_in_get) = (
            objects.put, objects.get, objects.wait, objects.resolve_async, objects.next_generator_item,
            objects.store_serialized, objects.write_to_store, objects.fetch_borrowed, objects.blocked_in_get)
        self.lineage = objects.lineage
        from microray.core.submitter import TaskSubmitter

        self.submitter: Any = TaskSubmitter(self)
        from microray.core.recovery import ObjectRecovery

        self.recovery: Any = ObjectRecovery(self)
        self.executor: Any = None
        if self.is_worker:
            from microray.core.executor import TaskExecutor

            self.executor = TaskExecutor(self)
            from microray.core.task_output import OutputCapture

            self.output = OutputCapture(self, self.raylet_address.rsplit(":", 1)[0])
            self.output.install()
        self.connected = True
        self.loop.call_soon_threadsafe(self.ready.set)
        if mode == DRIVER:
            self.run(self.gcs_link.start_watch())
        context.set_worker(self)
        structlog.contextvars.bind_contextvars(worker_id=self.worker_id, node_id=self.node_id)

    async def _connect(self, entrypoint: str) -> None:
        self.ready = asyncio.Event()
        self.channels: Any = ChannelPool(self.credentials)
        self.server: Any = make_server(self.credentials)
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
        self.raylet: Any = raylet
        self.node_id = reply.node_id
        self.config = config_mod.Config.from_json(reply.config_json)  # secrets masked
        self.store_namespace = reply.object_store_namespace
        self.gcs_address = reply.gcs_address
        self.session_dir = reply.session_dir
        if self.mode != DRIVER:  # a worker of this node: its secrets too (backend options)
            self.config = session.node_config(self.session_dir, self.config)
        self.gcs: Any = gcs_pb2_grpc.GcsStub(self.channels.get(self.gcs_address))
        cluster = await self.gcs.GetClusterConfig(common_pb2.Empty(), timeout=30, wait_for_ready=True)
        self.cluster_id = cluster.cluster_id
        if self.mode == DRIVER:
            job = await self.gcs.AddJob(
                gcs_pb2.JobInfo(driver_ip=ip, driver_pid=os.getpid(), entrypoint=entrypoint,
                                namespace=self.namespace or "",
                                submission_id=os.environ.get("MICRORAY_JOB_SUBMISSION_ID", "")),
                timeout=30,
            )
            self.job_id = job.job_id

    def object_locations(self, object_id: bytes) -> list[str]:
        """The nodes holding a copy of an object this process owns (for its recovery)."""
        return self.objects.locations(object_id)[1]

    def _gcs_lost(self, error: BaseException) -> None:
        """The GCS is gone for good (or lost the cluster): fail the tasks waiting on it."""
        self.submitter.fail_all(serialization.serialize_error(error).to_bytes())

    @property
    def gcs_error(self) -> BaseException | None:
        """Why the GCS is lost (None while it is not)."""
        return self.gcs_link.error

    def objects_info(self) -> list[dict[str, Any]]:
        """What this process owns, for the state API (see ``core.objects_info``)."""
        from microray.core.objects_info import objects_info

        return objects_info(self)

    # -- functions -------------------------------------------------------------
    def export_function(self, function_id: bytes, pickled: bytes) -> None:
        """Put a pickled function or class in the GCS KV (once per process)."""
        if function_id in self.exported:
            return
        self.call(self.gcs.KvPut, gcs_pb2.KvPutRequest(ns="fn", key=function_id, value=pickled, overwrite=False))
        self.exported.add(function_id)

    def load_function(self, function_id: bytes) -> Any:
        """A function or class exported by ``export_function`` (cached)."""
        fn = self.functions.get(function_id)
        if fn is None:
            reply = self.call(self.gcs.KvGet, gcs_pb2.KvGetRequest(ns="fn", key=function_id), 60)
            if not reply.found:
                raise RaySystemError(f"function {function_id.hex()} was not found in the GCS")
            try:
                fn = serialization.loads_function(reply.value)
            except ModuleNotFoundError as exc:
                raise ModuleNotFoundError(
                    f"{exc} (on this worker, cwd {os.getcwd()}): a module of the driver's own folder reaches "
                    "the workers only through runtime_env={'working_dir': ...} or {'py_modules': [...]}",
                    name=exc.name) from exc
            self.functions[function_id] = fn
        return fn

    # -- runtime envs ------------------------------------------------------------
    def resolve_runtime_env(self, env: dict[str, Any] | None) -> dict[str, Any] | None:
        """``env`` with its local working_dir / py_modules paths packed, stored in the GCS
        (once per content) and replaced by package URIs (``microray.runtime_env``)."""
        if not env or ("working_dir" not in env and "py_modules" not in env):
            return env
        resolver = getattr(self, "_env_resolver", None)
        if resolver is None:
            from microray import runtime_env

            def kv_get(key: bytes) -> bytes | None:
                reply = self.call(self.gcs.KvGet, gcs_pb2.KvGetRequest(ns=runtime_env.KV_NS, key=key), 60)
                return reply.value if reply.found else None

            def kv_put(key: bytes, value: bytes) -> None:
                self.call(self.gcs.KvPut, gcs_pb2.KvPutRequest(ns=runtime_env.KV_NS, key=key, value=value,
                                                               overwrite=True), 60)

            resolver = self._env_resolver = runtime_env.Resolver(kv_get, kv_put, self.config.runtime_env_max_bytes)
        return resolver.resolve(env)

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
        self.objects.delete_owned_in_store()
        self.object_store.close()
        if self.io.stop():
            # Let go of the session's gRPC objects now (the parts read them from here):
            # left to the garbage collector they may be collected in a process forked
            # later, where dropping the last aio channel shuts grpc.aio down and joins a
            # poller thread the child lacks (spins).
            self.server = self.channels = self.gcs = self.raylet = None
            self.submitter = None

    async def _disconnect(self) -> None:
        await self.submitter.close()
        await self.objects.free_remote_owned()
        if self.mode == DRIVER and self.job_id:
            try:
                state, message = self.job_end or ("", "")
                await self.gcs.MarkJobFinished(
                    gcs_pb2.JobIdRequest(job_id=self.job_id, state=state, message=message), timeout=1)
            except grpc.aio.AioRpcError:
                pass
        await self.server.stop(grace=0)
        await self.channels.close()
        # ours only: gRPC's own tasks (Cython coroutines) end with its server and
        # channels, and one cancelled from here prints a CancelledError traceback
        pending = [t for t in asyncio.all_tasks()
                   if t is not asyncio.current_task() and inspect.iscoroutine(t.get_coro())]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1)
        # threads of run_in_executor (observer hooks) end with the session; joined in shutdown()
        self.io.hooks_executor.shutdown(wait=False)
