"""The owners of a raylet's leases, watched: a lease dies with the process that holds it.

The owner of a lease is the driver or worker that asked for it (a worker running a task
that submits tasks owns the leases of those tasks). An owner killed with ``kill -9``
returns nothing, so the raylet watches each owner through its core worker's ``Watch``
stream, which never answers and breaks when the owner's process exits. That works for an
owner on any node. A broken stream is confirmed by reconnecting a few times (a process
that is gone refuses at once, one that lives keeps the new stream open); an owner on this
node whose process is known to be gone is dead at once. The raylet's owner-death handler
then cancels the owner's waiting requests and takes back its workers (``worker_busy``
says which of them still run the dead owner's tasks and must be killed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc
import structlog

from microray.process import pid_alive
from microray.protocol import common_pb2, core_worker_pb2_grpc
from microray import rpc

log = structlog.get_logger(__name__)

CONFIRM_ATTEMPTS = 4     # failed (re)connects in a row that make a watched owner dead
FIRST_RETRY_S = 0.1      # doubled after each failed reconnect (0.1 + 0.2 + 0.4 s)
ESTABLISHED_S = 1.0      # a stream that lived this long had reached the owner
BUSY_ASK_TIMEOUT_S = 2.0  # a leased worker that does not answer by then is killed


class OwnerWatcher:
    """One ``Watch`` stream per lease owner; ``on_dead(owner_id, reason)`` once it is gone.

    ``local_pid(owner_id)`` gives the pid of an owner on this node (None when unknown):
    a gone pid confirms a death without waiting for reconnects."""

    def __init__(
        self,
        on_dead: Callable[[str, str], None],
        local_pid: Callable[[str], int | None],
        credentials: rpc.Credentials,
    ) -> None:
        self.credentials = credentials  # the watch calls carry the cluster token
        self.on_dead = on_dead
        self.local_pid = local_pid
        self.watching: dict[str, asyncio.Task] = {}

    def watch(self, owner_id: str, address: str) -> None:
        """Start watching ``owner_id`` at its core-worker ``address`` (no-op if watched)."""
        if not owner_id or not address or owner_id in self.watching:
            return
        self.watching[owner_id] = asyncio.get_running_loop().create_task(self._watch(owner_id, address))

    def forget(self, owner_id: str) -> None:
        """Stop watching ``owner_id`` (its death was learnt another way)."""
        task = self.watching.pop(owner_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def close(self) -> None:
        for owner_id in list(self.watching):
            self.forget(owner_id)

    async def _watch(self, owner_id: str, address: str) -> None:
        channel = rpc.channel(address, self.credentials)
        stub = core_worker_pb2_grpc.CoreWorkerStub(channel)
        failures = 0
        delay = FIRST_RETRY_S
        reason = ""
        try:
            while True:
                opened = time.monotonic()
                try:
                    async for _ in stub.Watch(common_pb2.Empty()):
                        pass
                    reason = "its core worker closed the watch stream"
                except grpc.aio.AioRpcError as exc:
                    reason = f"its core worker at {address} is unreachable ({exc.code().name})"
                if time.monotonic() - opened >= ESTABLISHED_S:
                    failures = 0  # the stream had reached the owner: this break is news
                    delay = FIRST_RETRY_S
                failures += 1
                pid = self.local_pid(owner_id)
                if pid is not None and not pid_alive(pid):
                    reason = f"its process (pid {pid}) exited"
                    break
                if failures >= CONFIRM_ATTEMPTS:
                    break
                await asyncio.sleep(delay)
                delay *= 2
        except asyncio.CancelledError:
            return
        finally:
            if self.watching.get(owner_id) is asyncio.current_task():
                del self.watching[owner_id]
            await channel.close(grace=None)
        self.on_dead(owner_id, reason)


async def worker_busy(address: str, credentials: rpc.Credentials, timeout: float = BUSY_ASK_TIMEOUT_S) -> bool:
    """Ask a leased worker whose owner died whether it still runs or holds a task.
    A worker that cannot answer counts as busy (it is then killed, not leased again)."""
    channel = rpc.channel(address, credentials)
    try:
        reply = await core_worker_pb2_grpc.CoreWorkerStub(channel).LeaseOwnerDied(common_pb2.Empty(), timeout=timeout)
        return reply.busy
    except grpc.aio.AioRpcError as exc:
        log.info("leased_worker_unreachable", address=address, error=exc.code().name)
        return True
    finally:
        await channel.close(grace=None)
