"""The GCS's actor manager: creates actors on leased workers, watches them, restarts them.

The GCS — not the creating process — owns an actor's lifecycle, so detached
actors outlive their creator and restarts happen even when the caller is gone.
Each live actor has one open ``PushTasks`` stream from the GCS: the creation task
goes over it, and its end means the actor's process died. After a GCS restart
the manager re-opens that stream to every actor it finds ALIVE.

States follow Ray: DEPENDENCIES_UNREADY -> PENDING_CREATION -> ALIVE ->
RESTARTING -> ... -> DEAD.
"""

from __future__ import annotations

import asyncio
import pickle
import time
from typing import Any

import grpc
import structlog

from microray.protocol import common_pb2, core_worker_pb2, core_worker_pb2_grpc, raylet_pb2, raylet_pb2_grpc
from microray.rpc import ChannelPool

log = structlog.get_logger(__name__)

T_ACTORS = "actors"


class ActorManager:
    def __init__(self, gcs: Any) -> None:
        self.gcs = gcs  # the GcsServicer: store, nodes, notify
        self.channels = ChannelPool()
        self.records: dict[str, dict] = {}
        self.tasks: dict[str, asyncio.Task] = {}
        # actors recorded ALIVE before a GCS restart whose process is not confirmed yet
        self.reattaching: dict[str, asyncio.Event] = {}
        self.notified: dict[str, tuple] = {}  # actor id -> (state, num_restarts) last reported

    async def load(self) -> None:
        for raw in (await self.gcs.store.get_all(T_ACTORS)).values():
            record = pickle.loads(raw)
            self.records[record["actor_id"]] = record
            if record["state"] in ("ALIVE",):
                self.reattaching[record["actor_id"]] = asyncio.Event()
                self._start(record["actor_id"], reattach=True)
            elif record["state"] in ("PENDING_CREATION", "RESTARTING", "DEPENDENCIES_UNREADY"):
                self._start(record["actor_id"])

    async def save(self, record: dict) -> None:
        await self.gcs.store.put(T_ACTORS, record["actor_id"].encode(), pickle.dumps(record))
        # observers hear of state changes, not of every write (kill() persists a flag first)
        seen = (record["state"], record.get("num_restarts", 0))
        if self.notified.get(record["actor_id"]) != seen:
            self.notified[record["actor_id"]] = seen
            self.gcs.actor_changed(record)

    def register(self, record: dict) -> None:
        self.records[record["actor_id"]] = record
        self._start(record["actor_id"])

    def _start(self, actor_id: str, reattach: bool = False) -> None:
        self.tasks[actor_id] = asyncio.get_running_loop().create_task(self._run(actor_id, reattach))

    # -- lifecycle -------------------------------------------------------------------
    async def _run(self, actor_id: str, reattach: bool) -> None:
        record = self.records[actor_id]
        while True:
            if reattach:
                reattach = False
                ended = await self._watch(record, None)
            else:
                ended = await self._create_once(record)
            if ended == "created_failed" or record["state"] == "DEAD":
                self._reattached(actor_id)
                return
            # the actor's process is gone
            await self._kill_owned(record)
            if record.get("killed"):
                await self._mark_dead(record, record.get("death_cause") or "killed by microray.kill()")
                return
            max_restarts = record.get("max_restarts", 0)
            if max_restarts == -1 or record.get("num_restarts", 0) < max_restarts:
                record["num_restarts"] = record.get("num_restarts", 0) + 1
                record["state"] = "RESTARTING"
                record["address"] = ""
                log.info("actor_restarting", actor_id=actor_id, restart=record["num_restarts"])
                await self.save(record)
                self._reattached(actor_id)
                continue
            await self._mark_dead(
                record,
                f"the actor's worker process (pid {record.get('pid')}) died unexpectedly and "
                f"max_restarts={max_restarts} restarts were used up",
            )
            return

    async def _mark_dead(self, record: dict, cause: str) -> None:
        record["state"] = "DEAD"
        record["death_cause"] = cause
        record["address"] = ""
        record["end_time"] = time.time()
        await self.save(record)
        self._reattached(record["actor_id"])
        log.info("actor_dead", actor_id=record["actor_id"], cause=cause)

    def _reattached(self, actor_id: str) -> None:
        """The recovered record of ``actor_id`` is confirmed (its process answers) or updated."""
        event = self.reattaching.pop(actor_id, None)
        if event is not None:
            event.set()

    async def wait_reattached(self, actor_id: str, timeout: float = 10.0) -> None:
        """Until a record recovered as ALIVE is confirmed or updated, so that no caller gets
        the address of a process that died while the GCS was down."""
        event = self.reattaching.get(actor_id)
        if event is not None:
            try:
                await asyncio.wait_for(event.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    async def _lease(self, record: dict) -> raylet_pb2.LeaseReply | None:
        """Lease a worker for the actor from a raylet (following a spillback once)."""
        delay = 0.01
        while True:
            nodes = [n for n in self.gcs.nodes.values() if n.state == "ALIVE"]
            if not nodes:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            node = next((n for n in nodes if n.is_head), nodes[0])
            address = f"{node.ip}:{node.raylet_port}"
            grant_or_reject = False
            for _ in range(3):
                stub = raylet_pb2_grpc.RayletStub(self.channels.get(address))
                req = raylet_pb2.LeaseRequest(
                    lease_key=f"actor:{record['actor_id']}",
                    resources=common_pb2.ResourceMap(amounts=record["resources"]),
                    strategy=pickle.dumps(record.get("strategy", "DEFAULT")),
                    owner_worker_id="gcs",
                    grant_or_reject=grant_or_reject,
                    task_name=record.get("class_name", ""),
                    actor_spec=pickle.dumps({"actor_id": record["actor_id"], "hold": record.get("hold", {})}),
                    runtime_env_hash=record.get("env_key", ""),
                )
                try:
                    reply = await stub.RequestWorkerLease(req)
                except grpc.aio.AioRpcError as exc:
                    log.warning("actor_lease_failed", actor_id=record["actor_id"], error=exc.code().name)
                    break
                if reply.HasField("spillback") and reply.spillback.port:
                    address = f"{reply.spillback.ip}:{reply.spillback.port}"
                    grant_or_reject = True
                    continue
                if reply.granted:
                    return reply
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _create_once(self, record: dict) -> str:
        if record["state"] != "RESTARTING":
            record["state"] = "PENDING_CREATION"
            await self.save(record)
        reply = await self._lease(record)
        address = f"{reply.worker.ip}:{reply.worker.port}"
        record.update(
            address=address, pid=reply.worker_pid, node_id=reply.worker.node_id,
            worker_id=reply.worker.worker_id, lease_id=reply.lease_id,
        )
        return await self._watch(record, record["creation_spec"])

    async def _watch(self, record: dict, creation_spec: bytes | None) -> str:
        """Open the actor's stream (sending the creation task, if any) and wait for its end.

        A stream that never connected did not deliver anything: under load a connect to
        a just-started worker can fail (gRPC "failed to connect to all addresses") while
        the worker runs fine. Try again a few times before calling its process dead."""
        delay = 0.05
        for _ in range(6):
            ended = await self._watch_once(record, creation_spec)
            if ended != "unreachable":
                return ended
            log.warning("actor_worker_unreachable", actor_id=record["actor_id"], address=record.get("address"))
            await asyncio.sleep(delay)
            delay *= 2
        return "ended"

    async def _watch_once(self, record: dict, creation_spec: bytes | None) -> str:
        outbox: asyncio.Queue = asyncio.Queue()
        if creation_spec is not None:
            outbox.put_nowait(creation_spec)

        async def requests():
            while True:
                item = await outbox.get()
                if item is None:
                    return
                yield core_worker_pb2.TaskBatch(specs=[item])

        stub = core_worker_pb2_grpc.CoreWorkerStub(self.channels.get(record["address"]))
        call = stub.PushTasks(requests())
        answered = False
        try:
            if creation_spec is None:
                # re-attached after a GCS restart: check the actor answers at all
                await stub.GetObject(core_worker_pb2.GetObjectRequest(object_id=b"\0" * 20, timeout=0.01), timeout=5)
                self._reattached(record["actor_id"])
            async for batch in call:
                answered = True
                for raw in batch.results:
                    result = pickle.loads(raw)
                    if result.status == 0:  # OK: created
                        record["state"] = "ALIVE"
                        record["start_time"] = record.get("start_time") or time.time()
                        await self.save(record)
                        log.info("actor_alive", actor_id=record["actor_id"], pid=record.get("pid"))
                    else:
                        record["creation_error"] = result.extra
                        await self._kill_owned(record)
                        await self._mark_dead(record, "the actor's constructor raised an error")
                        outbox.put_nowait(None)
                        await self._kill_worker(record)
                        return "created_failed"
        except grpc.aio.AioRpcError as exc:
            if (not answered and exc.code() == grpc.StatusCode.UNAVAILABLE
                    and "failed to connect" in (exc.details() or "")):
                return "unreachable"
            log.info("actor_stream_ended", actor_id=record["actor_id"], pid=record.get("pid"), state=record["state"],
                     code=exc.code().name, details=exc.details())
        return "ended"

    async def _kill_worker(self, record: dict) -> None:
        if not record.get("address"):
            return
        stub = core_worker_pb2_grpc.CoreWorkerStub(self.channels.get(record["address"]))
        try:
            await stub.Exit(core_worker_pb2.ExitRequest(force=True, reason="actor killed"), timeout=2)
        except grpc.aio.AioRpcError:
            pass

    # -- requests ----------------------------------------------------------------------
    async def kill(self, actor_id: str, no_restart: bool, reason: str = "") -> bool:
        record = self.records.get(actor_id)
        if record is None or record["state"] == "DEAD":
            return False
        if no_restart:
            record["killed"] = True
            record["death_cause"] = reason or "killed by microray.kill()"
            await self.save(record)
        if record["state"] == "ALIVE":
            await self._kill_worker(record)
        elif no_restart:
            task = self.tasks.pop(actor_id, None)
            if task is not None:
                task.cancel()
            # a worker may already be leased and running the constructor: end it too
            await self._kill_worker(record)
            await self._kill_owned(record)
            await self._mark_dead(record, record["death_cause"])
        return True

    async def _kill_owned(self, record: dict) -> None:
        """Fate sharing, as in Ray: the non-detached actors an actor created die with
        the process that created them (called when that process is gone)."""
        address = record.get("address")
        if not address:
            return
        for other in list(self.records.values()):
            if (other is not record and other.get("owner") == address and other["state"] != "DEAD"
                    and other.get("lifetime") != "detached"):
                await self.kill(other["actor_id"], True, f"its owner, the actor {record['actor_id']}, died")

    async def job_finished(self, job_id: str) -> None:
        """Non-detached actors die with the job that created them."""
        for record in list(self.records.values()):
            if record.get("job_id") == job_id and record.get("lifetime") != "detached" and record["state"] != "DEAD":
                await self.kill(record["actor_id"], True, "its owner (the job's driver) exited")

    async def close(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await self.channels.close()
