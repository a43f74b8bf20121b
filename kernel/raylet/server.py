"""The raylet: registers its node with the GCS, owns the node's resources, runs
the worker pool (through the zygote) and grants worker leases, asking the
scheduling policy plugin where each request should run.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import shutil
import signal
import time
from typing import Any

import grpc
import structlog

from microray import config as config_mod
from microray.ids import new_hex_id
from microray.object_store_access import node_namespace, open_object_store, sweep_stale_namespaces
from microray.plugin_manager import get_plugin_manager
from microray.process import pid_alive
from microray.protocol import common_pb2, gcs_pb2, gcs_pb2_grpc, raylet_pb2, raylet_pb2_grpc
from microray.raylet.host_stats import HostStats
from microray.raylet.leases import LeaseManager
from microray.raylet.object_manager import ObjectManager
from microray.raylet.owners import LeaseYields, OwnerWatcher, tell_nodes_died, worker_busy
from microray.raylet.runtime_envs import RuntimeEnvs
from microray.raylet.scheduling import LeaseScheduler
from microray.raylet.worker_processes import WorkerProcesses
from microray import redaction, rpc, session
from microray.rpc import bind, is_unavailable, make_server

log = structlog.get_logger(__name__)


def env_hash(runtime_env: dict | None) -> str:
    if not runtime_env:
        return ""
    return json.dumps(runtime_env, sort_keys=True)


class Raylet(raylet_pb2_grpc.RayletServicer):
    def __init__(
        self,
        cfg: config_mod.Config,
        node_id: str,
        session_dir: str,
        gcs_address: str,
        zygote: Any,
        is_head: bool,
        credentials: rpc.Credentials,
    ) -> None:
        self.cfg = cfg
        self.credentials = credentials  # demanded by our server, shown on our calls
        self.node_id = node_id
        self.session_dir = session_dir
        self.gcs_address = gcs_address
        self.procs = WorkerProcesses(
            zygote, node_id=node_id, session_dir=session_dir, on_forked=self.on_worker_forked,
            on_exit=self.on_worker_exit, on_lost=self.on_workers_lost, lookup=self._worker_id_of,
        )
        self.procs.io_loop = cfg.io_loop
        self.procs.tls = dict(cfg.tls)
        self.procs.log_level = cfg.log_level
        self.is_head = is_head
        self.total = node_resources(cfg, is_head)
        self.leases = LeaseManager(self.total)
        pm = get_plugin_manager(cfg.plugins)
        reg = pm.select("scheduling_policy", cfg.scheduling_policy)
        self.scheduler = LeaseScheduler(
            self, reg.factory(**reg.validate_options("scheduling_policy", cfg.scheduling_policy_options)))
        self.config_json = redaction.redacted_json(cfg, pm)  # what RegisterWorker answers: secrets masked
        self.store_namespace = node_namespace(os.getpid(), node_id)
        self.object_store = open_object_store(cfg, self.store_namespace, session_dir)
        try:
            sweep_stale_namespaces(cfg)
        except Exception as exc:  # noqa: BLE001 -- housekeeping must not stop a node
            log.warning("stale_namespace_sweep_failed", error=repr(exc))
        self.address = ""
        self.port = 0
        self.remote_nodes: dict[str, common_pb2.NodeInfo] = {}
        self.gcs_channel: Any = None  # rpc.channel: shows the cluster token
        self.gcs: gcs_pb2_grpc.GcsStub = None  # type: ignore[assignment]  # set by serve() before use
        self._answers: dict[str, asyncio.Future] = {}
        self.stopped = asyncio.Event()
        self.worker_env: dict[str, str] = {}  # worker id -> its runtime env key, until it registers
        self.drivers: dict[str, tuple[int, str]] = {}  # worker id -> (pid, address)
        self.exited_drivers: list[int] = []  # their pids, until a heartbeat carried them
        self._telling: set[asyncio.Task] = set()  # node deaths being told to this node's processes
        self.id_prefixes: dict[str, bytes] = {}  # worker id -> id prefix of the objects it owns
        self.actor_leases: dict[str, str] = {}  # actor lease key -> the lease id granted for it
        self.owners = OwnerWatcher(self.owner_died, self._local_pid, credentials)
        self.exit_code = 0  # 1 when the GCS refused this node (declared dead)
        self.runtime_envs = RuntimeEnvs(session_dir, lambda: self.gcs)
        self.host = HostStats(session_dir)
        self.lease_yields = LeaseYields(self.leases, credentials)  # other owners' requests wait: ask leases back

    # -- node info -------------------------------------------------------------
    def node_info(self) -> common_pb2.NodeInfo:
        usage = self.object_store.usage()
        return common_pb2.NodeInfo(
            node_id=self.node_id,
            ip=self.cfg.node_ip,
            raylet_port=self.port,
            total=common_pb2.ResourceMap(amounts=self.total),
            available=common_pb2.ResourceMap(amounts=self.leases.available),
            state="ALIVE",
            is_head=self.is_head,
            start_time=time.time(),
            object_store_namespace=self.store_namespace,
            object_store_used=usage.used_bytes,
            object_store_capacity=usage.capacity_bytes,
            pid=os.getpid(),
            num_workers=len(self.leases.workers),
            labels={str(k): str(v) for k, v in self.cfg.labels.items()},
            demands=self.scheduler.demands(),
            host=self.host.sample(),
        )

    async def register_with_gcs(self, deadline: float) -> None:
        delay = 0.01
        while True:
            try:
                reply = await self.gcs.RegisterNode(self.node_info(), timeout=2)
                if reply.refused:
                    raise RuntimeError(f"the GCS at {self.gcs_address} refused this node: {reply.refused}")
                log.info("node_registered", node_id=self.node_id, cluster_id=reply.cluster_id)
                return
            except grpc.aio.AioRpcError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"could not reach the GCS at {self.gcs_address}: {exc.details()}") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)

    def free_objects_of(self, worker_id: str) -> None:
        """A process died: its objects are lost (their owner is gone); free their memory."""
        prefix = self.id_prefixes.pop(worker_id, None)
        if not prefix:
            return
        try:
            dead = self.object_store.object_ids(prefix)
            for oid in dead:
                self.object_store.delete(oid)
        except Exception as exc:  # noqa: BLE001 -- housekeeping must not stop the raylet
            log.warning("dead_owner_cleanup_failed", worker_id=worker_id, error=repr(exc))
            return
        if dead:
            log.info("dead_owner_objects_freed", worker_id=worker_id, objects=len(dead))

    def check_drivers(self) -> None:
        """Drivers gone: their objects and leases are freed; the next heartbeat tells the GCS."""
        for worker_id, (pid, _address) in list(self.drivers.items()):
            if not pid_alive(pid):
                self.drivers.pop(worker_id, None)
                self.exited_drivers.append(pid)
                self.free_objects_of(worker_id)
                self.owner_died(worker_id, f"its process (pid {pid}) exited")

    # -- lease owners ------------------------------------------------------------
    def _local_pid(self, owner_id: str) -> int | None:
        driver = self.drivers.get(owner_id)
        if driver is not None:
            return driver[0]
        w = self.leases.workers.get(owner_id)
        return w.pid if w is not None else None

    def owner_died(self, owner_id: str, reason: str) -> None:
        """A lease owner (driver or worker, on any node) is gone: its waiting requests are
        answered as cancelled and never granted, and each worker leased to it comes back:
        to the pool when idle, killed when it still runs the dead owner's task."""
        self.owners.forget(owner_id)
        queued, held = self.leases.owner_died(owner_id)
        dropped = [p.lease_id for p in queued] + self.scheduler.cancel(lambda r: r.owner_worker_id == owner_id)
        if not dropped and not held:
            return
        log.info("lease_owner_died", owner=owner_id, reason=reason, requests=len(dropped),
                 leases=[w.lease_id for w in held])
        for lease_id in dropped:
            fut = self._answers.pop(lease_id, None)
            if fut is not None and not fut.done():
                fut.set_result(None)
        loop = asyncio.get_running_loop()
        for w in held:
            loop.create_task(self._take_back(w.worker_id, w.lease_id, w.address))

    async def _take_back(self, worker_id: str, lease_id: str, address: str) -> None:
        busy = await worker_busy(address, self.credentials)
        w = self.leases.workers.get(worker_id)
        if w is None or w.lease_id != lease_id:
            return  # returned, or exited, meanwhile
        if busy:
            log.info("worker_of_dead_owner_killed", worker_id=worker_id, worker_pid=w.pid, lease=lease_id)
            self.leases.worker_exited(worker_id)
            self._kill_worker(w.pid, "its lease owner died while it ran the owner's task")
            self.free_objects_of(worker_id)
            self.owner_died(worker_id, "killed: it ran a task of a dead owner")
        else:
            self.leases.release(lease_id)
        self.dispatch()

    def reap_idle_workers(self) -> None:
        """Workers idle longer than ``idle_worker_kill_s`` go, keeping a pool of one
        default-environment worker per CPU ready for the next lease."""
        keep = int(self.total.get("CPU", 1))
        now = time.monotonic()
        idle = sorted(self.leases.idle_workers(), key=lambda w: w.idle_since)
        default_idle = sum(1 for w in idle if not w.env_hash)
        for w in idle:
            if now - w.idle_since < self.cfg.idle_worker_kill_s:
                continue
            if not w.env_hash:
                if default_idle <= keep:
                    continue
                default_idle -= 1
            log.info("idle_worker_stopped", worker_id=w.worker_id, worker_pid=w.pid)
            self._kill_worker(w.pid, "idle")

    async def heartbeat_loop(self) -> None:
        period = self.cfg.heartbeat_period_s
        while True:
            await asyncio.sleep(period)
            self.procs.reap()  # orphans re-parented to us; workers are reaped at once anyway
            self.reap_idle_workers()
            self.check_drivers()
            try:
                usage = self.object_store.usage()
                reply = await self.gcs.Heartbeat(
                    gcs_pb2.HeartbeatRequest(
                        node_id=self.node_id,
                        available=common_pb2.ResourceMap(amounts=self.leases.available),
                        object_store_used=usage.used_bytes,
                        num_workers=len(self.leases.workers),
                        demands=self.scheduler.demands(),
                        host=self.host.sample(),
                        exited_drivers=self.exited_drivers,
                    ),
                    timeout=max(period, 1.0),
                )
                if not reply.reregister:  # a GCS that did not know this node did not read them
                    self.exited_drivers.clear()  # only this loop adds to it (check_drivers above)
                if reply.dead:
                    self.refused(reply.reason)
                    return
                if reply.reregister:
                    log.warning("gcs_asked_to_reregister", node_id=self.node_id)
                    again = await self.gcs.RegisterNode(self.node_info(), timeout=2)
                    if again.refused:
                        self.refused(again.refused)
                        return
            except grpc.aio.AioRpcError as exc:
                log.warning("gcs_unreachable", error=exc.code().name)

    def refused(self, reason: str) -> None:
        """The GCS declared this node dead (it missed heartbeats, e.g. it was stopped or cut
        off): it must not serve again, or the cluster would run two views of its work. Stop
        the node; the raylet exits with code 1."""
        if self.stopped.is_set():
            return
        log.error("node_refused_exiting", node_id=self.node_id, reason=reason,
                  hint="this node's work was given up by the cluster; start a new node to rejoin")
        self.exit_code = 1
        self.stopped.set()

    async def watch_nodes_loop(self) -> None:
        """Keep ``remote_nodes`` (the cluster view the scheduler sees) in step with the GCS
        node table: a join or a death arrives at once (long-poll), resource figures at least
        every heartbeat period. The GCS sends only the entries changed since the last reply."""
        period = self.cfg.heartbeat_period_s
        version, seq, table_id = -1, 0, ""
        table: dict[str, common_pb2.NodeInfo] = {}
        while True:
            try:
                reply = await self.gcs.WatchNodes(
                    gcs_pb2.WatchNodesRequest(version=version, wait_s=period, seq=seq, table_id=table_id),
                    timeout=period + 5,
                )
            except grpc.aio.AioRpcError as exc:
                log.debug("watch_nodes_failed", error=exc.code().name)
                await asyncio.sleep(period)
                continue
            version, seq, table_id = reply.version, reply.seq, reply.table_id
            if not reply.delta:
                table = {}
            elif not reply.nodes:  # nothing changed: pending requests are decided again all the same
                self.scheduler.redecide(view_changed=True)
                continue
            table.update((n.node_id, n) for n in reply.nodes)
            self.apply_node_table(table.values())

    def apply_node_table(self, nodes: Any) -> None:
        remote = {}
        died = []
        for n in nodes:
            if n.node_id == self.node_id:
                if n.state == "DEAD":
                    self.refused(f"node {self.node_id} was declared dead (the GCS node table lists it DEAD); "
                                 "a dead node never serves again: start a new node")
                continue
            remote[n.node_id] = n
            old = self.remote_nodes.get(n.node_id)
            if old is None and n.state == "ALIVE":
                log.info("node_joined_view", peer_node_id=n.node_id, address=f"{n.ip}:{n.raylet_port}")
            elif old is not None and old.state == "ALIVE" and n.state != "ALIVE":
                log.info("node_left_view", peer_node_id=n.node_id, address=f"{n.ip}:{n.raylet_port}")
                died.append(n.node_id)
        self.remote_nodes = remote
        self.scheduler.redecide(view_changed=True)
        if died:  # this node's processes drop their streams to workers there now
            addresses = [w.address for w in self.leases.workers.values() if w.address]
            addresses += [address for _pid, address in self.drivers.values()]
            task = asyncio.get_running_loop().create_task(tell_nodes_died(addresses, died, self.credentials))
            self._telling.add(task)  # held until done (the loop keeps only weak references)
            task.add_done_callback(self._telling.discard)

    # -- zygote / worker pool --------------------------------------------------
    def start_workers(self, env: str, count: int) -> None:
        env_vars = json.loads(env).get("env_vars", {}) if env else {}
        setup = self.runtime_envs.setup(env)
        for _ in range(count):
            worker_id = new_hex_id()
            self.worker_env[worker_id] = env
            self.procs.start(worker_id, env_vars, runtime_env=env, cwd=setup.cwd, sys_path=setup.sys_path)

    def on_worker_forked(self, worker_id: str, pid: int) -> None:
        if worker_id in self.worker_env:  # not registered yet
            self.leases.worker_started(worker_id, pid, self.worker_env.pop(worker_id))

    def on_workers_lost(self, worker_ids: list[str]) -> None:
        """Workers asked for will not start (their zygote died first): start others.
        Their env stays known, in case one was forked after all and registers."""
        for worker_id in worker_ids:
            env = self.worker_env.get(worker_id)
            if env is not None and worker_id not in self.leases.workers:
                self.leases.starting[env] = max(0, self.leases.starting.get(env, 0) - 1)
        self.dispatch()

    def _worker_id_of(self, pid: int) -> str | None:
        w = self.leases.worker_by_pid(pid)
        return w.worker_id if w is not None else None

    def on_worker_exit(self, worker_id: str, pid: int, reason: str) -> None:
        w = self.leases.worker_by_pid(pid)
        expected = reason.startswith("exited with code 0") or "sent by the raylet" in reason
        (log.info if expected else log.warning)(
            "worker_exited", worker_id=worker_id, worker_pid=pid, reason=reason, lease=w.lease_id if w else ""
        )
        if w is not None:
            self.leases.worker_exited(w.worker_id)
        if worker_id:
            self.free_objects_of(worker_id)
            self.owner_died(worker_id, f"its process exited ({reason})")
        if w is not None:
            self.dispatch()

    def dispatch(self) -> None:
        if self.scheduler.waiting:
            self.scheduler.redecide(view_changed=False)
        grants, to_start = self.leases.dispatch()
        for grant in grants:
            fut = self._answers.pop(grant.lease.lease_id, None)
            if fut is not None and not fut.done():
                fut.set_result(grant.worker)
            else:  # the caller went away meanwhile
                self.leases.release(grant.lease.lease_id)
        for env, count in to_start.items():
            self.start_workers(env, count)
        if self.leases.pending:
            self.lease_yields.check()

    # -- RPCs ------------------------------------------------------------------
    async def RequestWorkerLease(self, request, context):
        return await self.scheduler.request_lease(request)

    def _stop_superseded_actor_worker(self, lease_key: str) -> None:
        """The GCS asks again for a worker for the same actor: a worker still leased for an
        earlier attempt (a creation cut off by a GCS restart, whose result nobody will
        collect) is not that actor any more. Stop it, so it does not live and hold its
        resources for ever; its exit returns them."""
        old = self.actor_leases.pop(lease_key, None)
        worker_id = self.leases.by_lease.get(old) if old else None
        w = self.leases.workers.get(worker_id) if worker_id else None
        if w is None or not w.is_actor:
            return
        log.warning("actor_worker_superseded", lease_key=lease_key, worker_id=w.worker_id, worker_pid=w.pid)
        self._kill_worker(w.pid, "its actor was placed again")

    async def ReturnWorker(self, request, context):
        if request.disconnect:
            # the holder lost its stream: the worker is dead or broken; never lease it
            # again (its exit report from the zygote may not have arrived yet)
            worker_id = self.leases.by_lease.get(request.lease_id)
            w = self.leases.worker_exited(worker_id) if worker_id else None
            if w is not None:
                self._kill_worker(w.pid, "its lease holder lost the connection to it")
                self.free_objects_of(w.worker_id)
                self.owner_died(w.worker_id, "its lease holder lost it")
        else:
            self.leases.release(request.lease_id)
        self.dispatch()
        return common_pb2.Empty()

    async def CancelLeaseRequests(self, request, context):
        def match(owner: str, key: str) -> bool:
            return owner == request.owner_worker_id and (not request.lease_key or key == request.lease_key)

        dropped = [p.lease_id for p in self.leases.cancel(lambda p: match(p.owner, p.lease_key))]
        dropped += self.scheduler.cancel(lambda r: match(r.owner_worker_id, r.lease_key))
        answered = 0
        for lease_id in dropped:
            fut = self._answers.pop(lease_id, None)
            if fut is not None and not fut.done():
                fut.set_result(None)
                answered += 1
        return raylet_pb2.CancelLeasesReply(dropped=answered)

    async def RegisterWorker(self, request, context):
        if request.id_prefix:
            self.id_prefixes[request.worker_id] = bytes(request.id_prefix)
        if request.is_driver:
            self.drivers[request.worker_id] = (request.pid, f"{self.cfg.node_ip}:{request.port}")
        else:
            address = f"{self.cfg.node_ip}:{request.port}"
            w = self.leases.worker_registered(request.worker_id, address)
            if w is None:  # the zygote's "forked" line may come after the worker's call
                self.leases.worker_started(request.worker_id, request.pid, self.worker_env.pop(request.worker_id, ""))
                self.leases.worker_registered(request.worker_id, address)
            else:
                self.worker_env.pop(request.worker_id, None)
            self.dispatch()
        return raylet_pb2.RegisterWorkerReply(
            node_id=self.node_id,
            config_json=self.config_json,
            object_store_namespace=self.store_namespace,
            gcs_address=self.gcs_address,
            session_dir=self.session_dir,
        )

    async def NotifyBlocked(self, request, context):
        if self.leases.set_blocked(request.worker_id, True):
            self.dispatch()
        return common_pb2.Empty()

    async def NotifyUnblocked(self, request, context):
        self.leases.set_blocked(request.worker_id, False)
        return common_pb2.Empty()

    async def GetWorkerGpus(self, request, context):
        w = self.leases.workers.get(request.worker_id)
        return raylet_pb2.WorkerGpusReply(gpu_ids=sorted(w.gpus) if w is not None else [])

    async def GetNodeStats(self, request, context):
        workers = [
            raylet_pb2.WorkerStats(
                worker_id=w.worker_id, pid=w.pid, state=("ACTOR" if w.is_actor else w.state),
                address=w.address, actor_id="",
            )
            for w in self.leases.workers.values()
        ]
        for worker_id, (pid, address) in list(self.drivers.items()):
            if not pid_alive(pid):
                continue  # check_drivers cleans up after it (its objects, its leases)
            workers.append(raylet_pb2.WorkerStats(worker_id=worker_id, pid=pid, state="DRIVER", address=address, is_driver=True))
        return raylet_pb2.NodeStatsReply(node=self.node_info(), workers=workers)

    async def GetClusterView(self, request, context):
        return raylet_pb2.ClusterViewReply(nodes=[self.node_info(), *self.remote_nodes.values()])

    async def Shutdown(self, request, context):
        asyncio.get_running_loop().call_later(0.01, self.stopped.set)
        return common_pb2.Empty()

    async def GetWorkerExit(self, request, context):
        reason = await self.procs.exit_reason(request.worker_id, min(max(request.wait_s, 0.0), 10.0))
        return raylet_pb2.WorkerExitReply(reason=reason)

    def _kill_worker(self, pid: int, why: str = "stopped by the raylet") -> None:
        self.procs.kill(pid, why)


