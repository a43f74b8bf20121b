"""The CoreWorker gRPC service: a thin shell over the core worker's parts."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from microray.core.memory_store import IN_STORE, SERIALIZED, VALUE
from microray import serialization
from microray.exceptions import ObjectLostError
from microray.protocol import common_pb2, core_worker_pb2, core_worker_pb2_grpc

# GetObject reply statuses
ST_INLINE, ST_IN_STORE, ST_TIMEOUT, ST_LOST = 0, 1, 2, 3


class CoreWorkerService(core_worker_pb2_grpc.CoreWorkerServicer):
    def __init__(self, cw: Any) -> None:
        self.cw = cw

    async def PushTasks(self, request_iterator, context):
        # a worker registers with its raylet before its executor exists; calls wait for it
        await self.cw.ready.wait()
        executor = self.cw.executor
        if executor is None:
            raise RuntimeError("this process does not run tasks")
        async for batch in executor.push_stream(request_iterator):
            yield batch

    async def GetObject(self, request, context):
        cw = self.cw
        oid = request.object_id
        entry = cw.memory.entries.get(oid)
        if entry is None:
            if not cw.refs.owns(oid):
                return core_worker_pb2.GetObjectReply(status=ST_LOST)
            fut = asyncio.get_running_loop().create_future()

            def ready(_oid, fut=fut):
                cw.call_in_loop(lambda: fut.done() or fut.set_result(True))

            if cw.memory.on_ready(oid, ready):
                fut.set_result(True)
            try:
                await asyncio.wait_for(fut, timeout=request.timeout or None)
            except asyncio.TimeoutError:
                return core_worker_pb2.GetObjectReply(status=ST_TIMEOUT)
            entry = cw.memory.entries.get(oid)
            if entry is None:
                return core_worker_pb2.GetObjectReply(status=ST_LOST)
        kind, payload = entry
        if kind == VALUE:
            return core_worker_pb2.GetObjectReply(status=ST_INLINE, data=serialization.serialize(payload).to_bytes())
        if kind == SERIALIZED:
            return core_worker_pb2.GetObjectReply(status=ST_INLINE, data=payload)
        if kind == IN_STORE:
            return core_worker_pb2.GetObjectReply(status=ST_IN_STORE, node_id=payload)
        return core_worker_pb2.GetObjectReply(status=ST_INLINE, data=serialization.serialize_error(payload).to_bytes())

    async def CancelTask(self, request, context):
        # the owner cancels through its submitter (queued or pushed; e.g. asked by the dashboard)
        if self.cw.submitter.cancel(request.task_id, request.force):
            return core_worker_pb2.CancelTaskReply(found=True)
        found = False
        if self.cw.executor is not None:
            found = self.cw.executor.cancel(request.task_id, request.force)
        return core_worker_pb2.CancelTaskReply(found=found)

    async def AddBorrower(self, request, context):
        added = False
        for oid in request.object_ids:
            added = self.cw.refs.add_borrower(oid, request.borrower) or added
        if added:
            self.cw.watch_borrower(request.borrower)
        return common_pb2.Empty()

    async def Watch(self, request, context):
        await asyncio.Event().wait()  # until this process exits
        yield common_pb2.Empty()

    async def LeaseOwnerDied(self, request, context):
        executor = self.cw.executor
        return core_worker_pb2.LeaseOwnerDiedReply(busy=executor is not None and executor.busy())

    async def YieldLeases(self, request, context):
        submitter = self.cw.submitter
        if submitter is not None:
            submitter.yield_leases(request.lease_ids)
        return common_pb2.Empty()

    async def NodesDied(self, request, context):
        submitter = self.cw.submitter
        if submitter is not None:
            submitter.nodes_died(set(request.node_ids))
        return common_pb2.Empty()

    async def GetObjectLocations(self, request, context):
        known, nodes, why = self.cw.objects.locations(request.object_id)
        return core_worker_pb2.ObjectLocationsReply(known=known, node_ids=nodes, why=why)

    async def AddObjectLocation(self, request, context):
        known = self.cw.objects.add_location(request.object_id, request.node_id)
        return core_worker_pb2.ObjectLocationReply(known=known)

    async def RecoverObject(self, request, context):
        oid = request.object_id
        if not self.cw.refs.owns(oid):
            err: BaseException | None = ObjectLostError(oid.hex(), (
                f"Object {oid.hex()} is lost: its owner ({self.cw.address}) does not hold it any more"))
            rebuilt = False
        else:
            before = self.cw.recovery.rebuilt
            err = await self.cw.recovery.recover(oid)
            rebuilt = self.cw.recovery.rebuilt != before
        if err is None:
            return core_worker_pb2.RecoverObjectReply(rebuilt=rebuilt)
        return core_worker_pb2.RecoverObjectReply(error=serialization.serialize_error(err).to_bytes())

    async def RemoveBorrower(self, request, context):
        for oid in request.object_ids:
            self.cw.refs.remove_borrower(oid, request.borrower)
        return common_pb2.Empty()

    async def GetObjectsInfo(self, request, context):
        import pickle

        return core_worker_pb2.ObjectsInfoReply(
            objects=pickle.dumps(self.cw.objects_info()), worker_id=self.cw.worker_id,
            pid=os.getpid(), job_id=self.cw.job_id,
        )

    async def Exit(self, request, context):
        if request.force:  # kill: nothing more may run here, not even a queued call
            os._exit(1)
        if self.cw.is_worker:  # what its tasks printed is sent before it goes
            self.cw.output.exit_soon(0, delay=0.05)
        else:
            asyncio.get_running_loop().call_later(0.05, os._exit, 0)
        return common_pb2.Empty()
