"""The owner's side of the task path: resolve dependencies, lease workers, push tasks.

Everything here runs on the core worker's io loop, except ``submit`` which user
threads call; it only appends to a queue and wakes the loop once per burst.

Tasks are grouped by *scheduling key* (resource shape, runtime env, strategy).
For each key the submitter holds leases on workers granted by raylets and
streams task batches to them over one ``PushTasks`` call per lease; a lease is
reused for every task of its key and returned after ``idle_lease_keep_s`` with
nothing to do. Short tasks are pipelined (several in flight per worker);
long ones are not, so a slow task never holds back others that another worker
could run.
"""

from __future__ import annotations

import asyncio
import pickle
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import grpc
import structlog

from microray import ids, serialization
from microray.core.memory_store import ERROR, SERIALIZED, VALUE
from microray.core.task_spec import (
    APP_ERROR,
    ARG_REF,
    ARG_SERIALIZED,
    ARG_VALUE,
    GEN_END,
    GEN_ITEM,
    OK,
    STREAMING,
    TaskResult,
    TaskSpec,
)
from microray.exceptions import RaySystemError, TaskCancelledError, TaskUnschedulableError, WorkerCrashedError
from microray.protocol import common_pb2, core_worker_pb2, core_worker_pb2_grpc, raylet_pb2, raylet_pb2_grpc

log = structlog.get_logger(__name__)

MAX_LEASE_REQUESTS_PER_KEY = 10
LONG_TASK_S = 0.002  # tasks slower than this on average are not pipelined


@dataclass
class TaskEntry:
    spec: TaskSpec
    key: tuple
    arg_refs: list[bytes]
    unresolved: int = 0
    lease: Any = None
    cancelled: bool = False
    done: bool = False


@dataclass
class KeyState:
    resources: dict
    strategy: Any
    env: str
    queue: deque = field(default_factory=deque)
    leases: list = field(default_factory=list)
    requesting: int = 0
    avg_task_s: dict = field(default_factory=dict)  # function id -> moving average run time
    actor: Any = None  # an ActorConnection for an actor's calls (in order, one stream)


class TaskStream:
    """One open ``PushTasks`` stream to a worker: batches out, results back."""

    def __init__(self, submitter: "TaskSubmitter", key: tuple, address: str) -> None:
        self.submitter = submitter
        self.key = key
        self.address = address
        self.pid = 0
        self.inflight: dict[bytes, TaskEntry] = {}
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.dead = False
        self.closing = False
        self.reader: asyncio.Task | None = None

    async def _requests(self):
        while True:
            batch = await self.outbox.get()
            if batch is None:
                return
            specs = [batch]
            while not self.outbox.empty():
                nxt = self.outbox.get_nowait()
                if nxt is None:
                    yield core_worker_pb2.TaskBatch(specs=[s for b in specs for s in b])
                    return
                specs.append(nxt)
            yield core_worker_pb2.TaskBatch(specs=[s for b in specs for s in b])

    def start(self) -> None:
        stub = core_worker_pb2_grpc.CoreWorkerStub(self.submitter.cw.channels.get(self.address))
        call = stub.PushTasks(self._requests())
        self.reader = asyncio.get_running_loop().create_task(self._read(call))

    async def _read(self, call) -> None:
        error: BaseException | None = None
        try:
            async for batch in call:
                self.submitter.on_results(self, [pickle.loads(r) for r in batch.results])
        except grpc.aio.AioRpcError as exc:
            error = exc
        except asyncio.CancelledError:
            self.close()
            return
        self.dead = True
        self.close()  # ends the request generator, so grpc's sending task finishes too
        self.submitter.on_stream_lost(self, error)

    def send(self, entries: list[TaskEntry]) -> None:
        payload = []
        record = self.submitter.events.state
        worker_id = getattr(self, "worker_id", "")
        node_id = getattr(self, "node_id", "")
        for e in entries:
            e.lease = self
            self.inflight[e.spec.task_id] = e
            payload.append(pickle.dumps(e.spec, protocol=5))
            record(e.spec.task_id, "SUBMITTED_TO_WORKER", worker_id=worker_id, node_id=node_id,
                   worker_pid=self.pid, attempt=e.spec.attempt)
        self.outbox.put_nowait(payload)

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.outbox.put_nowait(None)


