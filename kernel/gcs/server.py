"""The GCS service: the cluster's metadata, kept only through the GcsStore plugin.

Run as its own process (``python -m microray.gcs.server``) so that it can be
killed and restarted while raylets and workers keep running; with a durable
store (Redis, etcd) a restarted GCS finds every node, job, actor and KV entry.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import pickle
import signal
import sys
import time
from typing import Any

import grpc
import structlog

from microray import config as config_mod
from microray import log as log_setup
from microray import proctitle, redaction, session
from microray.plugin_manager import get_plugin_manager
from microray.protocol import common_pb2, gcs_pb2, gcs_pb2_grpc, raylet_pb2_grpc
from microray.process import pid_alive as _pid_alive, report_start_failure
from microray import rpc
from microray.gcs.actor_manager import ActorManager
from microray.gcs.actor_record import ActorRecord, ActorState
from microray.gcs.history import ClusterHistory
from microray.gcs.logs import LogBroker
from microray.gcs.task_store import TaskStore
from microray.rpc import bind, make_server

log = structlog.get_logger(__name__)

# 2: actor records are ActorTableData messages (protocol/actor_table.proto), no longer pickles
SCHEMA_VERSION = 2
CLUSTER_EVENTS_KEPT = 1000  # the newest cluster events the GCS keeps in memory

T_KV = "kv"
T_NODES = "nodes"
T_JOBS = "jobs"
T_NAMED = "named_actors"
T_META = "meta"
# after a job ended, task events of its processes (flushed every 0.5 s) may still arrive:
# its unfinished tasks are marked FAILED again after this long
JOB_END_GRACE_S = 3.0


def _kv_key(ns: str, key: bytes) -> bytes:
    return ns.encode() + b"\x00" + key


class GcsServicer(gcs_pb2_grpc.GcsServicer):
    def __init__(self, store: Any, config: config_mod.Config, cluster_id: str,
                 credentials: rpc.Credentials) -> None:
        self.store = store
        # what happened to the cluster, for `microray list cluster-events` (bounded)
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=CLUSTER_EVENTS_KEPT)
        self.credentials = credentials  # what the GCS shows raylets and workers it calls
        self.config = config
        self.cluster_id = cluster_id
        self.pm = get_plugin_manager()
        # what GetClusterConfig and RegisterNode answer: secrets masked
        self.config_json = redaction.redacted_json(config, self.pm)
        self.host = "127.0.0.1"
        self.last_heartbeat: dict[str, float] = {}
        self.dead_reasons: dict[str, str] = {}  # node id -> why it was declared dead
        self.nodes: dict[str, common_pb2.NodeInfo] = {}
        # bumped on every change of the node table's membership (join, leave, death);
        # WatchNodes callers wait on it
        self.node_version = 0
        self._nodes_changed = asyncio.Event()
        # every change of an entry a raylet's cluster view holds (membership, resources,
        # store use) is numbered: WatchNodes sends a caller only what changed since its last
        # reply, so an idle cluster of N nodes costs O(N) per period, not O(N^2)
        self.table_id = os.urandom(8).hex()
        self.node_seq = 0
        self._changed_at: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._job_lock = asyncio.Lock()
        self._named_lock = asyncio.Lock()
        self.actors = ActorManager(self)
        self.task_store = TaskStore(config.task_history_cap)
        self.logs = LogBroker()
        self.history = ClusterHistory(self.nodes.values, lambda: self.task_store.counts,
                                      config.metrics_sample_period_s, config.metrics_history_points)

    async def load(self) -> None:
        """Rebuild in-memory views after a (re)start from the store."""
        now = time.time()
        for key, raw in (await self.store.get_all(T_NODES)).items():
            info = common_pb2.NodeInfo.FromString(raw)
            self.nodes[info.node_id] = info
            if info.state == "ALIVE":
                # give live nodes a full grace period to heartbeat the new GCS
                self.last_heartbeat[info.node_id] = now
                self.actors.spawn_background(self._probe_recovered_node(info))
        await self.actors.load()
        if self.nodes:
            log.info("gcs_state_recovered", nodes=len(self.nodes), actors=len(self.actors.records))

    # -- KV ----------------------------------------------------------------
    async def KvPut(self, request, context):
        added = await self.store.put(T_KV, _kv_key(request.ns, request.key), request.value, request.overwrite)
        return gcs_pb2.KvPutReply(added=added)

    async def KvGet(self, request, context):
        value = await self.store.get(T_KV, _kv_key(request.ns, request.key))
        if value is None:
            return gcs_pb2.KvGetReply(found=False)
        return gcs_pb2.KvGetReply(found=True, value=value)

    async def KvDel(self, request, context):
        if request.by_prefix:
            keys = list(await self.store.get_all(T_KV, _kv_key(request.ns, request.key)))
            n = await self.store.batch_delete(T_KV, keys) if keys else 0
        else:
            n = int(await self.store.delete(T_KV, _kv_key(request.ns, request.key)))
        return gcs_pb2.KvDelReply(deleted=n)

    async def KvKeys(self, request, context):
        prefix = _kv_key(request.ns, request.prefix)
        strip = len(request.ns.encode()) + 1
        keys = [k[strip:] for k in await self.store.get_all(T_KV, prefix)]
        return gcs_pb2.KvKeysReply(keys=keys)

    # -- nodes ---------------------------------------------------------------
    async def GetClusterConfig(self, request, context):
        return gcs_pb2.ClusterConfigReply(config_json=self.config_json, cluster_id=self.cluster_id)

    def _node_entry_changed(self, node_id: str) -> None:
        self.node_seq += 1
        self._changed_at[node_id] = self.node_seq
        self._changed_at.move_to_end(node_id)

    def _node_table_changed(self, node_id: str) -> None:
        self._node_entry_changed(node_id)
        self.node_version += 1
        self._nodes_changed.set()
        self._nodes_changed = asyncio.Event()

    def _dead_reason(self, info: common_pb2.NodeInfo) -> str:
        why = self.dead_reasons.get(info.node_id, "recorded DEAD in the GCS store")
        return (f"node {info.node_id} ({info.ip}:{info.raylet_port}) was declared dead ({why}); a dead "
                "node never serves again: start a new node")

    async def RegisterNode(self, request, context):
        known = self.nodes.get(request.node_id)
        if known is not None and known.state == "DEAD":
            # no split brain: a node declared dead stays dead; its raylet must exit
            log.warning("dead_node_refused", node_id=request.node_id, address=f"{request.ip}:{request.raylet_port}")
            return gcs_pb2.RegisterNodeReply(refused=self._dead_reason(known), cluster_id=self.cluster_id)
        info = common_pb2.NodeInfo()
        info.CopyFrom(request)
        info.state = "ALIVE"
        info.last_heartbeat = time.time()
        self.nodes[info.node_id] = info
        self.last_heartbeat[info.node_id] = time.time()
        await self.store.put(T_NODES, info.node_id.encode(), info.SerializeToString())
        log.info("node_registered", node_id=info.node_id, address=f"{info.ip}:{info.raylet_port}")
        self._node_table_changed(info.node_id)
        self._event("INFO", "NODE_ADDED", f"node {info.node_id} at {info.ip} joined" + (" (head)" if info.is_head else ""),
                    node_id=info.node_id)
        self._notify("microray_node_added", node=_node_dict(info))
        return gcs_pb2.RegisterNodeReply(config_json=self.config_json, cluster_id=self.cluster_id)

    async def UnregisterNode(self, request, context):
        await self._mark_dead(request.node_id, "unregistered")
        return common_pb2.Empty()

    async def Heartbeat(self, request, context):
        info = self.nodes.get(request.node_id)
        if info is None:  # this GCS never knew it (restarted without its state)
            return gcs_pb2.HeartbeatReply(reregister=True)
        if info.state != "ALIVE":
            return gcs_pb2.HeartbeatReply(dead=True, reason=self._dead_reason(info))
        self.last_heartbeat[request.node_id] = time.time()
        if (info.available != request.available or info.object_store_used != request.object_store_used
                or info.num_workers != request.num_workers or list(info.demands) != list(request.demands)):
            info.available.CopyFrom(request.available)
            info.object_store_used = request.object_store_used
            info.num_workers = request.num_workers
            del info.demands[:]
            info.demands.extend(request.demands)
            self._node_entry_changed(request.node_id)
        if request.HasField("host"):  # machine figures: fresh in GetAllNodes, no change for watchers
            info.host.CopyFrom(request.host)
        info.last_heartbeat = time.time()
        if request.exited_drivers:  # in the background: ending a job (its actors) takes calls
            self.actors.spawn_background(self._fail_jobs_of_dead_drivers(info.ip, set(request.exited_drivers)))
        return gcs_pb2.HeartbeatReply(reregister=False)

    async def GetAllNodes(self, request, context):
        return gcs_pb2.NodeList(nodes=list(self.nodes.values()), version=self.node_version)

    async def PublishLogs(self, request, context):
        self.logs.publish(request)
        return common_pb2.Empty()

    async def PollLogs(self, request, context):
        return await self.logs.poll(request.job_id, request.after, request.wait_s)

    async def WatchNodes(self, request, context):
        if request.version == self.node_version and request.wait_s > 0:
            try:
                await asyncio.wait_for(self._nodes_changed.wait(), min(request.wait_s, 60.0))
            except asyncio.TimeoutError:
                pass
        return self.node_table_since(request.seq, request.table_id)

    def node_table_since(self, seq: int, table_id: str) -> gcs_pb2.NodeList:
        """The node entries changed after change number ``seq`` of table ``table_id`` (a
        delta), or the whole table when the caller has none of this GCS's (``seq`` 0,
        another table id: this GCS restarted, or a number it never gave). ``last_heartbeat``
        and ``host`` (the machine's figures) alone are no change: they are fresh in
        GetAllNodes only."""
        reply = gcs_pb2.NodeList(version=self.node_version, seq=self.node_seq, table_id=self.table_id)
        if seq <= 0 or table_id != self.table_id or seq > self.node_seq:
            reply.nodes.extend(self.nodes.values())
            return reply
        reply.delta = True
        for node_id in reversed(self._changed_at):
            if self._changed_at[node_id] <= seq:
                break
            reply.nodes.append(self.nodes[node_id])
        return reply

    async def _mark_dead(self, node_id: str, reason: str) -> None:
        info = self.nodes.get(node_id)
        if info is None or info.state == "DEAD":
            return
        info.state = "DEAD"
        self.dead_reasons[node_id] = reason
        self.last_heartbeat.pop(node_id, None)
        self._node_table_changed(node_id)
        await self.store.put(T_NODES, node_id.encode(), info.SerializeToString())
        (log.info if reason == "unregistered" else log.warning)("node_dead", node_id=node_id, reason=reason)
        self._event("INFO" if reason == "unregistered" else "WARNING", "NODE_REMOVED",
                    f"node {node_id} at {info.ip} is dead: {reason}", node_id=node_id)
        self._notify("microray_node_removed", node=_node_dict(info))
        self.actors.node_died(node_id, reason)

    async def _probe_recovered_node(self, info: common_pb2.NodeInfo) -> None:
        """A node recorded ALIVE before this GCS started: when nothing listens at its raylet's
        address any more (the head machine crashed and came back as a new node), or another
        node does, it is gone — mark it DEAD now, not after node_dead_after_s, so that no
        raylet sends work to it meanwhile. A live but slow raylet is left to the heartbeats
        (and one marked DEAD by mistake re-registers on its next heartbeat)."""
        address = f"{info.ip}:{info.raylet_port}"
        stub = raylet_pb2_grpc.RayletStub(self.actors.channels.get(address))
        try:
            reply = await stub.GetNodeStats(common_pb2.Empty(), timeout=5)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                await self._mark_dead(info.node_id, f"its raylet at {address} is unreachable ({exc.details()})")
            return
        if reply.node.node_id != info.node_id:
            await self._mark_dead(info.node_id, f"another node ({reply.node.node_id}) runs at {address}")

    async def monitor_nodes(self) -> None:
        """Declare dead every node whose last heartbeat is older than node_dead_after_s.

        When this loop itself was held up (the GCS process stalled), the heartbeats that
        arrived meanwhile are still queued: the stall is added to every node's grace, so a
        slow GCS never declares healthy nodes dead."""
        timeout = self.config.node_dead_after_s
        interval = min(0.25, timeout / 4)
        last_tick = time.monotonic()
        last_drivers = 0.0
        while True:
            await asyncio.sleep(interval)
            tick = time.monotonic()
            stall = tick - last_tick - interval
            last_tick = tick
            now = time.time()
            if stall > interval:
                log.warning("gcs_monitor_stalled", seconds=round(stall, 2))
                for node_id in list(self.last_heartbeat):
                    self.last_heartbeat[node_id] += stall
                continue
            for node_id, last in list(self.last_heartbeat.items()):
                if now - last > timeout:
                    await self._mark_dead(node_id, f"no heartbeat for {now - last:.1f}s "
                                                   f"(node_dead_after_s={timeout:g})")
            if tick - last_drivers >= 1.0:
                last_drivers = tick
                await self._check_drivers()

    async def _check_drivers(self) -> None:
        """A driver on this machine that died without saying so finishes its job (drivers
        of other machines: their node's raylet says so in its heartbeat)."""
        await self._fail_jobs_of_dead_drivers(self.host, None)

    async def _fail_jobs_of_dead_drivers(self, ip: str, pids: set[int] | None) -> None:
        """Every RUNNING job whose driver ran at ``ip`` with a pid in ``pids`` (None: any
        pid that is no longer alive on this machine) is FAILED."""
        for raw in (await self.store.get_all(T_JOBS)).values():
            job = gcs_pb2.JobInfo.FromString(raw)
            if job.state != "RUNNING" or job.driver_ip != ip or not job.driver_pid:
                continue
            dead = job.driver_pid in pids if pids is not None else not _pid_alive(job.driver_pid)
            if not dead:
                continue
            log.info("driver_died", job_id=job.job_id, pid=job.driver_pid, ip=ip)
            await self.MarkJobFinished(gcs_pb2.JobIdRequest(
                job_id=job.job_id, state="FAILED",
                message=f"the driver (pid {job.driver_pid}) exited without disconnecting (killed, or it crashed)"),
                None)

    # -- jobs ----------------------------------------------------------------
    async def AddJob(self, request, context):
        async with self._job_lock:
            raw = await self.store.get(T_META, b"job_counter")
            counter = int(raw or b"0") + 1
            await self.store.put(T_META, b"job_counter", str(counter).encode())
        job = gcs_pb2.JobInfo()
        job.CopyFrom(request)
        job.job_id = counter.to_bytes(4, "little").hex()
        job.state = "RUNNING"
        job.start_time = time.time()
        await self.store.put(T_JOBS, job.job_id.encode(), job.SerializeToString())
        self._event("INFO", "JOB_STARTED", f"job {job.job_id} started (driver pid {job.driver_pid})", job_id=job.job_id)
        return gcs_pb2.AddJobReply(job_id=job.job_id)

    async def MarkJobFinished(self, request, context):
        """The job's driver ended: FINISHED, or as ``request.state`` says (FAILED: an
        uncaught exception or a death without disconnecting; STOPPED: interrupted). Its
        tasks that did not end are marked FAILED (now, and once more after the grace in
        which its processes' last task events still arrive), its actors die."""
        raw = await self.store.get(T_JOBS, request.job_id.encode())
        how = "its driver exited"
        if raw is not None:
            job = gcs_pb2.JobInfo.FromString(raw)
            if job.state == "RUNNING":
                job.state = request.state or "FINISHED"
                job.message = request.message
                job.end_time = time.time()
                await self.store.put(T_JOBS, request.job_id.encode(), job.SerializeToString())
                ended = f"job {job.job_id} {job.state.lower()}" + (f": {job.message}" if job.message else "")
                self._event("INFO", "JOB_FINISHED", ended, job_id=job.job_id)
                log.info("job_ended", job_id=job.job_id, state=job.state, message=job.message)
            if job.message:
                how = f"{how}: {job.message}"
        await self.actors.job_finished(request.job_id)
        message = f"job {request.job_id} ended ({how}) before the task finished"
        self._fail_job_tasks(request.job_id, message)
        asyncio.get_running_loop().call_later(JOB_END_GRACE_S, self._fail_job_tasks, request.job_id, message)
        return common_pb2.Empty()

    def _fail_job_tasks(self, job_id: str, message: str) -> None:
        keep = {r.worker_id for r in self.actors.records.values()
                if r.detached and r.state is not ActorState.DEAD and r.worker_id}
        marked = self.task_store.fail_unfinished(job_id, time.time(), message, keep)
        if marked:
            log.info("job_tasks_failed", job_id=job_id, tasks=marked)

    async def GetAllJobs(self, request, context):
        jobs = [gcs_pb2.JobInfo.FromString(v) for v in (await self.store.get_all(T_JOBS)).values()]
        return gcs_pb2.JobList(jobs=jobs)

    # -- actors --------------------------------------------------------------
    async def RegisterActor(self, request, context):
        try:
            record = ActorRecord.from_registration(pickle.loads(request.record))
        except ValueError as exc:
            return gcs_pb2.RegisterActorReply(ok=False, error=str(exc))
        if record.name:
            key = f"{record.namespace}\x00{record.name}".encode()
            async with self._named_lock:
                existing = await self.store.get(T_NAMED, key)
                prior = self.actors.records.get(existing.decode()) if existing else None
                if prior is not None and prior.state is not ActorState.DEAD:
                    return gcs_pb2.RegisterActorReply(
                        ok=False,
                        error=f"Actor with name {record.name!r} already exists in the namespace "
                        f"{record.namespace!r}",
                        existing=pickle.dumps(prior.public()),
                    )
                await self.store.put(T_NAMED, key, record.actor_id.encode())
        await self.actors.register(record)
        return gcs_pb2.RegisterActorReply(ok=True)

    async def GetActor(self, request, context):
        actor_id = request.actor_id
        if not actor_id:
            raw = await self.store.get(T_NAMED, f"{request.namespace}\x00{request.name}".encode())
            if raw is None:
                return gcs_pb2.ActorRecordReply(found=False)
            actor_id = raw.decode()
        await self.actors.wait_reattached(actor_id)
        record = self.actors.records.get(actor_id)
        if record is None:
            return gcs_pb2.ActorRecordReply(found=False)
        return gcs_pb2.ActorRecordReply(found=True, record=pickle.dumps(record.public()))

    async def ListActors(self, request, context):
        records = [pickle.dumps(r.public()) for r in self.actors.records.values()]
        return gcs_pb2.ActorListReply(records=records)

    async def KillActor(self, request, context):
        await self.actors.kill(request.actor_id, request.no_restart, request.reason)
        return common_pb2.Empty()

    # -- task history -----------------------------------------------------------
    async def ReportTaskEvents(self, request, context):
        self.task_store.add(pickle.loads(request.events))
        return common_pb2.Empty()

    async def GetTaskEvents(self, request, context):
        filters = pickle.loads(request.filters) if request.filters else []
        tasks, total = self.task_store.query(filters, request.limit or 100, request.offset)
        if not request.detail:
            tasks = [{k: v for k, v in t.items() if k != "events"} for t in tasks]
        return gcs_pb2.GetTaskEventsReply(
            tasks=pickle.dumps(tasks), total=total,
            counts=pickle.dumps(self.task_store.counts), dropped=self.task_store.dropped,
        )

    async def GetClusterHistory(self, request, context):
        return gcs_pb2.ClusterHistoryReply(
            samples=pickle.dumps(self.history.since(request.since)),
            period_s=self.history.period_s, capacity=self.history.samples.maxlen or 0,
        )

    def actor_changed(self, record: dict[str, Any]) -> None:
        """An actor's state changed (``record``: its public dict): a DEAD actor's name is free."""
        if record.get("state") == "DEAD" and record.get("name"):
            key = f"{record.get('namespace', '')}\x00{record['name']}".encode()
            self.actors.spawn_background(self._drop_name(key, record["actor_id"]))
        if record.get("state") == "DEAD":
            self._event("INFO", "ACTOR_DIED", f"actor {record.get('class_name')} {record.get('actor_id')} is dead: "
                        f"{record.get('death_cause') or 'unknown cause'}", actor_id=record.get("actor_id"))
        self._notify("microray_actor_state_changed", actor=_actor_summary(record))

    async def _drop_name(self, key: bytes, actor_id: str) -> None:
        async with self._named_lock:
            if await self.store.get(T_NAMED, key) == actor_id.encode():
                await self.store.delete(T_NAMED, key)

    # -- observers -----------------------------------------------------------
    def _event(self, severity: str, kind: str, message: str, **ids: Any) -> None:
        self.events.append({"time": time.time(), "severity": severity, "type": kind, "message": message, **ids})

    async def GetClusterEvents(self, request, context):
        return gcs_pb2.ClusterEventsReply(events=pickle.dumps(list(self.events)))

    def _notify(self, hook: str, **kwargs: Any) -> None:
        if self.pm.has_observers(hook):
            asyncio.get_running_loop().run_in_executor(None, lambda: self.pm.notify(hook, **kwargs))


def _node_dict(info: common_pb2.NodeInfo) -> dict[str, Any]:
    return {
        "node_id": info.node_id,
        "address": f"{info.ip}:{info.raylet_port}",
        "resources": dict(info.total.amounts),
        "state": info.state,
        "labels": dict(info.labels),
        "is_head": info.is_head,
    }


def _actor_summary(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("actor_id", "name", "namespace", "state", "num_restarts", "pid", "node_id", "class_name")
    return {k: record.get(k) for k in keys}


async def open_store(cfg: config_mod.Config) -> Any:
    """Select, build and check the configured GCS store (fails fast when unreachable)."""
    pm = get_plugin_manager(cfg.plugins)
    reg = pm.select("gcs_store", cfg.gcs_store)
    options = reg.validate_options("gcs_store", cfg.gcs_store_options)
    store = reg.factory(**options)
    await store.ping()
    await store.check_schema(SCHEMA_VERSION)
    return store


async def cluster_config(store: Any, cfg: config_mod.Config) -> config_mod.Config:
    """The config this GCS runs the cluster with. A store with the ``persistence``
    capability may hold the config recorded by an earlier GCS of the cluster: a restarted
    head runs that one. Otherwise ``cfg`` is recorded (secrets masked) and returned."""
    saved = await store.get(T_META, b"config")
    pm = get_plugin_manager(cfg.plugins)
    if saved is not None and pm.has_capability("gcs_store", cfg.gcs_store, "persistence"):
        # recorded without secrets: the store's own options are those it was just opened with
        recorded = json.loads(saved.decode())
        recorded.update(gcs_store=cfg.gcs_store, gcs_store_options=cfg.gcs_store_options)
        return config_mod.Config(**recorded)
    await store.put(T_META, b"config", redaction.redacted_json(cfg, pm).encode())
    return cfg


async def serve(cfg: config_mod.Config, host: str, port: int, ready_fd: int | None,
                credentials: rpc.Credentials) -> None:
    store = await open_store(cfg)
    cfg = await cluster_config(store, cfg)
    cluster_id_raw = await store.get(T_META, b"cluster_id")
    if cluster_id_raw is None:
        cluster_id_raw = os.urandom(8).hex().encode()
        await store.put(T_META, b"cluster_id", cluster_id_raw)
    servicer = GcsServicer(store, cfg, cluster_id_raw.decode(), credentials)
    servicer.host = host
    await servicer.load()
    server = make_server(credentials)
    gcs_pb2_grpc.add_GcsServicer_to_server(servicer, server)
    bound = bind(server, host, port)
    await server.start()
    log.info("gcs_started", port=bound, store=cfg.gcs_store)
    if ready_fd is not None:
        os.write(ready_fd, f"{bound}\n".encode())
        os.close(ready_fd)
    monitor = asyncio.create_task(servicer.monitor_nodes())
    sampler = asyncio.create_task(servicer.history.run())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    monitor.cancel()
    sampler.cancel()
    await asyncio.gather(monitor, sampler, return_exceptions=True)
    await servicer.actors.close()
    await server.stop(grace=0.2)
    await store.close()
    log.info("gcs_stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="microray-gcs")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--config-file", required=True, help="the node's config.json (0600; holds secrets)")
    parser.add_argument("--ready-fd", type=int, default=None)
    args = parser.parse_args(argv)
    proctitle.set_role("gcs", argv)
    session.hold(args.session_dir)
    cfg = session.read_node_config(args.config_file)
    log_setup.configure(level=cfg.log_level, log_file=os.path.join(args.session_dir, "logs", "gcs.log"))
    structlog.contextvars.bind_contextvars(component="gcs")
    try:
        # the cluster token: in the session folder (0600), never on a command line
        credentials = rpc.Credentials(session.read_token(args.session_dir), cfg.tls)
        rpc.run(serve(cfg, args.host, args.port, args.ready_fd, credentials), cfg.io_loop)
    except Exception as exc:  # noqa: BLE001 -- report the cause to whoever started us
        log.error("gcs_failed", error=f"{type(exc).__name__}: {exc}")
        report_start_failure(args.ready_fd, exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