HEAD_NODE_RESOURCE = "node:__internal_head__"


def node_resources(cfg: config_mod.Config, is_head: bool = False) -> dict[str, float]:
    """What a node offers: its CPUs, GPUs and custom resources, plus, as in Ray, 1.0 of
    ``node:<its IP>`` (and on the head ``node:__internal_head__``), which a task asks a
    share of to run on that node (``resources={"node:10.0.0.5": 0.01}``)."""
    cpus = cfg.num_cpus if cfg.num_cpus is not None else (os.cpu_count() or 1)
    resources = {"CPU": float(cpus)}
    gpus = cfg.num_gpus or 0
    if gpus:
        resources["GPU"] = float(gpus)
    resources.update({k: float(v) for k, v in cfg.resources.items()})
    resources.setdefault(f"node:{cfg.node_ip}", 1.0)
    if is_head:
        resources.setdefault(HEAD_NODE_RESOURCE, 1.0)
    return resources


async def serve(
    cfg: config_mod.Config,
    node_id: str,
    session_dir: str,
    gcs_address: str,
    port: int,
    zygote: Any,
    is_head: bool,
    ready_fd: int | None,
    credentials: rpc.Credentials,
) -> int:
    gcs_channel = rpc.channel(gcs_address, credentials)
    if not is_head:
        cfg = await joined_config(gcs_pb2_grpc.GcsStub(gcs_channel), gcs_address, cfg)
        # the node's processes (workers, drivers here) read the node's config from its session
        session.write_node_config(session_dir, cfg)
    raylet = Raylet(cfg, node_id, session_dir, gcs_address, zygote, is_head, credentials)
    loop = asyncio.get_running_loop()
    raylet.procs.attach(loop)
    server = make_server(credentials)
    raylet_pb2_grpc.add_RayletServicer_to_server(raylet, server)
    objects = ObjectManager(raylet)
    objects.add_to_server(server)
    raylet.port = bind(server, cfg.node_ip, port)
    raylet.address = f"{cfg.node_ip}:{raylet.port}"
    raylet.procs.raylet_address = raylet.address
    await server.start()
    if cfg.prestart_workers:
        # one worker ready for the first task; the zygote forks more in milliseconds when
        # work needs them (an idle node stays small)
        count = 1
        raylet.leases.starting[""] = count
        raylet.start_workers("", count)
    raylet.gcs_channel = gcs_channel
    raylet.gcs = gcs_pb2_grpc.GcsStub(raylet.gcs_channel)
    await raylet.register_with_gcs(time.monotonic() + 30)
    try:  # the first view before the first lease request
        raylet.apply_node_table((await raylet.gcs.GetAllNodes(common_pb2.Empty(), timeout=5)).nodes)
    except grpc.aio.AioRpcError as exc:
        log.warning("gcs_unreachable", error=exc.code().name)
    if ready_fd is not None:
        os.write(ready_fd, f"{raylet.port} {node_id} {raylet.store_namespace}\n".encode())
        os.close(ready_fd)
    log.info("raylet_started", node_id=node_id, port=raylet.port, resources=raylet.total)
    heartbeats = asyncio.create_task(raylet.heartbeat_loop())
    watch = asyncio.create_task(raylet.watch_nodes_loop())
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, raylet.stopped.set)
    await raylet.stopped.wait()
    heartbeats.cancel()
    raylet.owners.close()
    raylet.lease_yields.close()
    objects.close()
    watch.cancel()
    if not raylet.exit_code:
        try:
            await raylet.gcs.UnregisterNode(gcs_pb2.NodeIdRequest(node_id=node_id), timeout=0.5)
        except grpc.aio.AioRpcError as exc:
            if not is_unavailable(exc):
                log.warning("unregister_failed", error=str(exc))
    for w in list(raylet.leases.workers.values()):
        raylet._kill_worker(w.pid, "the node is stopping")
    raylet.procs.stop()  # the zygote, and workers not registered yet
    await server.stop(grace=0.1)
    raylet.object_store.destroy()
    shutil.rmtree(os.path.join(session_dir, "spill", raylet.store_namespace), ignore_errors=True)
    log.info("raylet_stopped", node_id=node_id, exit_code=raylet.exit_code)
    return raylet.exit_code


