"""Borrowing: the messages between a process that holds a ref it does not own and the
ref's owner (see docs/architecture.md, "Objects and reference counting").

Borrower side: a ref deserialized here is registered with its owner (``AddBorrower``)
before user code sees it, and released (``RemoveBorrower``, batched per owner) when the
last local holder drops it. Owner side: a borrower's process is watched, and whatever
it held is released when it dies.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Protocol

import grpc
import structlog

from microray.core.io_loop import IoLoop
from microray.core.object_ref import ObjectRef
from microray.core.reference_counter import ReferenceCounter
from microray.protocol import common_pb2, core_worker_pb2, core_worker_pb2_grpc
from microray.rpc import ChannelPool, invoke, invoke_logged

log = structlog.get_logger(__name__)


class BorrowingHost(Protocol):
    """What borrowing reads from its core worker (at use: dropped at shutdown)."""

    address: str
    channels: ChannelPool
    connected: bool


class Borrowing:
    def __init__(self, host: BorrowingHost, refs: ReferenceCounter, io: IoLoop) -> None:
        self.host = host
        self.refs = refs
        self.io = io
        self._tls = threading.local()
        self._remove_queue: dict[str, list[bytes]] = {}
        self._remove_lock = threading.Lock()
        self._watched: set[str] = set()

    # -- borrower side -----------------------------------------------------------
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
        address = self.host.address
        refs = self.refs
        by_owner: dict[str, list[bytes]] = {}
        for ref in pending:
            oid = ref.binary()
            if refs.owns(oid) or refs.is_borrowing(oid) or not ref.owner_address:
                continue
            if ref.owner_address == address:
                continue
            by_owner.setdefault(ref.owner_address, []).append(oid)
        for owner, oids in by_owner.items():
            self.add_borrower_at(owner, oids, address)
            for oid in oids:
                refs.mark_borrowed(oid, owner)

    def add_borrower_at(self, owner: str, oids: list[bytes], borrower: str) -> None:
        """Register ``borrower`` for ``oids`` with their owner (a dead owner is ignored:
        fetching the object will then raise OwnerDiedError)."""
        if owner == self.host.address:
            for oid in oids:
                self.refs.add_borrower(oid, borrower)
            return
        request = core_worker_pb2.BorrowRequest(object_ids=oids, borrower=borrower)
        if self.io.in_loop_thread():  # cannot block the loop: best effort
            self.io.loop.create_task(self._owner_call("AddBorrower", owner, request, log_only=True))
            return
        try:
            self.io.run(self._owner_call("AddBorrower", owner, request))
        except grpc.aio.AioRpcError as exc:
            log.warning("add_borrower_failed", owner=owner, error=exc.code().name)

    async def _owner_call(self, method: str, owner: str, request: Any, log_only: bool = False) -> Any:
        """A call to another core worker; channels are made on the io loop only."""
        stub = core_worker_pb2_grpc.CoreWorkerStub(self.host.channels.get(owner))
        if log_only:
            return await invoke_logged(getattr(stub, method), request, 10)
        return await invoke(getattr(stub, method), request, 10)

    def send_remove_borrower(self, owner: str, oid: bytes) -> None:
        """We no longer hold ``oid``: tell its owner (batched per owner, ~10 ms)."""
        with self._remove_lock:
            pending = self._remove_queue.setdefault(owner, [])
            pending.append(oid)
            first = len(pending) == 1
        if first:
            loop = self.io.loop
            self.io.call_in_loop(lambda: loop.call_later(0.01, self._flush_remove_borrower, owner))

    def _flush_remove_borrower(self, owner: str) -> None:
        with self._remove_lock:
            oids = self._remove_queue.pop(owner, [])
        host = self.host
        if oids and host.connected:
            stub = core_worker_pb2_grpc.CoreWorkerStub(host.channels.get(owner))
            self.io.loop.create_task(invoke_logged(
                stub.RemoveBorrower, core_worker_pb2.BorrowRequest(object_ids=oids, borrower=host.address), 10))

    # -- owner side --------------------------------------------------------------
    def watch_borrower(self, borrower: str) -> None:
        """Owner side (io loop): when a borrower process dies, it holds nothing any more."""
        if borrower in self._watched or borrower == self.host.address:
            return
        self._watched.add(borrower)
        self.io.loop.create_task(self._watch_borrower(borrower))

    async def _watch_borrower(self, borrower: str) -> None:
        stub = core_worker_pb2_grpc.CoreWorkerStub(self.host.channels.get(borrower))
        try:
            async for _ in stub.Watch(common_pb2.Empty()):
                pass
        except grpc.aio.AioRpcError:
            pass
        except asyncio.CancelledError:
            return
        self._watched.discard(borrower)
        if self.host.connected:
            n = self.refs.remove_borrower_everywhere(borrower)
            if n:
                log.info("borrower_gone", borrower=borrower, objects=n)
