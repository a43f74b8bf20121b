"""The object manager: each raylet serves the objects in its node's store to other nodes,
and pulls into its store the objects that processes of its node need and lack.

How an object moves (Ray's ownership model): a process of node C needs object X that
C's store lacks, and asks C's raylet (``FetchObject``, with X's owner). The raylet asks
the owner where X's copies are (``GetObjectLocations``: the node X was sealed on first,
then nodes that pulled it), picks one holder and pulls X from that holder's raylet over
one streaming call (``/microray.ObjectChunks/Pull``): the holder sends X's size first,
then its bytes in chunks (``object_transfer_chunk_bytes``), which C writes straight into
a buffer ``create``d in its store with X's size, and seals. So a transfer holds at most
a chunk or two in memory besides that buffer, and the reader on C maps X from C's store
like any local object. C then tells the owner it holds a copy (``AddObjectLocation``).

- Requests for one object share one transfer (the in-flight table of
  ``transfers.TransferTable``); at most ``object_transfer_max_active`` transfers run at
  once, the others wait for a slot.
- A holder that fails before the last byte (unreachable, killed, lost the object) is
  marked failed for this transfer and the next location is tried; when none is left the
  object is lost (``transfers.lost_reason`` says why).
- A pulled copy is secondary: it is deleted when the owner frees the object (the owner
  sends ``FreeObjects`` to its own raylet, which forwards it to every node that holds a
  copy) or dies (the raylet watches the owner of each copy), and the oldest copies are
  dropped before a pull would take the store past ``EVICT_FRACTION`` of its capacity.
- Nothing crosses between nodes except through these calls, even for nodes on one
  machine: every node has its own store namespace.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any, Protocol

import grpc
import structlog

from microray.config import Config
from microray.protocol import common_pb2, core_worker_pb2, core_worker_pb2_grpc, gcs_pb2_grpc
from microray.protocol import object_manager_pb2 as om_pb2
from microray.protocol import object_manager_pb2_grpc as om_grpc
from microray.raylet.object_sockets import DataServer, receive_into
from microray.raylet.owners import OwnerWatcher
from microray.raylet.transfers import SecondaryCopies, TransferTable, lost_reason
from microray.rpc import ChannelPool, Credentials

log = structlog.get_logger(__name__)

CHUNK_SERVICE = "microray.ObjectChunks"
PULL_METHOD = f"/{CHUNK_SERVICE}/Pull"
SIZE_KEY = "object-size"
PORT_KEY = "data-port"
TICKET_KEY = "ticket"
STALL_S = 30.0          # a source that sends nothing for this long has failed
OWNER_TIMEOUT_S = 10.0  # asking an owner where an object is
NODES_MAX_AGE_S = 1.0   # the node table is read from the GCS at most this often per transfer
EVICT_FRACTION = 0.8    # pulled copies are dropped before a pull takes the store past this


M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def bound_chunk_memory(threshold: int = 1024 * 1024) -> bool:
    """Make this process's allocations of ``threshold`` bytes and more their own mappings,
    given back to the system when freed. Without it glibc raises its mmap threshold
    after the first freed chunk and serves later chunks from its heaps, which keep the
    memory: measured, a 1 GB pull left 40-120 MB of private memory in the raylet."""
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):  # not glibc
        return False


class ObjectManagerHost(Protocol):
    """What the object manager reads from its raylet."""

    cfg: Config
    node_id: str
    object_store: Any
    gcs: gcs_pb2_grpc.GcsStub
    credentials: Credentials  # shown on every call to other raylets and to owners


class PullFailed(Exception):
    """Pulling from one holder failed; another may be tried."""


class ObjectManager(om_grpc.ObjectManagerServicer):
    def __init__(self, host: ObjectManagerHost, channels: ChannelPool | None = None,
                 watcher: Callable[..., OwnerWatcher] = OwnerWatcher) -> None:
        self.host = host
        self.store = host.object_store
        self.node_id = host.node_id
        self.chunk_bytes = host.cfg.object_transfer_chunk_bytes
        self.chunk_delay = host.cfg.testing_object_chunk_delay_s
        self.slots = asyncio.Semaphore(host.cfg.object_transfer_max_active)
        self.channels = channels if channels is not None else ChannelPool(host.credentials)
        self.table = TransferTable(host.node_id)
        self.results: dict[bytes, asyncio.Future] = {}
        self.copies = SecondaryCopies()
        self.freed_while_pulling: set[bytes] = set()
        self.nodes: dict[str, common_pb2.NodeInfo] = {}
        self._nodes_read = -1e9
        self.stats = om_pb2.TransferStats()
        self.running = 0  # transfers holding a slot
        self.owners = watcher(self._owner_died, lambda _owner: None, host.credentials)
        bound_chunk_memory()
        # the data path (object_sockets): not with TLS, whose bytes must stay inside gRPC
        self.data: DataServer | None = None
        self.use_data_path = host.cfg.object_transfer_data_path and not getattr(host.cfg, "tls", None)
        if self.use_data_path:
            self.data = DataServer(host.cfg.node_ip, self._sent_chunk, self.chunk_delay)
        self.receivers = concurrent.futures.ThreadPoolExecutor(
            max_workers=host.cfg.object_transfer_max_active, thread_name_prefix="microray-object-recv")

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Serve ``ObjectManager`` and the raw chunk stream on the raylet's server."""
        om_grpc.add_ObjectManagerServicer_to_server(self, server)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(CHUNK_SERVICE, {
            "Pull": grpc.unary_stream_rpc_method_handler(
                self._serve_pull, request_deserializer=om_pb2.PullRequest.FromString, response_serializer=None),
        }),))

    def close(self) -> None:
        self.owners.close()
        if self.data is not None:
            self.data.close()
        self.receivers.shutdown(wait=False, cancel_futures=True)

    def _sent_chunk(self, nbytes: int) -> None:
        self.stats.bytes_served += nbytes
        self.stats.chunks_served += 1

    def _pulled_chunk(self) -> None:
        self.stats.chunks_pulled += 1

    # -- serving -----------------------------------------------------------------------
    async def _serve_pull(self, request: om_pb2.PullRequest, context: grpc.aio.ServicerContext):
        oid = request.object_id
        view = self.store.get(oid)
        if view is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"object {oid.hex()} is not in the store of node {self.node_id}")
        view = view.cast("B") if view.format != "B" else view
        size = view.nbytes
        chunk = max(64 * 1024, min(request.chunk_size or self.chunk_bytes, 64 * 1024 * 1024))
        stats = self.stats
        stats.pulls_served += 1
        if request.data_path and self.data is not None:
            ticket, claimed, done = self.data.issue(view, chunk)
            del view
            await context.send_initial_metadata(
                ((SIZE_KEY, str(size)), (PORT_KEY, str(self.data.port)), (TICKET_KEY, ticket.hex())))
            try:
                await asyncio.wait_for(asyncio.shield(claimed), STALL_S)
            except asyncio.TimeoutError:
                self.data.revoke(ticket)
                await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"the ticket for {oid.hex()} was not used")
            except asyncio.CancelledError:
                self.data.revoke(ticket)
                raise
            error = await done  # the call lasts as long as the transfer
            if error is not None:
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"sending {oid.hex()} failed: {error!r}")
            return
        await context.send_initial_metadata(((SIZE_KEY, str(size)),))
        try:
            for off in range(0, size, chunk):
                if self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)
                data = bytes(view[off:off + chunk])
                stats.bytes_served += len(data)
                stats.chunks_served += 1
                yield data
        finally:
            del view

    async def GetTransferStats(self, request, context):
        s = om_pb2.TransferStats()
        s.CopyFrom(self.stats)
        s.secondary_copies = len(self.copies)
        s.secondary_bytes = self.copies.total_bytes
        s.active = self.running
        return s

    # -- fetching for processes of this node --------------------------------------------
    async def FetchObject(self, request, context):
        oid = request.object_id
        if oid not in self.table.active and self.store.contains(oid):
            return om_pb2.FetchObjectReply(ok=True)
        if self.table.request(oid, request.owner_address):
            fut = self.results[oid] = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().create_task(self._transfer(oid, request.owner_address))
        else:
            self.stats.fetches_joined += 1
            fut = self.results[oid]
        return await asyncio.shield(fut)

    async def _transfer(self, oid: bytes, owner: str) -> None:
        try:
            async with self.slots:
                self.running += 1
                self.stats.max_active = max(self.stats.max_active, self.running)
                try:
                    reply = await self._bring(oid, owner)
                finally:
                    self.running -= 1
        except Exception as exc:  # noqa: BLE001 -- the waiters get the error, the raylet lives on
            log.warning("object_transfer_failed", object_id=oid.hex(), error=repr(exc))
            reply = om_pb2.FetchObjectReply(error=f"pulling object {oid.hex()} failed: {exc!r}")
        finally:
            self.table.finish(oid)
        fut = self.results.pop(oid)
        if not fut.done():
            fut.set_result(reply)

    async def _bring(self, oid: bytes, owner: str) -> om_pb2.FetchObjectReply:
        if self.store.contains(oid):  # sealed meanwhile by a process of this node
            return om_pb2.FetchObjectReply(ok=True)
        locations, owner_said = await self._locations(oid, owner)
        while True:
            if owner_said:
                alive: set[str] = set()
            else:
                alive = await self._alive_nodes(oid, locations)
            source = None if owner_said else self.table.choose_source(oid, locations, alive)
            if source is None:
                t = self.table.active[oid]
                why = lost_reason(oid, locations, t.failed, alive, owner_said)
                self.stats.objects_lost += 1
                log.warning("object_lost", object_id=oid.hex(), owner=owner, why=why)
                return om_pb2.FetchObjectReply(lost=True, error=why)
            try:
                size = await self._pull_from(oid, source)
            except PullFailed as exc:
                self.stats.source_failures += 1
                self.table.source_failed(oid, source, str(exc))
                log.info("object_pull_source_failed", object_id=oid.hex(), source=source, error=str(exc))
                continue
            break
        await self._registered(oid, owner, size)
        return om_pb2.FetchObjectReply(ok=True)

    async def _locations(self, oid: bytes, owner: str) -> tuple[list[str], str]:
        """The owner's list of nodes holding ``oid``, or why it has none."""
        stub = core_worker_pb2_grpc.CoreWorkerStub(self.channels.get(owner))
        try:
            reply = await stub.GetObjectLocations(core_worker_pb2.ObjectLocationsRequest(object_id=oid),
                                                  timeout=OWNER_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            return [], f"its owner ({owner}) is unreachable: {exc.code().name}"
        if not reply.known:
            return [], f"its owner ({owner}) does not hold it: {reply.why}"
        return list(reply.node_ids), ""

    async def _alive_nodes(self, oid: bytes, locations: list[str]) -> set[str]:
        """Alive node ids, from the GCS's table (read again when a location is unknown)."""
        loop = asyncio.get_running_loop()
        stale = loop.time() - self._nodes_read > NODES_MAX_AGE_S
        if stale or any(n not in self.nodes for n in locations if n != self.node_id):
            try:
                reply = await self.host.gcs.GetAllNodes(common_pb2.Empty(), timeout=5)
                self.nodes = {n.node_id: n for n in reply.nodes}
                self._nodes_read = loop.time()
            except grpc.aio.AioRpcError as exc:
                log.warning("object_manager_gcs_unreachable", object_id=oid.hex(), error=exc.code().name)
        return {n for n, info in self.nodes.items() if info.state == "ALIVE"}

    async def _pull_from(self, oid: bytes, node_id: str) -> int:
        """Pull ``oid`` from ``node_id``'s raylet into this node's store; its size."""
        info = self.nodes[node_id]
        address = f"{info.ip}:{info.raylet_port}"
        method = self.channels.get(address).unary_stream(
            PULL_METHOD, request_serializer=om_pb2.PullRequest.SerializeToString, response_deserializer=None)
        call = method(om_pb2.PullRequest(object_id=oid, chunk_size=self.chunk_bytes, data_path=self.use_data_path))
        started = asyncio.get_running_loop().time()
        buf = None
        try:
            md = dict(await asyncio.wait_for(call.initial_metadata(), STALL_S) or ())
            size = int(md.get(SIZE_KEY, "-1"))
            if size < 0:
                code = await call.code()
                raise PullFailed(f"{code.name}: {await call.details()}")
            self._make_room(oid, size)
            try:
                buf = self.store.create(oid, size)
            except FileExistsError:  # a process of this node is sealing it: wait for it
                return await self._wait_sealed(oid, size)
            if PORT_KEY in md:  # the data path: the bytes come over a socket of their own
                try:
                    off = await asyncio.get_running_loop().run_in_executor(
                        self.receivers, receive_into, (info.ip, int(md[PORT_KEY])), bytes.fromhex(md[TICKET_KEY]),
                        buf, self.chunk_bytes, self._pulled_chunk, STALL_S)
                except OSError as exc:
                    raise PullFailed(f"the data stream from node {node_id} failed: {exc!r}") from None
            else:
                off = await self._read_chunks(call, buf, size, node_id)
            if off != size:
                raise PullFailed(f"the stream from node {node_id} ended after {off} of {size} bytes")
            buf = None  # the store's writer mapping goes with the last reference
            try:
                self.store.seal(oid)
            except BaseException:
                self.store.abort(oid)
                raise
        except grpc.aio.AioRpcError as exc:
            raise PullFailed(f"{exc.code().name}: {exc.details()}") from None
        except asyncio.TimeoutError:
            raise PullFailed(f"node {node_id} sent nothing for {STALL_S:.0f} s") from None
        finally:
            call.cancel()
            if buf is not None:
                buf = None
                self.store.abort(oid)
        self.stats.pulls_completed += 1
        self.stats.bytes_pulled += size
        seconds = asyncio.get_running_loop().time() - started
        log.info("object_pulled", object_id=oid.hex(), source=node_id, size=size, seconds=round(seconds, 3),
                 gb_per_s=round(size / max(seconds, 1e-9) / 1e9, 2))
        return size

    async def _read_chunks(self, call: Any, buf: memoryview, size: int, node_id: str) -> int:
        """The bytes as chunks of the gRPC stream itself (a holder without the data path)."""
        off = 0
        while True:
            chunk = await asyncio.wait_for(call.read(), STALL_S)
            if chunk is grpc.aio.EOF:
                return off
            n = len(chunk)
            if off + n > size:
                raise PullFailed(f"node {node_id} sent more than the {size} bytes it announced")
            buf[off:off + n] = chunk
            off += n
            self.stats.chunks_pulled += 1

    async def _wait_sealed(self, oid: bytes, size: int) -> int:
        for _ in range(int(STALL_S / 0.05)):
            if self.store.contains(oid):
                return size
            await asyncio.sleep(0.05)
        raise PullFailed(f"object {oid.hex()} was being written on this node and never sealed")

    def _make_room(self, oid: bytes, size: int) -> None:
        """Drop the oldest pulled copies so that ``size`` more bytes fit below
        ``EVICT_FRACTION`` of the store's capacity."""
        if not self.copies:
            return
        usage = self.store.usage()
        for victim in self.copies.to_evict(size, usage.used_bytes, int(usage.capacity_bytes * EVICT_FRACTION),
                                           keep=self.table.active):
            self.copies.remove(victim)
            self.store.delete(victim)
            self.stats.secondary_evicted += 1
            log.info("object_copy_evicted", object_id=victim.hex(), for_object=oid.hex())

    async def _registered(self, oid: bytes, owner: str, size: int) -> None:
        """Tell the owner this node holds a copy; drop the copy when the owner has let go."""
        if oid in self.freed_while_pulling:
            self.freed_while_pulling.discard(oid)
            self.store.delete(oid)
            return
        self.copies.add(oid, size, owner)
        self.owners.watch(owner, owner)
        stub = core_worker_pb2_grpc.CoreWorkerStub(self.channels.get(owner))
        try:
            reply = await stub.AddObjectLocation(
                core_worker_pb2.ObjectLocationRequest(object_id=oid, node_id=self.node_id), timeout=OWNER_TIMEOUT_S)
            known = reply.known
        except grpc.aio.AioRpcError:
            known = False
        if not known:  # freed meanwhile, or the owner is gone: the copy is nobody's
            self._drop_copy(oid)

    # -- freeing -----------------------------------------------------------------------
    async def FreeObjects(self, request, context):
        for oid in request.object_ids:
            if oid in self.table.active:
                self.freed_while_pulling.add(oid)
            self._drop_copy(oid, freed=True)
        for node_id in request.forward_to:
            if node_id != self.node_id:
                asyncio.get_running_loop().create_task(self._forward_free(node_id, list(request.object_ids)))
        return common_pb2.Empty()

    def _drop_copy(self, oid: bytes, freed: bool = False) -> None:
        if self.copies.remove(oid) and freed:
            self.stats.secondary_freed += 1
        try:
            self.store.delete(oid)
        except Exception as exc:  # noqa: BLE001 -- freeing must not stop the raylet
            log.warning("object_free_failed", object_id=oid.hex(), error=repr(exc))

    async def _forward_free(self, node_id: str, oids: list[bytes]) -> None:
        info = self.nodes.get(node_id)
        if info is None:
            await self._alive_nodes(oids[0], [node_id])
            info = self.nodes.get(node_id)
        if info is None or info.state != "ALIVE":
            return  # a dead node's store is gone with it
        stub = om_grpc.ObjectManagerStub(self.channels.get(f"{info.ip}:{info.raylet_port}"))
        try:
            await stub.FreeObjects(om_pb2.FreeObjectsRequest(object_ids=oids), timeout=10)
        except grpc.aio.AioRpcError as exc:
            log.info("object_free_forward_failed", node=node_id, error=exc.code().name)

    def _owner_died(self, owner: str, reason: str) -> None:
        """The owner of some pulled copies is gone: its objects die with it."""
        self.owners.forget(owner)
        dead = self.copies.of_owner(owner)
        for oid in dead:
            self._drop_copy(oid)
        if dead:
            log.info("dead_owner_copies_freed", owner=owner, reason=reason, objects=len(dead))
