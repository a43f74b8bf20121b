"""The owner rebuilds its lost objects: when no node can give an object this process
owns (every node that held a copy died), the task that made it runs again, its own lost
arguments first (lineage reconstruction, as Ray does).

Runs on the core worker's io loop. The decisions (what is kept, what may run again,
which error a lost object gets) are ``core/lineage.py``'s; this shell checks the
object's locations against the GCS node table, resubmits specs through the submitter
and waits for their returns. Requests for one object share one rebuild.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import grpc
import structlog

from microray import ids
from microray.core.lineage import CannotRebuild, Lineage
from microray.core.memory_store import ERROR, IN_STORE, MemoryStore
from microray.core.reference_counter import ReferenceCounter
from microray.core.task_spec import return_ids
from microray.exceptions import ObjectLostError
from microray.protocol import common_pb2

log = structlog.get_logger(__name__)

NODES_TIMEOUT_S = 10.0


class RecoveryHost(Protocol):
    """What the recovery reads from its core worker."""

    address: str
    memory: MemoryStore
    refs: ReferenceCounter
    lineage: Lineage
    gcs: Any  # GcsStub
    submitter: Any  # TaskSubmitter: submit(spec, key, arg_refs)

    def object_locations(self, object_id: bytes) -> list[str]: ...  # nodes said to hold a copy


class ObjectRecovery:
    def __init__(self, host: RecoveryHost) -> None:
        self.host = host
        self.inflight: dict[bytes, asyncio.Future[BaseException | None]] = {}
        self.rebuilt = 0  # tasks run again to rebuild lost objects

    async def recover(self, object_id: bytes, where: str = "") -> BaseException | None:
        """``object_id`` (owned here) could not be pulled from any node. Rebuild it when
        every node that held it is dead; None when it is readable again (rebuilt, or a
        holder still lives: pull again), else the error its readers get. ``where``: how
        it was lost, when the caller knows (an argument of a task being rebuilt)."""
        fut = self.inflight.get(object_id)
        if fut is not None:
            return await asyncio.shield(fut)
        fut = self.inflight[object_id] = asyncio.get_running_loop().create_future()
        try:
            error = await self._recover(object_id, where)
        except Exception as exc:  # noqa: BLE001 -- the readers get an error, never a hang
            log.warning("object_recovery_failed", object_id=object_id.hex(), error=repr(exc))
            error = ObjectLostError(object_id.hex(), f"Object {object_id.hex()} is lost; rebuilding it failed: {exc!r}")
        finally:
            self.inflight.pop(object_id, None)
        fut.set_result(error)
        return error

    async def _recover(self, oid: bytes, where: str) -> BaseException | None:
        host = self.host
        entry = host.memory.entries.get(oid)
        if entry is not None and entry[0] == ERROR:
            return entry[1] if isinstance(entry[1], BaseException) else None
        if entry is not None and entry[0] != IN_STORE:
            return None  # its value is held here
        alive = await self._alive_nodes()
        if alive is None:
            return None  # the GCS cannot say: the reader tries again
        if entry is not None:
            lost = self._lost_where(oid, alive)
            if lost is None:
                return None  # a holder lives (a pull failed for another reason): pull again
            where = lost
        plan = host.lineage.plan(oid, where or "its value was freed")
        if isinstance(plan, CannotRebuild):
            log.warning("object_lost", object_id=oid.hex(), why=str(plan.error))
            if host.refs.owns(oid):
                host.memory.put(oid, ERROR, plan.error)
            return plan.error
        spec = plan.spec
        returns = return_ids(spec)
        unheld = [r for r in returns if not host.refs.owns(r)]
        for r in returns:
            host.refs.add_owned(r)  # a return freed before: owned again until the rebuild lands
            got = host.memory.entries.get(r)
            if got is not None and got[0] in (IN_STORE, ERROR):
                host.memory.delete(r)  # lost with the node (all of a task's stored returns are on one)
        landed = asyncio.gather(*(self._landed(r) for r in returns))
        # its arguments made here whose values are gone (freed, or lost too): rebuilt first
        rebuild: dict[bytes, str] = {}
        for a in plan.args:
            why = self._gone(a, alive)
            if why is not None:
                rebuild[a] = why
                host.memory.delete(a)  # the task waits for the new value
                host.refs.add_owned(a)
        host.lineage.started_rebuild(spec.task_id)
        self.rebuilt += 1
        log.info("object_rebuild", object_id=oid.hex(), task=spec.function_name, attempt=spec.attempt,
                 why=where, arguments_to_rebuild=len(rebuild))
        host.submitter.submit(spec, plan.key, list(plan.args))
        errors = await asyncio.gather(*(self.recover(a, why) for a, why in rebuild.items()))
        for a, err in zip(rebuild, errors):
            if err is not None and host.memory.entries.get(a) is None:
                host.memory.put(a, ERROR, err)  # the task fails with its argument's error
        await landed
        for r in unheld:  # returns nobody holds any more: freed again at once
            host.refs.release_if_unreferenced(r)
        got = host.memory.entries.get(oid)
        if got is not None and got[0] == ERROR:
            return got[1] if isinstance(got[1], BaseException) else None
        return None

    def _lost_where(self, oid: bytes, alive: set[str]) -> str | None:
        """How ``oid`` (in a node's store) was lost; None when a node holding it lives."""
        locations = self.host.object_locations(oid)
        if any(n in alive for n in locations):
            return None
        dead = ", ".join(locations)
        return (f"its only copy was on node {dead}, which died" if len(locations) == 1
                else f"its copies were on nodes {dead}, which died")

    def _gone(self, arg: bytes, alive: set[str]) -> str | None:
        """Why an argument this owner made has no value left (None: it has one, or it is
        not this owner's to rebuild)."""
        host = self.host
        entry = host.memory.entries.get(arg)
        if entry is None:
            if ids.index_of(arg) != 0 and ids.task_of(arg) in host.lineage.entries:
                return "its value was freed"
            return None
        if entry[0] != IN_STORE or not host.refs.owns(arg):
            return None
        return self._lost_where(arg, alive)

    async def _landed(self, oid: bytes) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def settle() -> None:
            if not fut.done():
                fut.set_result(None)

        def ready(_oid: bytes) -> None:
            loop.call_soon_threadsafe(settle)

        if self.host.memory.on_ready(oid, ready):
            return
        await fut

    async def _alive_nodes(self) -> set[str] | None:
        """The ids of the nodes the GCS lists ALIVE (None when it does not answer)."""
        try:
            reply = await self.host.gcs.GetAllNodes(common_pb2.Empty(), timeout=NODES_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            log.warning("object_recovery_gcs_unreachable", error=exc.code().name)
            return None
        return {n.node_id for n in reply.nodes if n.state == "ALIVE"}