async def joined_config(gcs: gcs_pb2_grpc.GcsStub, gcs_address: str, local: config_mod.Config) -> config_mod.Config:
    """The config of a node joining the cluster at ``gcs_address`` (``local``: this
    machine's); fails naming the address when its GCS does not answer within
    ``gcs_rpc_timeout_s`` (at most 15 s: a wrong address should not keep a user waiting)."""
    deadline = time.monotonic() + min(local.gcs_rpc_timeout_s, 15.0)
    while True:
        try:
            reply = await gcs.GetClusterConfig(common_pb2.Empty(), timeout=max(0.5, min(5.0, deadline - time.monotonic())))
            break
        except grpc.aio.AioRpcError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no microray GCS answers at {gcs_address} ({exc.code().name}: "
                                   f"{exc.details()}); is the head running, and is it the right address?") from None
            await asyncio.sleep(0.2)
    cfg = config_mod.joining_node_config(config_mod.Config.from_json(reply.config_json), local)
    log.info("joining_cluster", gcs_address=gcs_address, cluster_id=reply.cluster_id)
    return cfg


def run(args: Any, zygote: Any, ready_fd: int | None) -> int:
    """Serve until stopped; the exit code the process should end with."""
    cfg = session.read_node_config(args.config_file)
    credentials = rpc.Credentials(zygote.args["token"], cfg.tls)
    return rpc.run(
        serve(cfg, args.node_id, args.session_dir, args.gcs_address, args.port, zygote, args.head, ready_fd,
              credentials),
        cfg.io_loop,
    )

