"""The GCS's actor manager: the async shell around :mod:`microray.gcs.actor_state`.

The GCS — not the creating process — owns an actor's lifecycle, so detached actors
outlive their creator and restarts happen even when the caller is gone. The decisions
(what state an actor is in, whether it restarts, why it died) are made by the pure
:class:`~microray.gcs.actor_state.ActorStateMachine`; this module carries out its
instructions — leases from raylets, the actor's ``PushTasks`` stream, store writes,
publishing — and feeds what happened back to it as events.

Each live actor has one open ``PushTasks`` stream from the GCS: the creation task goes
over it, and its end means the actor's process died. After a GCS restart the manager
re-opens that stream to every actor it finds ALIVE.
"""

from __future__ import annotations

import asyncio
import pickle
import time
from typing import Any

import grpc
import structlog

from microray.gcs import actor_state as sm
from microray.gcs.actor_record import ActorRecord, ActorState, LeasedWorker, decode, encode
from microray.protocol import common_pb2, core_worker_pb2, core_worker_pb2_grpc, raylet_pb2, raylet_pb2_grpc
from microray.rpc import ChannelPool

log = structlog.get_logger(__name__)

T_ACTORS = "actors"

# How long a new (or recovered) actor's worker may take to accept a connection before its
# process is taken for gone. gRPC retries the connect meanwhile (backoff 0.1-1 s): under load
# a just-forked worker can refuse the first attempts while it runs fine.
CONNECT_TIMEOUT_S = 5.0


class _Stream:
    """One open ``PushTasks`` stream to an actor's process, and the task reading it."""

    def __init__(self) -> None:
        self.outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None


class _Requests:
    """The requests of a ``PushTasks`` stream: the outbox's specs until ``None``. A plain
    async iterator, not an async generator: one the loop would have to ``aclose()`` at
    shutdown while gRPC's reader still waits in it ("aclose(): asynchronous generator is
    already running")."""

    def __init__(self, outbox: asyncio.Queue[bytes | None]) -> None:
        self.outbox = outbox

    def __aiter__(self) -> "_Requests":
        return self

    async def __anext__(self) -> core_worker_pb2.TaskBatch:
        item = await self.outbox.get()
        if item is None:
            raise StopAsyncIteration
        return core_worker_pb2.TaskBatch(specs=[item])


