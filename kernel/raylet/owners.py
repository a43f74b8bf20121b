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

A live owner is asked to return leases when other owners' requests wait for the node
(``ask_to_yield``; which leases is decided by ``fair_share``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import grpc
import structlog

from microray.process import pid_alive
from microray.protocol import common_pb2, core_worker_pb2, core_worker_pb2_grpc
from microray import rpc
from microray.raylet.leases import LeaseManager

log = structlog.get_logger(__name__)

CONFIRM_ATTEMPTS = 4     # failed (re)connects in a row that make a watched owner dead
FIRST_RETRY_S = 0.1      # doubled after each failed reconnect (0.1 + 0.2 + 0.4 s)
ESTABLISHED_S = 1.0      # a stream that lived this long had reached the owner
BUSY_ASK_TIMEOUT_S = 2.0  # a leased worker that does not answer by then is killed
YIELD_ASK_TIMEOUT_S = 5.0
# a lease is asked back for another owner's request only once held this long, so that
# owners taking turns on a full node each run a while between turns
YIELD_MIN_HOLD_S = 0.2


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


async def _call_core_worker(address: str, credentials: rpc.Credentials, method: str, request: Any,
                            timeout: float) -> Any:
    """One call to the core worker at ``address``, on a channel of its own closed after it
    (the raylet's asks of lease holders and owners are rare: no channel is kept)."""
    channel = rpc.channel(address, credentials)
    try:
        return await getattr(core_worker_pb2_grpc.CoreWorkerStub(channel), method)(request, timeout=timeout)
    finally:
        await channel.close(grace=None)


async def worker_busy(address: str, credentials: rpc.Credentials, timeout: float = BUSY_ASK_TIMEOUT_S) -> bool:
    """Ask a leased worker whose owner died whether it still runs or holds a task.
    A worker that cannot answer counts as busy (it is then killed, not leased again)."""
    try:
        return (await _call_core_worker(address, credentials, "LeaseOwnerDied", common_pb2.Empty(), timeout)).busy
    except grpc.aio.AioRpcError as exc:
        log.info("leased_worker_unreachable", address=address, error=exc.code().name)
        return True


async def ask_to_yield(address: str, lease_ids: list[str], credentials: rpc.Credentials,
                       timeout: float = YIELD_ASK_TIMEOUT_S) -> bool:
    """Ask the lease owner at ``address`` to return ``lease_ids`` once the tasks they run
    are done (other owners' requests wait here). False when the owner did not answer."""
    try:
        await _call_core_worker(address, credentials, "YieldLeases",
                                core_worker_pb2.YieldLeasesRequest(lease_ids=lease_ids), timeout)
        return True
    except grpc.aio.AioRpcError as exc:
        log.info("lease_owner_not_asked", address=address, leases=lease_ids, error=exc.code().name)
        return False


async def tell_nodes_died(addresses: list[str], node_ids: list[str], credentials: rpc.Credentials,
                          timeout: float = 2.0) -> None:
    """Tell the core workers at ``addresses`` (this node's drivers and workers) that the
    cluster declared ``node_ids`` dead: their streams to workers there are lost at once."""
    request = core_worker_pb2.NodesDiedRequest(node_ids=node_ids)

    async def tell(address: str) -> None:
        try:
            await _call_core_worker(address, credentials, "NodesDied", request, timeout)
        except grpc.aio.AioRpcError as exc:  # exiting, or busy past the timeout: its stream breaks later
            log.debug("node_death_not_told", address=address, error=exc.code().name)

    await asyncio.gather(*(tell(a) for a in addresses))


class LeaseYields:
    """Asks lease owners to return leases when requests of other owners wait that the
    node cannot grant (which leases: ``LeaseManager.leases_to_yield``). ``check()`` after
    every dispatch that left requests pending; it asks again by itself when a lease was
    passed over for being younger than ``YIELD_MIN_HOLD_S``."""

    def __init__(self, leases: LeaseManager, credentials: rpc.Credentials) -> None:
        self.leases = leases
        self.credentials = credentials  # the asks carry the cluster token
        self._timer: asyncio.TimerHandle | None = None

    def check(self) -> None:
        asks, recheck = self.leases.leases_to_yield(time.monotonic(), YIELD_MIN_HOLD_S)
        if not asks and recheck is None:
            return  # the common case (one owner's requests wait): nothing to ask
        loop = asyncio.get_running_loop()
        by_owner: dict[str, list[tuple[str, str]]] = {}
        for w in asks:
            by_owner.setdefault(w.owner_address, []).append((w.worker_id, w.lease_id))
        for address, held in by_owner.items():
            loop.create_task(self._ask(address, held))
        if recheck is not None and self._timer is None:
            self._timer = loop.call_later(recheck + 0.01, self._recheck)

    def _recheck(self) -> None:
        self._timer = None
        if self.leases.pending:
            self.check()

    async def _ask(self, address: str, held: list[tuple[str, str]]) -> None:
        lease_ids = [lease_id for _, lease_id in held]
        log.debug("leases_asked_back", owner_address=address, leases=lease_ids)
        if await ask_to_yield(address, lease_ids, self.credentials):
            return
        for worker_id, lease_id in held:  # not reached: it may be asked again
            w = self.leases.workers.get(worker_id)
            if w is not None and w.lease_id == lease_id:
                w.yield_asked = False

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
