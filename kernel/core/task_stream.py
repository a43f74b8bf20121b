"""A task on its way to a worker: its entry in the owner's queue, the state of its
scheduling key, and the ``PushTasks`` streams (and leases) that carry it.

Runs on the core worker's io loop. The streams report to their owner
(``submitter.TaskSubmitter``, through ``StreamOwner``).
"""

from __future__ import annotations

import asyncio
import pickle
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
import structlog

from microray.core.task_spec import TaskResult, TaskSpec
from microray.protocol import core_worker_pb2, core_worker_pb2_grpc, raylet_pb2

log = structlog.get_logger(__name__)


class StreamOwner(Protocol):
    """What a stream reports to (``TaskSubmitter`` satisfies it)."""

    events: Any  # TaskEventBuffer: .state(task_id, state, **fields) records a task's state

    def channel(self, address: str) -> Any: ...  # the gRPC channel to a worker
    def on_results(self, stream: TaskStream, results: list[TaskResult]) -> None: ...
    def on_stream_lost(self, stream: TaskStream, error: BaseException | None) -> None: ...


@dataclass
class TaskEntry:
    spec: TaskSpec
    key: tuple
    arg_refs: list[bytes]
    unresolved: int = 0
    lease: Any = None
    cancelled: bool = False
    done: bool = False
    force: bool = False  # cancelled with force=True: its worker is killed (WorkerCrashedError)
    running: bool = False  # reported RUNNING on its current attempt


@dataclass
class KeyState:
    """The tasks of one scheduling key and the leases that run them. ``resources``,
    ``strategy`` and ``env`` (the runtime env's key) come from the key's first spec."""

    resources: dict
    strategy: Any
    env: str
    queue: deque = field(default_factory=deque)
    leases: list = field(default_factory=list)
    requesting: int = 0  # lease requests on their way (each ends in request_done)
    cancelling: bool = False  # a CancelLeaseRequests for the key is on its way
    doomed: int = 0  # requests of ``requesting`` dropped by a cancel, answer not back yet
    dropped_back: int = 0  # requests answered "not granted" since the last cancel was sent
    avg_task_s: dict = field(default_factory=dict)  # function id -> moving average run time
    actor: Any = None  # an ActorConnection for an actor's calls (in order, one stream)

    def planned_requests(self) -> int:
        """The requests still to be counted on as workers on their way: a burst right
        after another is pipelined at once, not one task at a time until the requests a
        cancel dropped are answered."""
        return self.requesting - self.doomed

    def start_cancel(self) -> bool:
        """A cancel of the waiting requests is to be sent: False while one is on its way
        (each result's pump would send another); else every request now on its way is
        doomed until the cancel says how many it dropped."""
        if self.cancelling:
            return False
        self.cancelling, self.doomed, self.dropped_back = True, self.requesting, 0
        return True

    def cancel_done(self, dropped: int) -> None:
        """The cancel returned, having dropped ``dropped`` requests (0 if it failed).
        Those whose answer has not come back yet stay doomed (the raylet answers them
        after the cancel, so their answers often arrive after it); a request that reached
        the raylet after the cancel waits there again, counted on until the next cancel
        drops it."""
        self.cancelling = False
        self.doomed = min(self.requesting, max(0, dropped - self.dropped_back))

    def request_done(self, granted: bool) -> None:
        """A lease request ended: granted, or not (dropped by a cancel, refused, failed)."""
        self.requesting -= 1
        if not granted:
            self.dropped_back += 1
        if self.doomed and (self.cancelling or not granted):
            self.doomed -= 1


class StreamLost(Exception):
    """Why a stream was abandoned (``TaskStream.abandon``), as its owner is told."""


