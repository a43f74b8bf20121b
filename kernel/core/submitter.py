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
from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol

import grpc
import structlog

from microray import ids, serialization
from microray.config import Config
from microray.core.lease_policy import SPILLBACK_RETRY_S, IdleAction, LeasePolicy, excluding
from microray.core.lineage import Lineage
from microray.core.memory_store import ERROR, IN_STORE, SERIALIZED, VALUE, MemoryStore
from microray.core.reference_counter import ReferenceCounter
from microray.core.task_spec import (APP_ERROR, ARG_REF, ARG_SERIALIZED, ARG_VALUE, DYNAMIC, GEN_END, GEN_ITEM, OK,
                                      STREAMING, TaskResult, TaskSpec, runtime_env_key)
from microray.core.task_stream import KeyState, Lease, RefLike, TaskEntry, TaskStream, task_name
from microray.exceptions import RaySystemError, TaskCancelledError, TaskUnschedulableError, WorkerCrashedError
from microray.protocol import common_pb2, core_worker_pb2, core_worker_pb2_grpc, raylet_pb2, raylet_pb2_grpc

log = structlog.get_logger(__name__)

NODE_STOPPED = ("the node this process is connected to was stopped (its raylet does not answer): "
                "tasks cannot run; start a cluster and connect again")
# what the local raylet's calls end with when its node stops: refused, or cut by its shutdown
_NODE_GONE_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


class SubmitterHost(Protocol):
    """What the submitter needs of its core worker (``CoreWorker`` satisfies it)."""

    loop: asyncio.AbstractEventLoop
    config: Config
    address: str
    worker_id: str
    memory: MemoryStore
    refs: ReferenceCounter
    lineage: Lineage
    object_sizes: dict[bytes, int]
    channels: Any  # ChannelPool (None after shutdown)
    raylet: Any  # RayletStub
    gcs: Any  # GcsStub (the task event buffer reports to it)

    def call_in_loop(self, fn: Callable[..., Any], *args: Any) -> None: ...
    def call_nowait(self, method: Callable[..., Any], request: Any, timeout: float | None = 30) -> None: ...
    def fetch_borrowed(self, refs: Sequence[Any]) -> None: ...
    def blocked_in_get(self) -> bool: ...