class ActorManager:
    def __init__(self, gcs: Any) -> None:
        self.gcs = gcs  # the GcsServicer: store, nodes, actor_changed
        self.channels = ChannelPool(gcs.credentials)
        self.machine = sm.ActorStateMachine()
        self.leases: dict[str, asyncio.Task[None]] = {}
        self.streams: dict[str, _Stream] = {}
        self.waiters: dict[str, asyncio.Event] = {}
        self._store_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()

    @property
    def records(self) -> dict[str, ActorRecord]:
        return self.machine.records

    # -- requests from the GCS servicer ---------------------------------------------------
    async def load(self) -> None:
        """Recover every actor from the store after a (re)start."""
        records = tuple(decode(raw) for raw in (await self.gcs.store.get_all(T_ACTORS)).values())
        await self._apply(sm.GcsRecovered(records))

    async def register(self, record: ActorRecord) -> None:
        """Take a newly registered actor (persisted before this returns) and create it."""
        await self._apply(sm.ActorRegistered(record, time.time()))

    async def kill(self, actor_id: str, no_restart: bool, reason: str = "") -> bool:
        """Kill the actor; False if it is unknown or already DEAD."""
        record = self.records.get(actor_id)
        if record is None or record.state is ActorState.DEAD:
            return False
        await self._apply(sm.KillRequested(actor_id, no_restart, reason, time.time()))
        return True

    async def job_finished(self, job_id: str) -> None:
        """Non-detached actors die with the job that created them."""
        await self._apply(sm.JobFinished(job_id, time.time()))

    def node_died(self, node_id: str, reason: str) -> None:
        """The actors running on a dead node restart elsewhere (or die): handled in the
        background, so that whoever declared the node dead is not kept waiting."""
        self.spawn_background(self._apply(sm.NodeDied(node_id, reason, time.time())))

    def spawn_background(self, coro: Any) -> None:
        """Run ``coro`` in a task held until it ends (the loop keeps only weak references)
        and cancelled and awaited by ``close``."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def wait_reattached(self, actor_id: str, timeout: float = 10.0) -> None:
        """Until a record recovered as ALIVE is confirmed or updated, so that no caller gets
        the address of a process that died while the GCS was down."""
        if actor_id not in self.machine.reattaching:
            return
        event = self.waiters.setdefault(actor_id, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    async def close(self) -> None:
        """Cancel every lease, stream and background task and wait for them to end (a task
        left pending when the loop closes is reported as destroyed in gcs.err)."""
        tasks = [*self.leases.values(), *(s.task for s in self.streams.values() if s.task), *self._background]
        for task in tasks:
            task.cancel()
        for stream in self.streams.values():
            stream.outbox.put_nowait(None)
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.channels.close()

    # -- carrying out instructions ---------------------------------------------------------
    async def _apply(self, event: sm.Event) -> None:
        ignored = self.machine.ignored
        instructions = self.machine.handle(event)
        if self.machine.ignored != ignored:
            log.debug("actor_event_ignored", event=type(event).__name__, actor_id=getattr(event, "actor_id", None))
        for ins in instructions:
            await self._execute(ins)

    async def _execute(self, ins: sm.Instruction) -> None:
        if isinstance(ins, sm.Persist):
            # the record as it is now (a later change may have overtaken the one that asked)
            async with self._store_lock:
                record = self.records[ins.actor_id]
                await self.gcs.store.put(T_ACTORS, ins.actor_id.encode(), encode(record))
        elif isinstance(ins, sm.Publish):
            actor = ins.actor
            log.info("actor_state", actor_id=actor["actor_id"], state=actor["state"],
                     restarts=actor["num_restarts"], cause=actor["death_cause"])
            self.gcs.actor_changed(actor)
        elif isinstance(ins, sm.LeaseWorker):
            self._spawn(self.leases, ins.actor_id, self._lease(ins))
        elif isinstance(ins, sm.CancelLease):
            self._cancel(self.leases.pop(ins.actor_id, None))
        elif isinstance(ins, sm.Watch):
            self._stop_watching(ins.actor_id)
            stream = self.streams[ins.actor_id] = _Stream()
            stream.task = asyncio.get_running_loop().create_task(self._watch(ins, stream))
        elif isinstance(ins, sm.StopWatching):
            self._stop_watching(ins.actor_id)
        elif isinstance(ins, sm.KillWorker):
            await self._kill_worker(ins.actor_id, ins.address)
        elif isinstance(ins, sm.ReleaseWaiters):
            event = self.waiters.pop(ins.actor_id, None)
            if event is not None:
                event.set()
        else:  # pragma: no cover -- a new instruction without a branch here
            raise TypeError(f"ActorManager cannot carry out {ins!r}")

    def _spawn(self, tasks: dict[str, asyncio.Task[None]], actor_id: str, coro: Any) -> None:
        self._cancel(tasks.get(actor_id))
        task = asyncio.get_running_loop().create_task(coro)
        tasks[actor_id] = task
        task.add_done_callback(lambda t: tasks.pop(actor_id, None) if tasks.get(actor_id) is t else None)

    @staticmethod
    def _cancel(task: asyncio.Task[None] | None) -> None:
        # an instruction carried out by the very task it stops (its own event led to it)
        # must not cancel the rest of that task's instructions
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def _stop_watching(self, actor_id: str) -> None:
        stream = self.streams.pop(actor_id, None)
        if stream is not None:
            stream.outbox.put_nowait(None)
            self._cancel(stream.task)

    # -- leases ------------------------------------------------------------------------------
    async def _lease(self, ins: sm.LeaseWorker) -> None:
        """Lease a worker from a raylet (following a spillback), retrying until granted."""
        delay = 0.01
        while True:
            nodes = [n for n in self.gcs.nodes.values() if n.state == "ALIVE"]
            if nodes:
                node = next((n for n in nodes if n.is_head), nodes[0])
                reply = await self._request_lease(ins, f"{node.ip}:{node.raylet_port}")
                if reply is not None and reply.error:  # no node can ever run it
                    if self.leases.get(ins.actor_id) is asyncio.current_task():
                        del self.leases[ins.actor_id]
                    await self._apply(sm.LeaseRefused(ins.actor_id, ins.incarnation, reply.error, time.time()))
                    return
                if reply is not None:
                    worker = LeasedWorker(
                        address=f"{reply.worker.ip}:{reply.worker.port}", pid=reply.worker_pid,
                        node_id=reply.worker.node_id, worker_id=reply.worker.worker_id, lease_id=reply.lease_id)
                    if self.leases.get(ins.actor_id) is asyncio.current_task():
                        del self.leases[ins.actor_id]  # granted: nothing outstanding to cancel
                    await self._apply(sm.WorkerLeased(ins.actor_id, ins.incarnation, worker))
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _request_lease(self, ins: sm.LeaseWorker, address: str) -> raylet_pb2.LeaseReply | None:
        """The raylet's grant, or its refusal for good (``error``); None to ask again later."""
        req = ins.request
        grant_or_reject = False
        first, spilled_to = address, ""
        exclude: list[str] = []  # nodes that refused or did not answer a spillback
        for _ in range(4):
            stub = raylet_pb2_grpc.RayletStub(self.channels.get(address))
            request = raylet_pb2.LeaseRequest(
                lease_key=ins.lease_key,
                resources=common_pb2.ResourceMap(amounts=req.resources),
                strategy=pickle.dumps(req.strategy),
                owner_worker_id="gcs",
                grant_or_reject=grant_or_reject,
                task_name=req.task_name,
                actor_spec=pickle.dumps({"actor_id": ins.actor_id, "hold": ins.hold}),
                runtime_env_hash=ins.env_key,
                exclude_nodes=exclude,
            )
            try:
                reply = await stub.RequestWorkerLease(request)
            except grpc.aio.AioRpcError as exc:
                log.warning("actor_lease_failed", actor_id=ins.actor_id, error=exc.code().name)
                if not spilled_to:
                    return None
                reply = raylet_pb2.LeaseReply(rejected=True)  # the spillback target did not answer
            if reply.HasField("spillback") and reply.spillback.port:
                address = f"{reply.spillback.ip}:{reply.spillback.port}"
                grant_or_reject, spilled_to = True, reply.spillback.node_id
                continue
            if reply.rejected:  # ask the first raylet again, without that node
                exclude.append(spilled_to)
                address, grant_or_reject, spilled_to = first, False, ""
                continue
            return reply if reply.granted or reply.error else None
        return None

    # -- the actor's stream ----------------------------------------------------------------------
    async def _watch(self, ins: sm.Watch, stream: _Stream) -> None:
        """Open the stream (sending the creation task, if any), report what comes back, and
        report the process gone when the stream ends."""
        reason = await self._watch_once(ins, stream)
        if self.streams.get(ins.actor_id) is not stream:
            return  # StopWatching: nothing more is reported from this stream
        del self.streams[ins.actor_id]
        await self._apply(sm.WorkerDied(ins.actor_id, ins.incarnation, reason, time.time()))

    async def _watch_once(self, ins: sm.Watch, stream: _Stream) -> str:
        """Run the stream until it ends; return how (an ``ExitReason``)."""
        channel = self.channels.get(ins.address)
        try:
            # connecting first tells "never reached" from "reached, then gone" without
            # reading error texts: a stream that never connected delivered nothing
            await asyncio.wait_for(channel.channel_ready(), CONNECT_TIMEOUT_S)
        except asyncio.TimeoutError:
            log.warning("actor_worker_unreachable", actor_id=ins.actor_id, address=ins.address)
            return sm.ExitReason.UNREACHABLE
        if ins.creation_spec is not None:
            stream.outbox.put_nowait(ins.creation_spec)

        stub = core_worker_pb2_grpc.CoreWorkerStub(channel)
        call = stub.PushTasks(_Requests(stream.outbox))
        try:
            if ins.creation_spec is None:
                # re-attached after a GCS restart: check the actor answers at all
                await stub.GetObject(core_worker_pb2.GetObjectRequest(object_id=b"\0" * 20, timeout=0.01), timeout=5)
                await self._apply(sm.WorkerReattached(ins.actor_id, ins.incarnation))
            async for batch in call:
                for raw in batch.results:
                    result = pickle.loads(raw)
                    if result.status == 0:  # OK: created
                        await self._apply(sm.ConstructorDone(ins.actor_id, ins.incarnation, time.time()))
                    else:
                        await self._apply(sm.ConstructorFailed(ins.actor_id, ins.incarnation, result.extra,
                                                               time.time()))
                    if self.streams.get(ins.actor_id) is not stream:
                        return sm.ExitReason.STREAM_ENDED
        except grpc.aio.AioRpcError as exc:
            log.info("actor_stream_ended", actor_id=ins.actor_id, address=ins.address,
                     code=exc.code().name, details=exc.details())
        finally:
            call.cancel()
            stream.outbox.put_nowait(None)  # ends gRPC's reader of the requests: no task left pending
        return sm.ExitReason.STREAM_ENDED

    async def _kill_worker(self, actor_id: str, address: str) -> None:
        stub = core_worker_pb2_grpc.CoreWorkerStub(self.channels.get(address))
        try:
            await stub.Exit(core_worker_pb2.ExitRequest(force=True, reason="actor killed"), timeout=2)
        except grpc.aio.AioRpcError as exc:
            log.debug("actor_worker_exit_failed", actor_id=actor_id, address=address, code=exc.code().name)