class TaskStream:
    """One open ``PushTasks`` stream to a worker: batches out, results back."""

    def __init__(self, submitter: StreamOwner, key: tuple, address: str) -> None:
        self.submitter = submitter
        self.key = key
        self.address = address
        self.pid = 0
        self.worker_id = ""  # where the tasks run (named in their task events)
        self.node_id = ""
        self.inflight: dict[bytes, TaskEntry] = {}
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.dead = False
        self.closing = False
        self.yielding = False  # a lease its raylet asked back (see LeasePolicy)
        self.reader: asyncio.Task | None = None
        self.lost_reason = ""  # why it was abandoned (``abandon``): its node died

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
        stub = core_worker_pb2_grpc.CoreWorkerStub(self.submitter.channel(self.address))
        call = stub.PushTasks(self._requests())
        self.reader = asyncio.get_running_loop().create_task(self._read(call))

    async def _read(self, call) -> None:
        error: BaseException | None = None
        try:
            async for batch in call:
                self.submitter.on_results(self, [pickle.loads(r) for r in batch.results])
                self._head_running()
        except grpc.aio.AioRpcError as exc:
            error = exc
        except asyncio.CancelledError:
            if not self.lost_reason:
                self.close()
                return
            call.cancel()
            error = StreamLost(self.lost_reason)
        self.dead = True
        self.close()  # ends the request generator, so grpc's sending task finishes too
        self.submitter.on_stream_lost(self, error)

    def send(self, entries: list[TaskEntry]) -> None:
        """Push ``entries`` to the worker. A task sent to a worker with nothing in flight
        runs at once: it is reported RUNNING; the others SUBMITTED_TO_WORKER, until the
        tasks before them are done (``_head_running``)."""
        payload = []
        record = self.submitter.events.state
        worker_id, node_id = self.worker_id, self.node_id
        running = not self.inflight
        for e in entries:
            e.lease = self
            e.running = running
            self.inflight[e.spec.task_id] = e
            payload.append(pickle.dumps(e.spec, protocol=5))
            record(e.spec.task_id, "RUNNING" if running else "SUBMITTED_TO_WORKER", worker_id=worker_id,
                   node_id=node_id, worker_pid=self.pid, attempt=e.spec.attempt)
            running = False
        self.outbox.put_nowait(payload)

    def _head_running(self) -> None:
        """After results: the oldest task still in flight is the one the worker runs now (a
        worker takes its tasks in order; of an actor that runs calls concurrently, the
        oldest): report it RUNNING, once per attempt."""
        for e in self.inflight.values():
            if not e.running:
                e.running = True
                self.submitter.events.state(e.spec.task_id, "RUNNING")
            return

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.outbox.put_nowait(None)

    def abandon(self, reason: str) -> None:
        """The worker is known gone (``reason``: its node was declared dead): the stream is
        lost now, as if it broke (its tasks are retried or failed by the owner), instead of
        when its connection fails, which for a machine that vanished is only when keepalive
        gives up."""
        if self.dead or self.lost_reason or self.reader is None or self.reader.done():
            return
        log.info("task_stream_abandoned", worker_pid=self.pid, node_id=self.node_id, tasks=len(self.inflight),
                 reason=reason)
        self.lost_reason = reason
        self.reader.cancel()


class Lease(TaskStream):
    """A worker granted by a raylet, with the open task stream to it."""

    def __init__(self, submitter: StreamOwner, key: tuple, reply: raylet_pb2.LeaseReply, raylet: Any) -> None:
        super().__init__(submitter, key, f"{reply.worker.ip}:{reply.worker.port}")
        self.lease_id = reply.lease_id
        self.worker_id = reply.worker.worker_id
        self.node_id = reply.worker.node_id
        self.pid = reply.worker_pid
        self.raylet = raylet
        self.idle_timer: asyncio.TimerHandle | None = None


class RefLike:
    """Just enough of an ObjectRef for ``fetch_borrowed`` (no ref counting)."""

    __slots__ = ("_id", "owner_address")

    def __init__(self, oid: bytes, owner: str) -> None:
        self._id = oid
        self.owner_address = owner

    def binary(self) -> bytes:
        return self._id


def task_name(spec: TaskSpec) -> str:
    """The name a lease request carries (for the raylet's logs and the scheduling
    policy): the task's own name if it was given one, else its function's name."""
    return spec.name or spec.function_name