class TaskSubmitter:
    def __init__(self, cw: SubmitterHost) -> None:
        self.cw = cw
        self.loop: asyncio.AbstractEventLoop = cw.loop
        self.incoming: deque = deque()
        self._wake_scheduled = False
        self.keys: dict[tuple, KeyState] = {}
        self.tasks: dict[bytes, TaskEntry] = {}
        self.closed = False
        self.policy = LeasePolicy(cw.config.max_tasks_in_flight_per_worker, cw.config.idle_lease_keep_s)
        self.inline_limit = cw.config.max_inline_object_bytes
        self.lineage = cw.lineage  # specs kept to rebuild lost returns (core/lineage.py)
        self.infeasible_shapes: set[tuple] = set()  # resource shapes the user was warned about
        self.node_gone = False  # this process's raylet stopped answering: said once (node_stopped)
        from microray.core.task_events import TaskEventBuffer

        self.events = TaskEventBuffer(cw)
        cw.loop.call_soon_threadsafe(self.events.start)

    # -- from user threads -------------------------------------------------------
    def submit(self, spec: TaskSpec, key: tuple, arg_refs: list[bytes]) -> None:
        """Queue a task (any thread). ``key`` groups the tasks that can share a lease
        (the spec's resources, runtime env and strategy); ``arg_refs``: the objects its
        arguments reference."""
        self._enqueue(spec, key, None, arg_refs)

    def submit_actor_call(self, spec: TaskSpec, conn: Any, arg_refs: list[bytes]) -> None:
        """Queue an actor call (any thread): sent in order over ``conn``, the caller's
        ``ActorConnection`` to the actor."""
        self._enqueue(spec, ("actor", spec.actor_id), conn, arg_refs)

    def _enqueue(self, spec: TaskSpec, key: tuple, conn: Any, arg_refs: list[bytes]) -> None:
        if arg_refs:
            self.cw.refs.add_submitted(arg_refs)
        self.incoming.append((spec, key, conn, arg_refs))
        if not self._wake_scheduled:
            self._wake_scheduled = True
            self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        self._wake_scheduled = False
        touched = set()
        incoming = self.incoming
        while incoming:
            spec, key, conn, arg_refs = incoming.popleft()
            state = self.keys.get(key)
            if state is None:
                state = self.keys[key] = KeyState(spec.resources, spec.strategy, runtime_env_key(spec.runtime_env),
                                                  actor=conn)
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
                self.cw.fetch_borrowed([RefLike(oid, arg[2])])
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
            self.fail(entry, serialization.serialize_error(payload).to_bytes())

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
        plan = self.policy.plan(state.queue, state.leases, state.planned_requests(), state.avg_task_s,
                                key[-1][0] == "max_calls", self.closed,
                                paced=state.strategy in (None, "DEFAULT"))
        for lease, batch in plan.sends:
            if lease.idle_timer is not None:
                lease.idle_timer.cancel()
                lease.idle_timer = None
            lease.send(batch)
        for _ in range(plan.request):
            state.requesting += 1
            self.loop.create_task(self._request_lease(key, state))
        if plan.cancel_requests and state.start_cancel():
            # nothing left to run: the raylet should not grant the requests still waiting
            self.loop.create_task(self._cancel_lease_requests(key, state))
        for lease in plan.give_back:  # asked back by its raylet (other owners wait), now drained
            if lease.idle_timer is not None:
                lease.idle_timer.cancel()
                lease.idle_timer = None
            state.leases.remove(lease)
            self._release(lease, disconnect=False)
        if plan.idle:  # each idle lease goes back on its own after idle_lease_keep_s
            keep = self.policy.idle_keep(self.cw.blocked_in_get())
            for lease in plan.idle:
                if lease.idle_timer is None:
                    lease.idle_timer = self.loop.call_later(keep, self._return_idle, key, lease)

    def nodes_died(self, node_ids: Collection[str]) -> None:
        """The cluster declared these nodes dead: streams to workers there are lost now."""
        for state in list(self.keys.values()):
            for stream in [state.actor.stream] if state.actor is not None else list(state.leases):
                if stream is not None and stream.node_id in node_ids:
                    stream.abandon(f"its node {stream.node_id} was declared dead")

    def yield_leases(self, lease_ids: Collection[str]) -> None:
        """The raylet that granted these leases holds other owners' requests it cannot
        grant: each lease takes no new task and goes back once its running tasks are
        done (at once when idle). Ids of leases no longer held are ignored."""
        wanted = set(lease_ids)
        for key, state in list(self.keys.items()):
            asked = [lease for lease in state.leases if lease.lease_id in wanted and not lease.yielding]
            for lease in asked:
                lease.yielding = True
            if asked:
                log.debug("leases_yielded", leases=[lease.lease_id for lease in asked])
                self._pump(key)

    async def _cancel_lease_requests(self, key: tuple, state: KeyState) -> None:
        dropped = 0
        try:
            request = raylet_pb2.CancelLeasesRequest(lease_key=repr(key), owner_worker_id=self.cw.worker_id)
            dropped = (await self.cw.raylet.CancelLeaseRequests(request, timeout=5)).dropped
        except grpc.aio.AioRpcError:
            pass
        finally:
            state.cancel_done(dropped)

    async def _request_lease(self, key: tuple, state: KeyState) -> None:
        raylet = local = self.cw.raylet
        grant_or_reject = granted = False
        spilled_to = ""  # the node a spillback sent this request to
        exclude: list[str] = []  # nodes that refused it or did not answer: the policy chooses among the others
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
                    task_name=task_name(state.queue[0].spec) if state.queue else "",
                    report_infeasible=shape not in self.infeasible_shapes,
                    exclude_nodes=exclude,
                )
                try:
                    reply = await raylet.RequestWorkerLease(req)
                except grpc.aio.AioRpcError as exc:
                    if self.closed:
                        return
                    if spilled_to:
                        # the node a spillback sent us to is gone (or unreachable): ask the
                        # local raylet again, without it, rather than fail the tasks
                        log.info("spillback_target_failed", node_id=spilled_to, error=exc.code().name)
                        exclude = excluding(exclude, spilled_to)
                        raylet, grant_or_reject, spilled_to = local, False, ""
                        await asyncio.sleep(SPILLBACK_RETRY_S)
                        continue
                    if raylet is local and exc.code() in _NODE_GONE_CODES:
                        self._node_stopped()
                        self._fail_queue(key, NODE_STOPPED)
                        return
                    log.warning("lease_request_failed", error=exc.code().name, details=exc.details())
                    self._fail_queue(key, f"could not lease a worker: {exc.details()}")
                    return
                if reply.HasField("spillback") and reply.spillback.port:
                    address = f"{reply.spillback.ip}:{reply.spillback.port}"
                    raylet = raylet_pb2_grpc.RayletStub(self.cw.channels.get(address))
                    grant_or_reject, spilled_to = True, reply.spillback.node_id
                    continue
                if reply.rejected:  # the spillback target cannot grant it now: ask the policy again
                    exclude = excluding(exclude, spilled_to)
                    raylet, grant_or_reject, spilled_to = local, False, ""
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
            lease, granted = Lease(self, key, reply, raylet), True
            if self.closed:
                await raylet.ReturnWorker(raylet_pb2.ReturnWorkerRequest(lease_id=lease.lease_id))
                return
            state.leases.append(lease)
            lease.start()
        finally:
            state.request_done(granted)
        self._pump(key)

    def _warn_infeasible(self, shape: tuple, state: KeyState, reply: Any) -> None:
        if shape in self.infeasible_shapes:
            return
        self.infeasible_shapes.add(shape)
        demand = dict(shape)
        total = dict(sorted(reply.cluster_total.amounts.items()))
        log.warning(
            "infeasible_task",
            task=task_name(state.queue[0].spec) if state.queue else "",
            demand=demand,
            cluster_total=total,
            hint=(f"The following resource request cannot be scheduled right now: {demand}. No node of the "
                  f"cluster has that much (cluster total: {total}); the task waits until a node with these "
                  "resources joins."),
        )

    def _return_idle(self, key: tuple, lease: "Lease") -> None:
        lease.idle_timer = None
        state = self.keys.get(key)
        if state is None:
            return
        action = self.policy.on_idle_timer(lease, len(state.queue))
        if action is IdleAction.PUMP:
            self._pump(key)
        if action is not IdleAction.RETURN:
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

    def channel(self, address: str) -> Any:
        """The gRPC channel to a worker (io loop only)."""
        return self.cw.channels.get(address)

    # -- results -----------------------------------------------------------------
    def on_results(self, lease: TaskStream, results: list[TaskResult]) -> None:
        memory = self.cw.memory
        state = self.keys[lease.key]
        stored = []
        refs = self.cw.refs
        output = getattr(self.cw, "log_stream", None)  # (a driver's) waits at shutdown for lines results followed
        for res in results:
            status = res.status
            if res.output_seq and output is not None:
                output.expect(lease.address, res.worker_pid, res.output_seq)
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
                state.avg_task_s[fid] = self.policy.average(state.avg_task_s.get(fid), res.extra)
            if entry.cancelled and status != OK:  # a task that finished first keeps its value
                self._finish(entry)
                if status != GEN_END:  # (a stream that ended itself keeps its items and its end)
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
            if res.sizes and status == OK and any(item[1] == IN_STORE for item in res.returns):
                # its returns may be lost with a node: keep what it takes to run it again
                # (before _finish lets go of its arguments, whose lineage it may need)
                self._keep_lineage(entry, res.returns)
            self._finish(entry)
            if entry.spec.num_returns == DYNAMIC:  # the generator's values: this caller owns them
                for item in res.returns[1:]:
                    refs.add_owned(item[0])
            stored.extend(res.returns)
            if res.worker_exiting and isinstance(lease, Lease) and not lease.closing:
                # max_calls reached: the worker exits now; lease another for what is left
                lease.close()
                if lease in state.leases:
                    state.leases.remove(lease)
            if status == APP_ERROR:
                # a generator that failed part-way carries its error in extra (its first returns hold values)
                failure = res.extra if isinstance(res.extra, bytes) else res.returns[0][2] if res.returns else None
                self.events.state(res.task_id, "FAILED", error_bytes=failure, worker_pid=res.worker_pid)
            else:
                self.events.state(res.task_id, "FINISHED", duration_s=res.extra)
        if stored:
            memory.put_many(stored)
        self._pump(lease.key)

    def _keep_lineage(self, entry: TaskEntry, returns: list) -> None:
        owns = self.cw.refs.owns
        pin, unpin = self.lineage.record(entry.spec, entry.key, [item[0] for item in returns if owns(item[0])])
        if pin:
            self.cw.refs.add_submitted(pin)
        if unpin:
            self.cw.refs.remove_submitted(unpin)

    def _return_ids(self, spec: TaskSpec) -> list[bytes]:
        if spec.num_returns == STREAMING:
            return [ids.object_id(spec.task_id, 0xFFFFFFFF)]
        return [ids.object_id(spec.task_id, i + 1) for i in range(max(spec.num_returns, 1))]

    def _finish(self, entry: TaskEntry) -> None:
        entry.done = True
        self.tasks.pop(entry.spec.task_id, None)
        if entry.arg_refs:
            self.cw.refs.remove_submitted(entry.arg_refs)

    def fail(self, entry: TaskEntry, err: bytes) -> None:
        """Finish ``entry`` with ``err`` (a serialized error) as the value of its returns."""
        self._finish(entry)
        spec = entry.spec
        self.events.state(spec.task_id, "CANCELLED" if entry.cancelled else "FAILED", error_bytes=err)
        items: list[tuple[bytes, int, Any]] = [(oid, SERIALIZED, err) for oid in self._return_ids(spec)]
        if spec.num_returns == STREAMING:
            items = [(ids.object_id(spec.task_id, 1), SERIALIZED, err),
                     (ids.object_id(spec.task_id, 0xFFFFFFFF), VALUE, 1)]
        self.cw.memory.put_many(items)

    def has_queued(self, key: tuple) -> bool:
        """Whether tasks of ``key`` wait: queued, or submitted and not yet taken in."""
        state = self.keys.get(key)
        return bool(state is not None and state.queue) or any(item[1] == key for item in self.incoming)

    def fail_all(self, err: bytes) -> None:
        """Fail every task not finished yet with ``err`` (a serialized error)."""
        for entry in list(self.tasks.values()):
            if not entry.done:
                self.fail(entry, err)

    def _node_stopped(self) -> None:
        """This process's raylet does not answer: its node was stopped (``microray stop``)
        or died. Said once; what fails after it says the same, without a warning each."""
        if not self.node_gone:
            self.node_gone = True
            log.error("node_stopped", message=NODE_STOPPED)

    def _fail_queue(self, key: tuple, message: str, error_type: type[Exception] = RaySystemError) -> None:
        err = serialization.serialize_error(error_type(message)).to_bytes()
        state = self.keys[key]
        while state.queue:
            self.fail(state.queue.popleft(), err)

    def on_stream_lost(self, lease: TaskStream, error: BaseException | None) -> None:
        state = self.keys.get(lease.key)
        if state is not None and state.actor is not None:
            state.actor.on_stream_lost(state, lease, error)
            return
        assert state is not None and isinstance(lease, Lease)  # keys stay; other streams are actors'
        if lease in state.leases:
            state.leases.remove(lease)
        lost = list(lease.inflight.values())
        lease.inflight.clear()
        if not lease.closing or lost:
            self._release(lease, disconnect=True)
        failed: list[TaskEntry] = []
        forced = any(e.force for e in lost)  # a cancel with force=True killed the worker
        for entry in lost:
            if entry.cancelled and not entry.force:
                self.fail(entry, serialization.serialize_error(TaskCancelledError(entry.spec.task_id.hex())).to_bytes())
            elif forced and not entry.cancelled and not entry.running:  # queued behind it: never started
                self.events.state(entry.spec.task_id, "PENDING_NODE_ASSIGNMENT", attempt=entry.spec.attempt)
                state.queue.appendleft(entry)
            elif entry.spec.attempt < entry.spec.max_retries and not entry.cancelled:
                entry.spec.attempt += 1
                (log.info if self.node_gone else log.warning)(
                    "task_retry", task=entry.spec.function_name, attempt=entry.spec.attempt,
                    reason="worker died", worker_pid=lease.pid)
                self.events.state(entry.spec.task_id, "PENDING_NODE_ASSIGNMENT", attempt=entry.spec.attempt)
                state.queue.appendleft(entry)
            else:
                failed.append(entry)
        if lost and not self.closed:
            self.loop.create_task(self._worker_died(lease, failed, len(lost)))
        else:
            for entry in failed:
                msg = (f"The worker (pid {lease.pid}) running task {entry.spec.function_name} died "
                       f"unexpectedly; no retries left (max_retries={entry.spec.max_retries}).")
                self.fail(entry, serialization.serialize_error(WorkerCrashedError(msg)).to_bytes())
        if not self.closed:
            self._pump(lease.key)

    async def _worker_died(self, lease: Lease, failed: list[TaskEntry], lost: int) -> None:
        """Ask the worker's raylet how it ended (unless its node is known dead); log it, and fail
        the tasks with no retry left with a ``WorkerCrashedError`` that says so."""
        reason = lease.lost_reason
        try:
            if not reason:
                ask = raylet_pb2.WorkerExitRequest(worker_id=lease.worker_id, wait_s=5.0)
                reason = (await lease.raylet.GetWorkerExit(ask, timeout=10)).reason
        except grpc.aio.AioRpcError as exc:
            if lease.raylet is self.cw.raylet and exc.code() in _NODE_GONE_CODES:
                self._node_stopped()
                reason = "its node was stopped"
            else:
                reason = f"unknown: its raylet did not answer ({exc.code().name})"
        (log.info if self.node_gone else log.warning)("worker_died", worker_id=lease.worker_id, worker_pid=lease.pid, reason=reason or "unknown",
                    tasks_lost=lost, tasks_failed=len(failed))
        how = f" ({reason})" if reason else " unexpectedly"
        for entry in failed:
            if entry.done:
                continue
            err: BaseException
            if entry.force:
                err = WorkerCrashedError(f"The task {entry.spec.function_name} was cancelled with force=True: its worker "
                                         f"(pid {lease.pid}) was killed.")
            elif entry.cancelled:
                err = TaskCancelledError(entry.spec.task_id.hex())
            else:
                err = WorkerCrashedError(
                    f"The worker (pid {lease.pid}) running task {entry.spec.function_name} died{how}; "
                    f"no retries left (max_retries={entry.spec.max_retries})."
                )
            self.fail(entry, serialization.serialize_error(err).to_bytes())

    # -- cancel ------------------------------------------------------------------
    def cancel(self, task_id: bytes, force: bool) -> bool:
        entry = self.tasks.get(task_id)
        if entry is None or entry.done:
            return False
        entry.cancelled, entry.force = True, force
        if entry.lease is None:
            self.fail(entry, serialization.serialize_error(TaskCancelledError(task_id.hex())).to_bytes())
            return True
        lease = entry.lease
        stub = core_worker_pb2_grpc.CoreWorkerStub(self.cw.channels.get(lease.address))
        self.cw.call_nowait(stub.CancelTask, core_worker_pb2.CancelTaskRequest(task_id=task_id, force=force))
        return True

    # -- shutdown ----------------------------------------------------------------
    async def close(self) -> None:
        """Flush the task events, return every lease and cancel the lease requests still
        pending: independent calls, made at once rather than one after another."""
        self.closed = True
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
        flushed, *_ = await asyncio.gather(self.events.close(), self._cancel_own_lease_requests(), *returns,
                                           return_exceptions=True)
        if isinstance(flushed, BaseException):
            raise flushed

    async def _cancel_own_lease_requests(self) -> None:
        try:
            await self.cw.raylet.CancelLeaseRequests(
                raylet_pb2.CancelLeasesRequest(owner_worker_id=self.cw.worker_id), timeout=2
            )
        except grpc.aio.AioRpcError:
            pass
