"""A caller's connection to one actor: resolve its address through the GCS, stream
calls to it in submission order, and ride out restarts.

Runs on the core worker's io loop. Calls wait in their key's queue in
submission order; only a prefix whose arguments are ready is sent, so calls
from one caller start in the order they were made.
"""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Callable
from typing import Any, Protocol

import grpc
import structlog

from microray import serialization
from microray.core.submitter import TaskSubmitter
from microray.core.task_stream import KeyState, TaskEntry, TaskStream
from microray.exceptions import ActorDiedError, TaskCancelledError
from microray.protocol import gcs_pb2

log = structlog.get_logger(__name__)


class ActorHost(Protocol):
    """What an actor connection needs of its core worker (``CoreWorker`` satisfies it)."""

    gcs: Any  # GcsStub
    connected: bool

    def call_in_loop(self, fn: Callable[..., Any], *args: Any) -> None: ...
    def call_nowait(self, method: Callable[..., Any], request: Any, timeout: float | None = 30) -> None: ...


class ActorConnection:
    """Runs on the submitter's io loop (``kill_when_idle`` excepted): the submitter hands
    it the calls of its key (``pump``) and the loss of its stream (``on_stream_lost``)."""

    def __init__(self, submitter: TaskSubmitter, host: ActorHost, actor_id: str, max_task_retries: int) -> None:
        self.submitter = submitter
        self.host = host
        self.actor_id = actor_id
        self.max_task_retries = max_task_retries
        self.stream: TaskStream | None = None
        self.resolving = False
        self.dead_error: BaseException | None = None
        self.incarnation = -1  # num_restarts of the instance we last talked to
        self.unreached = 0  # streams in a row that failed to connect
        self.closed = False

    # -- sending ---------------------------------------------------------------
    def pump(self, state: KeyState) -> None:
        if self.dead_error is not None:
            self._fail_all(state)
            return
        if self.stream is None:
            if not self.resolving and not self.closed:
                self.resolving = True
                self.submitter.loop.create_task(self._resolve(state))
            return
        batch = []
        queue = state.queue
        while queue and queue[0].unresolved == 0:
            entry = queue.popleft()
            if entry.cancelled and not entry.done:
                self.submitter.fail(entry, _cancelled(entry))
                continue
            if entry.done:
                continue
            batch.append(entry)
        if batch:
            self.stream.send(batch)

    async def _resolve(self, state: KeyState) -> None:
        gcs = self.host.gcs
        delay = 0.002
        try:
            if self.unreached:
                await asyncio.sleep(min(0.01 * 2 ** self.unreached, 1.0))
            while not self.closed:
                try:
                    reply = await gcs.GetActor(gcs_pb2.ActorLookupRequest(actor_id=self.actor_id), timeout=10)
                except grpc.aio.AioRpcError as exc:
                    if self.closed or self.submitter.closed:
                        return
                    log.warning("actor_lookup_failed", actor_id=self.actor_id, error=exc.code().name)
                    delay = min(delay * 2, 1.0)
                    await asyncio.sleep(delay)
                    continue
                if not reply.found:
                    self.dead_error = ActorDiedError(self.actor_id, f"The actor {self.actor_id} is not known to the GCS")
                    break
                record = pickle.loads(reply.record)
                st = record.get("state")
                if st == "DEAD":
                    self.dead_error = death_error(record)
                    break
                if st == "ALIVE" and record.get("num_restarts", 0) > self.incarnation and record.get("address"):
                    self.incarnation = record.get("num_restarts", 0)
                    self.stream = TaskStream(self.submitter, ("actor", self.actor_id), record["address"])
                    self.stream.pid = record.get("pid", 0)
                    # the task events of the actor's calls name where they run
                    self.stream.node_id = record.get("node_id") or ""
                    self.stream.worker_id = record.get("worker_id") or ""
                    self.stream.start()
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.1)
        finally:
            self.resolving = False
        self.pump(state)

    # -- failures --------------------------------------------------------------
    def on_stream_lost(self, state: KeyState, stream: TaskStream, error: BaseException | None) -> None:
        if stream is not self.stream:
            return
        self.stream = None
        lost = list(stream.inflight.values())
        stream.inflight.clear()
        # A stream that failed to connect delivered nothing (under load a connect to a
        # live actor can fail): send its calls again, without counting a retry, to the
        # same instance if the GCS still has it ALIVE, else to the restarted one.
        unreached = _never_connected(error)
        if error is not None and lost:
            log.info("actor_stream_lost", actor_id=self.actor_id, pid=stream.pid, calls=len(lost),
                     code=getattr(error, "code", lambda: None)(), details=getattr(error, "details", lambda: "")())
        if unreached:
            self.incarnation -= 1
            self.unreached += 1
        else:
            self.unreached = 0
        retry, failed = [], []
        for entry in lost:
            if entry.cancelled:
                self.submitter.fail(entry, _cancelled(entry))
            elif unreached:
                retry.append(entry)
            elif entry.spec.attempt < entry.spec.max_retries:
                entry.spec.attempt += 1
                retry.append(entry)
            else:
                failed.append(entry)
        if failed:
            self.submitter.loop.create_task(self._fail_lost(failed, stream.pid))
        for entry in reversed(retry):
            state.queue.appendleft(entry)
        if not self.closed:
            self.pump(state)

    async def _fail_lost(self, entries: list[TaskEntry], pid: int) -> None:
        """Fail calls that were in flight when the actor's process died, with the cause
        the GCS recorded when there is one (``kill`` records it before it kills)."""
        known = None
        try:
            reply = await self.host.gcs.GetActor(
                gcs_pb2.ActorLookupRequest(actor_id=self.actor_id), timeout=2)
            if reply.found:
                record = pickle.loads(reply.record)
                if record.get("killed") or record.get("state") == "DEAD":
                    known = death_error(record)
        except grpc.aio.AioRpcError:
            pass
        for entry in entries:
            detail = (f"the call {entry.spec.method_name}() was running in its process (pid {pid}) and was "
                      f"not retried (max_task_retries={entry.spec.max_retries})")
            if known is not None:
                err = ActorDiedError(self.actor_id, f"{known}; {detail}.")
            else:
                err = ActorDiedError(self.actor_id, f"The actor {self.actor_id} died unexpectedly: {detail}.")
            self.submitter.fail(entry, serialization.serialize_error(err).to_bytes())

    def _fail_all(self, state: KeyState) -> None:
        assert self.dead_error is not None
        err = serialization.serialize_error(self.dead_error).to_bytes()
        while state.queue:
            entry = state.queue.popleft()
            if not entry.done:
                self.submitter.fail(entry, err)

    # -- the handle went out of scope -------------------------------------------
    def kill_when_idle(self, request: Any) -> None:
        """Send ``request`` (KillActor) once none of this caller's calls waits or is in
        flight (any thread): ``ray.get(A.remote().f.remote())`` gets its result."""
        self.host.call_in_loop(self._kill_when_idle, request)

    def _kill_when_idle(self, request: Any) -> None:
        busy = self.submitter.has_queued(("actor", self.actor_id)) or bool(self.stream is not None and self.stream.inflight)
        if busy and not self.closed and self.dead_error is None and not self.submitter.closed:
            self.submitter.loop.call_later(0.02, self._kill_when_idle, request)
            return
        host = self.host
        if host.connected:
            host.call_nowait(host.gcs.KillActor, request)

    def close(self) -> None:
        self.closed = True
        if self.stream is not None:
            self.stream.close()
            if self.stream.reader is not None:
                self.stream.reader.cancel()


def _never_connected(error: BaseException | None) -> bool:
    return (isinstance(error, grpc.aio.AioRpcError) and error.code() == grpc.StatusCode.UNAVAILABLE
            and "failed to connect" in (error.details() or ""))


def _cancelled(entry: Any) -> bytes:
    return serialization.serialize_error(TaskCancelledError(entry.spec.task_id.hex())).to_bytes()


def death_error(record: dict) -> BaseException:
    """The error calls to a dead actor raise: the creation error or the death cause."""
    creation = record.get("creation_error")
    if creation:
        value, _ = serialization.deserialize(creation)
        msg = str(value)
        return ActorDiedError(
            record["actor_id"],
            f"The actor {record.get('class_name')} ({record['actor_id']}) died because its "
            f"constructor raised an error:\n{msg}",
        )
    cause = record.get("death_cause") or "unknown cause"
    return ActorDiedError(
        record["actor_id"], f"The actor {record.get('class_name')} ({record['actor_id']}) is dead: {cause}"
    )