class Lease(TaskStream):
    """A worker granted by a raylet, with the open task stream to it."""

    def __init__(self, submitter: "TaskSubmitter", key: tuple, reply: raylet_pb2.LeaseReply, raylet: Any) -> None:
        super().__init__(submitter, key, f"{reply.worker.ip}:{reply.worker.port}")
        self.lease_id = reply.lease_id
        self.worker_id = reply.worker.worker_id
        self.node_id = reply.worker.node_id
        self.pid = reply.worker_pid
        self.raylet = raylet
        self.idle_timer: asyncio.TimerHandle | None = None


class TaskSubmitter:
    def __init__(self, cw: Any) -> None:
        self.cw = cw
        self.loop: asyncio.AbstractEventLoop = cw.loop
        self.incoming: deque = deque()
        self._wake_scheduled = False
        self.keys: dict[tuple, KeyState] = {}
        self.tasks: dict[bytes, TaskEntry] = {}
        self.closed = False
        self.max_in_flight = cw.config.max_tasks_in_flight_per_worker
        self.idle_keep = cw.config.idle_lease_keep_s
        self.inline_limit = cw.config.max_inline_object_bytes
        self.infeasible_shapes: set[tuple] = set()  # resource shapes the user was warned about
        from microray.core.task_events import TaskEventBuffer

        self.events = TaskEventBuffer(cw)
        cw.loop.call_soon_threadsafe(self.events.start)

    # -- from user threads -------------------------------------------------------
    def submit(self, spec: TaskSpec, key: tuple, resources: dict, strategy: Any, env: str, arg_refs: list[bytes]) -> None:
        """Queue a task (any thread). ``key`` groups tasks that can share a lease; an
        actor call's key is ``("actor", actor_id)`` and ``strategy`` its ActorConnection."""
        if arg_refs:
            self.cw.refs.add_submitted(arg_refs)
        self.incoming.append((spec, key, resources, strategy, env, arg_refs))
        if not self._wake_scheduled:
            self._wake_scheduled = True
            self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        self._wake_scheduled = False
        touched = set()
        incoming = self.incoming
        while incoming:
            spec, key, resources, strategy, env, arg_refs = incoming.popleft()
            state = self.keys.get(key)
            if state is None:
                state = self.keys[key] = KeyState(resources, strategy, env)
                if key[0] == "actor":
                    state.actor = strategy
            entry = TaskEntry(spec, key, arg_refs)
            self.tasks[spec.task_id] = entry
            self.events.submitted(spec, "PENDING_ARGS_AVAIL" if arg_refs else "PENDING_NODE_ASSIGNMENT")
            if arg_refs and not self._resolve(entry) and state.actor is None:
                continue  # queued when its arguments are ready
            if entry.done:
                continue
            state.queue.append(entry)
            touched.add(key)
        for key in touched:
            self._pump(key)

    # -- dependencies ------------------------------------------------------------
    def _resolve(self, entry: TaskEntry) -> bool:
        """Inline ready small arguments; wait for the rest. True when all are ready."""
        memory = self.cw.memory
        args = entry.spec.args
        for i, arg in enumerate(args):
            if arg[0] != ARG_REF:
                continue
            oid = arg[1]
            got = memory.entries.get(oid)
            if got is None:
                # a borrowed object already in this node's store lands at once, before
                # on_ready is registered (which then returns True and calls nothing)
                self.cw.fetch_borrowed([_RefLike(oid, arg[2])])
                entry.unresolved += 1  # before on_ready: it may call _dep_ready right away
                if not memory.on_ready(oid, lambda _o, e=entry: self.cw.call_in_loop(self._dep_ready, e)):
                    continue
                entry.unresolved -= 1
                got = memory.entries.get(oid)
                if got is None:  # pragma: no cover -- freed in between: the worker reports it lost
                    continue
            self._inline_arg(entry, i, got)
        return entry.unresolved == 0 and not entry.done

    def _inline_arg(self, entry: TaskEntry, i: int, got: tuple) -> None:
        kind, payload = got
        args = entry.spec.args
        if kind == VALUE:
            args[i] = (ARG_VALUE, payload)
        elif kind == SERIALIZED:
            args[i] = (ARG_SERIALIZED, payload)
        elif kind == ERROR:
            self._fail(entry, serialization.serialize_error(payload).to_bytes())

    def _dep_ready(self, entry: TaskEntry) -> None:
        entry.unresolved -= 1
        if entry.unresolved > 0 or entry.done:
            return
        for i, arg in enumerate(entry.spec.args):
            if arg[0] == ARG_REF:
                got = self.cw.memory.entries.get(arg[1])
                if got is not None:
                    self._inline_arg(entry, i, got)
        if entry.done:
            return
        state = self.keys[entry.key]
        if state.actor is None:  # actor calls wait in their queue, in order
            state.queue.append(entry)
        self._pump(entry.key)

    # -- leases and pushing ------------------------------------------------------
    def _pump(self, key: tuple) -> None:
        state = self.keys[key]
        if state.actor is not None:
            state.actor.pump(state)
            return
        queue = state.queue
        live = [lease for lease in state.leases if not lease.dead and not lease.closing]
        # Pipeline (queue a task behind another on a busy worker) only when there is more
        # work than workers we hold or have asked for, and only tasks of functions seen to
        # be short: a few tasks submitted together each get a worker, and a function not
        # seen yet (a scheduling key spans functions of one resource shape) never waits
        # behind another task for its first run.
        if len(queue) <= len(live) + state.requesting or key[-1][0] == "max_calls":
            depth = 1
        else:
            depth = self.max_in_flight
        if queue:
            short = state.avg_task_s
            for lease in live:
                room = depth - len(lease.inflight)
                if room <= 0:
                    continue
                batch = []
                while queue and room > 0:
                    e = queue[0]
                    if (lease.inflight or batch) and short.get(e.spec.function_id, LONG_TASK_S + 1) > LONG_TASK_S:
                        break  # it would wait behind other work: keep it for a free worker
                    queue.popleft()
                    if e.cancelled or e.done:
                        continue
                    batch.append(e)
                    room -= 1
                if batch:
                    if lease.idle_timer is not None:
                        lease.idle_timer.cancel()
                        lease.idle_timer = None
                    lease.send(batch)
                if not queue:
                    break
        if queue:
            wanted = min(len(queue), MAX_LEASE_REQUESTS_PER_KEY)
            while state.requesting < wanted and not self.closed:
                state.requesting += 1
                self.loop.create_task(self._request_lease(key, state))
            return
        if state.requesting and not self.closed:
            # nothing left to run: the raylet should not grant the requests still waiting
            self.loop.create_task(self._cancel_lease_requests(key))
        for lease in live:  # each idle lease goes back on its own after idle_lease_keep_s
            if not lease.inflight and lease.idle_timer is None:
                lease.idle_timer = self.loop.call_later(self.idle_keep, self._return_idle, key, lease)

    async def _cancel_lease_requests(self, key: tuple) -> None:
        try:
            await self.cw.raylet.CancelLeaseRequests(
                raylet_pb2.CancelLeasesRequest(lease_key=repr(key), owner_worker_id=self.cw.worker_id), timeout=5)
        except grpc.aio.AioRpcError:
            pass

    async def _request_lease(self, key: tuple, state: KeyState) -> None:
        raylet = self.cw.raylet
        grant_or_reject = False
        shape = tuple(sorted(state.resources.items()))
        try:
            while True:
                req = raylet_pb2.LeaseRequest(
                    lease_key=repr(key),
                    resources=common_pb2.ResourceMap(amounts=state.resources),
                    strategy=pickle.dumps(state.strategy),
                    owner_worker_id=self.cw.worker_id,
                    owner_address=self.cw.address,
                    grant_or_reject=grant_or_reject,
                    runtime_env_hash=state.env,
                    task_name=_task_name(state.queue[0].spec) if state.queue else "",
                    report_infeasible=shape not in self.infeasible_shapes,
                )
                try:
                    reply = await raylet.RequestWorkerLease(req)
                except grpc.aio.AioRpcError as exc:
                    if not self.closed:
                        log.warning("lease_request_failed", error=exc.code().name, details=exc.details())
                        self._fail_queue(key, f"could not lease a worker: {exc.details()}")
                    return
                if reply.HasField("spillback") and reply.spillback.port:
                    address = f"{reply.spillback.ip}:{reply.spillback.port}"
                    raylet = raylet_pb2_grpc.RayletStub(self.cw.channels.get(address))
                    grant_or_reject = True
                    continue
                if reply.infeasible:  # warn once per shape, then ask again: a node may join
                    self._warn_infeasible(shape, state, reply)
                    continue
                break
            if reply.error:  # the raylet says no node can ever run these tasks
                if not self.closed:
                    self._fail_queue(key, reply.error, TaskUnschedulableError)
                return
            if not reply.granted:  # cancelled: ask again if work arrived meanwhile
                if state.queue and not self.closed:
                    self.loop.call_soon(self._pump, key)
                return
            lease = Lease(self, key, reply, raylet)
            if self.closed:
                await raylet.ReturnWorker(raylet_pb2.ReturnWorkerRequest(lease_id=lease.lease_id))
                return
            state.leases.append(lease)
            lease.start()
        finally:
            state.requesting -= 1
        self._pump(key)

    def _warn_infeasible(self, shape: tuple, state: KeyState, reply: Any) -> None:
        if shape in self.infeasible_shapes:
            return
        self.infeasible_shapes.add(shape)
        demand = dict(shape)
        total = dict(sorted(reply.cluster_total.amounts.items()))
        log.warning(
            "infeasible_task",
            task=_task_name(state.queue[0].spec) if state.queue else "",
            demand=demand,
            cluster_total=total,
            hint=(f"The following resource request cannot be scheduled right now: {demand}. No node of the "
                  f"cluster has that much (cluster total: {total}); the task waits until a node with these "
                  "resources joins."),
        )

    def _return_idle(self, key: tuple, lease: "Lease") -> None:
        lease.idle_timer = None
        state = self.keys.get(key)
        if state is None or lease.inflight or lease.dead or lease.closing:
            return
        if state.queue:
            self._pump(key)
            return
        state.leases.remove(lease)
        self._release(lease, disconnect=False)

    def _release(self, lease: Lease, disconnect: bool) -> None:
        lease.close()
        self.loop.create_task(self._return_worker(lease, disconnect))

    async def _return_worker(self, lease: Lease, disconnect: bool) -> None:
        try:
            await lease.raylet.ReturnWorker(
                raylet_pb2.ReturnWorkerRequest(lease_id=lease.lease_id, disconnect=disconnect), timeout=5
            )
        except grpc.aio.AioRpcError:
            pass

    # -- results -----------------------------------------------------------------
    def on_results(self, lease: TaskStream, results: list[TaskResult]) -> None:
        memory = self.cw.memory
        state = self.keys[lease.key]
        stored = []
        refs = self.cw.refs
        for res in results:
            status = res.status
            if res.sizes:
                self.cw.object_sizes.update(res.sizes)
            if res.contained:
                for outer, pairs in res.contained.items():
                    refs.add_contained(outer, [rid for rid, _ in pairs])
                    for rid, owner in pairs:
                        if owner != self.cw.address:
                            refs.mark_borrowed(rid, owner)
            if status == GEN_ITEM:
                for item in res.returns:
                    self.cw.refs.add_owned(item[0])
                stored.extend(res.returns)
                continue
            entry = lease.inflight.pop(res.task_id, None)
            if entry is None:
                continue
            if status == GEN_END:
                stored.append((ids.object_id(res.task_id, 0xFFFFFFFF), VALUE, res.extra))
            elif res.extra is not None and status == OK:
                fid = entry.spec.function_id
                prev = state.avg_task_s.get(fid)
                state.avg_task_s[fid] = res.extra if prev is None else 0.8 * prev + 0.2 * res.extra
            if entry.cancelled and status != OK:  # a task that finished first keeps its value
                self._finish(entry)
                err = serialization.serialize_error(TaskCancelledError(entry.spec.task_id.hex())).to_bytes()
                stored.extend((oid, SERIALIZED, err) for oid in self._return_ids(entry.spec))
                self.events.state(res.task_id, "CANCELLED")
                continue
            if status == APP_ERROR and res.retryable and entry.spec.attempt < entry.spec.max_retries:
                entry.spec.attempt += 1
                log.info("task_retry", task=entry.spec.function_name, attempt=entry.spec.attempt, reason="exception")
                self.events.state(res.task_id, "PENDING_NODE_ASSIGNMENT", attempt=entry.spec.attempt)
                state.queue.appendleft(entry)
                continue
            self._finish(entry)
            stored.extend(res.returns)
            if res.worker_exiting and isinstance(lease, Lease) and not lease.closing:
                # max_calls reached: the worker exits now; lease another for what is left
                lease.close()
                if lease in state.leases:
                    state.leases.remove(lease)
            if status == APP_ERROR:
                err = res.returns[0][2] if res.returns else res.extra
                self.events.state(res.task_id, "FAILED", error_bytes=err, worker_pid=res.worker_pid)
            else:
                self.events.state(res.task_id, "FINISHED", duration_s=res.extra)
        if stored:
            memory.put_many(stored)
        self._pump(lease.key)

    def _return_ids(self, spec: TaskSpec) -> list[bytes]:
        if spec.num_returns == STREAMING:
            return [ids.object_id(spec.task_id, 0xFFFFFFFF)]
        return [ids.object_id(spec.task_id, i + 1) for i in range(max(spec.num_returns, 1))]

    def _finish(self, entry: TaskEntry) -> None:
        entry.done = True
        self.tasks.pop(entry.spec.task_id, None)
        if entry.arg_refs:
            self.cw.refs.remove_submitted(entry.arg_refs)

    def _fail(self, entry: TaskEntry, err: bytes) -> None:
        self._finish(entry)
        spec = entry.spec
        self.events.state(spec.task_id, "CANCELLED" if entry.cancelled else "FAILED", error_bytes=err)
        items = [(oid, SERIALIZED, err) for oid in self._return_ids(spec)]
        if spec.num_returns == STREAMING:
            items = [(ids.object_id(spec.task_id, 1), SERIALIZED, err),
                     (ids.object_id(spec.task_id, 0xFFFFFFFF), VALUE, 1)]
        self.cw.memory.put_many(items)

    def fail_all(self, err: bytes) -> None:
        """Fail every task not finished yet with ``err`` (a serialized error)."""
        for entry in list(self.tasks.values()):
            if not entry.done:
                self._fail(entry, err)

    def _fail_queue(self, key: tuple, message: str, error_type: type[Exception] = RaySystemError) -> None:
        err = serialization.serialize_error(error_type(message)).to_bytes()
        state = self.keys[key]
        while state.queue:
            self._fail(state.queue.popleft(), err)

    def on_stream_lost(self, lease: TaskStream, error: BaseException | None) -> None:
        state = self.keys.get(lease.key)
        if state is not None and state.actor is not None:
            state.actor.on_stream_lost(state, lease, error)
            return
        if state is not None and lease in state.leases:
            state.leases.remove(lease)
        lost = list(lease.inflight.values())
        lease.inflight.clear()
        if not lease.closing or lost:
            self._release(lease, disconnect=True)
        failed = []
        for entry in lost:
            if entry.cancelled:
                self._fail(entry, serialization.serialize_error(TaskCancelledError(entry.spec.task_id.hex())).to_bytes())
            elif entry.spec.attempt < entry.spec.max_retries:
                entry.spec.attempt += 1
                log.warning("task_retry", task=entry.spec.function_name, attempt=entry.spec.attempt,
                            reason="worker died", worker_pid=lease.pid)
                self.events.state(entry.spec.task_id, "PENDING_NODE_ASSIGNMENT", attempt=entry.spec.attempt)
                state.queue.appendleft(entry)
            else:
                failed.append(entry)
        if lost and isinstance(lease, Lease) and not self.closed:
            self.loop.create_task(self._worker_died(lease, failed, len(lost)))
        else:
            for entry in failed:
                msg = (f"The worker (pid {lease.pid}) running task {entry.spec.function_name} died "
                       f"unexpectedly; no retries left (max_retries={entry.spec.max_retries}).")
                self._fail(entry, serialization.serialize_error(WorkerCrashedError(msg)).to_bytes())
        if state is not None and not self.closed:
            self._pump(lease.key)

    async def _worker_died(self, lease: Lease, failed: list[TaskEntry], lost: int) -> None:
        """Ask the worker's raylet how it ended; log it, and fail the tasks that have no
        retry left with a ``WorkerCrashedError`` that says so."""
        reason = ""
        try:
            reply = await lease.raylet.GetWorkerExit(
                raylet_pb2.WorkerExitRequest(worker_id=lease.worker_id, wait_s=5.0), timeout=10
            )
            reason = reply.reason
        except grpc.aio.AioRpcError as exc:
            reason = f"unknown: its raylet did not answer ({exc.code().name})"
        log.warning("worker_died", worker_id=lease.worker_id, worker_pid=lease.pid, reason=reason or "unknown",
                    tasks_lost=lost, tasks_failed=len(failed))
        how = f" ({reason})" if reason else " unexpectedly"
        for entry in failed:
            if entry.done:
                continue
            if entry.cancelled:
                err = TaskCancelledError(entry.spec.task_id.hex())
            else:
                err = WorkerCrashedError(
                    f"The worker (pid {lease.pid}) running task {entry.spec.function_name} died{how}; "
                    f"no retries left (max_retries={entry.spec.max_retries})."
                )
            self._fail(entry, serialization.serialize_error(err).to_bytes())

    # -- cancel ------------------------------------------------------------------
    def cancel(self, task_id: bytes, force: bool) -> bool:
        entry = self.tasks.get(task_id)
        if entry is None or entry.done:
            return False
        entry.cancelled = True
        if entry.lease is None:
            self._fail(entry, serialization.serialize_error(TaskCancelledError(task_id.hex())).to_bytes())
            return True
        lease = entry.lease
        stub = core_worker_pb2_grpc.CoreWorkerStub(self.cw.channels.get(lease.address))
        self.cw.call_nowait(stub.CancelTask, core_worker_pb2.CancelTaskRequest(task_id=task_id, force=force))
        return True

    # -- shutdown ----------------------------------------------------------------
    async def close(self) -> None:
        self.closed = True
        await self.events.close()
        returns = []
        for state in self.keys.values():
            if state.actor is not None:
                state.actor.close()
                continue
            for lease in state.leases:
                if lease.idle_timer is not None:
                    lease.idle_timer.cancel()
                lease.close()
                if lease.reader is not None:
                    lease.reader.cancel()
                returns.append(self._return_worker(lease, disconnect=bool(lease.inflight)))
        if returns:
            await asyncio.gather(*returns, return_exceptions=True)
        try:
            await self.cw.raylet.CancelLeaseRequests(
                raylet_pb2.CancelLeasesRequest(owner_worker_id=self.cw.worker_id), timeout=2
            )
        except grpc.aio.AioRpcError:
            pass


class _RefLike:
    """Just enough of an ObjectRef for ``fetch_borrowed`` (no ref counting)."""

    __slots__ = ("_id", "owner_address")

    def __init__(self, oid: bytes, owner: str) -> None:
        self._id = oid
        self.owner_address = owner

    def binary(self) -> bytes:
        return self._id



def _task_name(spec: TaskSpec) -> str:
    """The name a lease request carries (for the raylet's logs and the scheduling
    policy): the task's own name if it was given one, else its function's name."""
    return spec.name or spec.function_name
